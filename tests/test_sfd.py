"""sfd: the claims in metrics.json are what the claims function gives on the run's own files, bad requests fail
before any work (command line and library), and the gpu preset resolves offline to the paper's CIFAR-10 setting."""
import csv, json
import pytest
import torch

from unlearnkit.core import _jsonable
from unlearnkit.repro import resolve_params, ReproError
from unlearnkit.sfd import ForgetTask, check_forget, sfd_claims, summary_rows
from unlearnkit.diffusion import make_scheduler, make_unet
from conftest import cli

CLAIM_IDS = ["forgets_class", "retained_quality", "one_step_faster"]

def _rows(path, ints=(), floats=()):
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    for r in rows:
        for k in ints: r[k] = int(r[k])
        for k in floats: r[k] = float(r[k])
    return rows

def test_claims_recomputed_from_the_runs_files(repro_result):
    m, out = repro_result("sfd")
    items = _rows(out/"items.csv", ints=("cls", "sample", "pred", "correct"), floats=("p_cls",))
    timing = _rows(out/"timing.csv", ints=("repeat", "nfe"), floats=("s_per_image",))
    got = sfd_claims(items, timing, m["params"]["safe"], departs=m["claims"][0]["departs"], seed=m["provenance"]["seed"])
    assert [c["id"] for c in m["claims"]] == CLAIM_IDS
    for c, want in zip(got, m["claims"]):
        assert c["held"] == want["held"], c["id"]
        assert json.loads(json.dumps(_jsonable(c["run"]))) == want["run"], c["id"]   # the CSVs round-trip every number the claims used
    # the summary table in metrics.json is the per-item file aggregated
    summ = {r["method"]: r for r in summary_rows(items)}
    for r in m["metrics"]["summary"]:
        assert (r["ua"], r["retained_acc"]) == (summ[r["method"]]["ua"], summ[r["method"]]["retained_acc"]), r["method"]
    assert {r["method"] for r in m["metrics"]["summary"]} == set(m["params"]["methods"])

def test_one_step_generator_and_probes(repro_result):
    m, out = repro_result("sfd")
    s = {r["method"]: r for r in m["metrics"]["summary"]}
    assert s["sfd"]["nfe"] == 1 and s["teacher"]["nfe"] == m["params"]["sample_steps"]
    probes = m["metrics"]["sfd_probes"]
    assert [p["step"] for p in probes][0] == 0 and probes[-1]["step"] == m["params"]["sfd_steps"]
    assert all(0 <= p["ua"] <= 1 for p in probes)
    assert {"samples.png", "ua_vs_step.png", "retained_quality.png"} <= {p.name for p in out.glob("*.png")}

@pytest.mark.parametrize("key,value,msg", [
    ("forget", "[10]", "parameter 'forget': got [10]; allowed: classes that exist: 0..9"),
    ("forget", "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]", "fewer than all 10 classes"),
    ("safe", "0", "parameter 'safe': got 0; allowed: a retained class"),
    ("channels", "[16, 32, 64, 64, 64]", "parameter 'image_size': got 8; allowed: a side the UNet can take"),
    ("sfd_steps", "-1", "parameter 'sfd_steps': got -1"),
    ("methods", '["sfd"]', "includes 'teacher' and 'sfd'"),
])
def test_bad_parameters_fail_before_any_work(key, value, msg):
    with pytest.raises(ReproError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        resolve_params("sfd", overrides={key: value})

def test_bad_parameter_is_one_line_on_the_command_line():
    r = cli("run", "sfd", "--dry-run", "-p", "forget", "[3, 12]")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == ["unlearnkit-repro: error: sfd: parameter 'forget': got [3, 12]; allowed: classes that exist: 0..9"]

def test_library_rejects_bad_requests():
    sched = make_scheduler(10)
    x, y = torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"class\(es\) \[7\] that do not exist"): ForgetTask(None, sched, x, y, [7], 1, n_classes=4)
    with pytest.raises(ValueError, match="names all 4 classes"): check_forget([0, 1, 2, 3], 1, 4)
    with pytest.raises(ValueError, match="safe class 2 is one of the classes to forget"): check_forget([2], 2, 4)
    with pytest.raises(ValueError, match="image_size 6 cannot pass through a UNet with 3 levels"): make_unet(6, 4, channels=[8, 8, 8])

def test_gpu_preset_is_the_papers_cifar10_setting_and_resolves_offline():
    p = resolve_params("sfd", "gpu")   # runs check_params; no hub call
    assert p["source"] == "uoft-cs/cifar10" and p["image_size"] == 32 and p["fid"] == "inception"
    assert (p["channels"], p["layers_per_block"], p["attention_res"], p["dropout"]) == ([128, 256, 256, 256], 2, 16, 0.1)
    assert (p["sfd_alpha"], p["sfd_t_init"], p["sfd_t_range"], p["sfd_forget_coef"]) == (1.2, 440, [38, 712], 0.01)
    assert (p["forget"], p["safe"], p["timesteps"]) == ([0], 1, 1000)
