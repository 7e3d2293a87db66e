"""Every reproduction's gpu preset, run end to end on CPU through the real CLI on stand-ins of its hub models and datasets.

The stand-ins (`unlearnkit.standins`) are tiny random models of the same architecture class and tokenizer family, and
datasets with the real schemas; `STANDIN_OVERRIDES` shrinks steps, items and lengths and nothing else, so each run goes
through the gpu preset's code path (its model ids, dataset loaders, chat templates, LoRA through peft) in seconds.
The numbers mean nothing; the contract (metrics.json, well-formed claims, files) must hold as for a smoke run.
On CPU (`--device cpu`) the runner hides CUDA from the kernel: models load in fp32 where the preset leaves the dtype
to the device (bf16 on CUDA), and passn keeps its explicit bfloat16. sfd's real FID (torchmetrics, Inception weights
from GitHub) has no stand-in: its test runs the classifier distance and checks that preflight names the package.
"""
import importlib.util, json, resource, time
from pathlib import Path

import pytest

from conftest import cli, run_once

GPU_NAMES = ["sort", "fewshot", "knights", "passn", "kvcache", "unlearning", "sfd"]
HUB_OFF = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}   # a stand-in run must not reach the hub


def _args(name):
    from unlearnkit.standins import standin_args
    return standin_args(name)


@pytest.fixture(scope="session")
def standins(tmp_path_factory):
    "The stand-ins every shrunk gpu preset needs, built once per test run (shared by pytest-xdist's workers)."
    from unlearnkit.standins import make_preset_standins
    return Path(run_once(tmp_path_factory, "standins", lambda d: {"path": str(make_preset_standins(d, GPU_NAMES))})["path"])

_runs = {}

@pytest.fixture(scope="session")
def gpu_run(standins, tmp_path_factory):
    "`gpu_run(name)` -> (metrics, results folder, wall s, CPU s): the shrunk gpu preset on stand-ins, once per test run."
    def make(name, folder):
        out = folder/"run"
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        r = cli("run", name, "--preset", "gpu", "--device", "cpu", "--out", out, *_args(name),
                env={"UNLEARNKIT_STANDINS": str(standins), **HUB_OFF})
        wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)   # the CLI and its kernel, both waited for
        if r.returncode != 0:
            pytest.fail(f"unlearnkit-repro run {name} --preset gpu --device cpu (stand-ins) failed ({r.returncode}):\n{r.stderr[-4000:]}")
        print(f"\n{name}/gpu on stand-ins: {wall:.0f} s wall, {cpu:.0f} s CPU")
        return {"out": str(out), "wall": wall, "cpu": cpu}

    def get(name):
        if name not in _runs:
            info = run_once(tmp_path_factory, f"{name}-gpu", lambda folder: make(name, folder))
            out = Path(info["out"])
            _runs[name] = (json.loads((out/"metrics.json").read_text()), out, info["wall"], info["cpu"])
        return _runs[name]
    return get

@pytest.mark.parametrize("name", GPU_NAMES)
def test_gpu_preset_on_standins(gpu_run, name):
    "The contract of a smoke run holds for the gpu preset on stand-ins, and the run used the preset's hub ids."
    from unlearnkit.repro import METRICS_KEYS, check_metrics, resolve_params
    from unlearnkit.claims import check_claims
    m, out, wall, cpu = gpu_run(name)
    check_metrics(m, name, "gpu")
    assert tuple(m) == METRICS_KEYS
    check_claims(m["claims"])
    for c in m["claims"]: assert c["held"] in (True, False) or c["reason"], c["id"]   # settled, or unsettled with a reason
    assert list(out.glob("*items*.csv")), "no per-item CSV"
    for png in out.glob("*.png"): assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert list(out.glob("*.png")), "no figure"
    nb = json.loads((out/f"{name}.ipynb").read_text())
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors[0].get("evalue")
    gpu = resolve_params(name, "gpu")   # what the preset names (the overrides only shrink sizes)
    for k in ("model", "zero_shot_model", "model_name", "lm", "source", "task", "dtype", "lora_r", "perturbations", "lm_policies"):
        if k in gpu and k in m["params"]: assert m["params"][k] == gpu[k], k
    assert m["provenance"]["device"].startswith("cpu"), m["provenance"]["device"]   # --device cpu hid CUDA from the kernel


def test_sort_booksort_items_in_bins(gpu_run):
    "sort read Book-SORT (its stand-in) through `load_booksort`: every item lies in one of the paper's distance bins."
    import csv
    from unlearnkit.sort import distance_bins
    m, out, _, _ = gpu_run("sort")
    rows = list(csv.DictReader(open(out/"items.csv")))
    assert {r["condition"] for r in rows} == set(m["params"]["conditions"]), {r["condition"] for r in rows}
    for r in rows:
        e = distance_bins(int(r["excerpt_length"]), int(r["segment_length"]))
        assert 0 <= int(r["bin"]) <= 3 and e[int(r["bin"])] < int(r["distance"]) <= e[int(r["bin"]) + 1], r


def test_fewshot_paper_stimuli_and_cnn(gpu_run):
    "fewshot read the paper's stimulus files (their stand-in) for all five experiments and retained on CNN/DailyMail's stand-in."
    import csv
    m, out, _, _ = gpu_run("fewshot")
    assert (m["params"]["stimuli"], m["params"]["retention_text"]) == ("paper", "cnn_dailymail")
    kinds = {r["kind"] for r in csv.DictReader(open(out/"items.csv"))}
    assert kinds == set(m["params"]["kinds"]), kinds


def test_knights_lora_and_chat(gpu_run, standins):
    "Knights fine-tunes the Llama-3 base stand-in through peft's LoRA and asks the Instruct stand-in through its chat template."
    m, out, _, _ = gpu_run("knights")
    fit = next(iter(m["metrics"]["fit"].values()))
    cfg = json.loads((standins/"models"/"meta-llama--Meta-Llama-3-8B"/"config.json").read_text())
    H, I, L, V, r = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"], m["params"]["lora_r"]
    kv = cfg["num_key_value_heads"] * H // cfg["num_attention_heads"]
    # peft's LoRA adds r * (in + out) weights to each adapted linear: q, k, v, o, gate, up, down in every layer, and lm_head
    lora = r * (L * (2 * (H + H) + 2 * (H + kv) + 3 * (H + I)) + (H + V))
    assert fit["trainable_params"] == lora, (fit, lora)
    assert m["metrics"]["zero_shot"]["model"] == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert "puzzle" in (out/"zero_shot_items.csv").read_text().splitlines()[0]


def test_passn_math_from_standin_datasets(gpu_run):
    "passn's task 'math' read MATH train and MATH-500 (their stand-ins) and trained the Qwen2.5 stand-in in bfloat16 on CPU."
    import csv
    m, out, _, _ = gpu_run("passn")
    assert (m["params"]["task"], m["params"]["dtype"]) == ("math", "bfloat16")
    rows = list(csv.DictReader(open(next(out.glob("*items*.csv")))))
    assert rows and len({r.get("problem", r.get("item")) for r in rows}) <= 4, len(rows)   # n_test 4 problems from MATH-500's stand-in


def test_kvcache_every_lm_policy(gpu_run):
    "kvcache ran every LM policy the preset names on the Llama-2 stand-in."
    import csv
    m, out, _, _ = gpu_run("kvcache")
    pols = {r["policy"] for r in csv.DictReader(open(out/"lm_items.csv"))}
    names = set(m["params"]["lm_policies"])
    assert {p.split("_0.")[0] for p in pols} >= names, pols   # A2SF is labelled with its alpha, e.g. a2sf_0.95


def test_dry_run_estimates_and_missing_standins(standins, tmp_path):
    "--dry-run prints each gpu preset's memory estimate; a missing stand-in or package is one line naming it, before any work."
    env = {"UNLEARNKIT_STANDINS": str(standins), **HUB_OFF}
    for name in ["knights", "passn", "kvcache", "unlearning"]:
        r = cli("run", name, "--preset", "gpu", "--device", "cpu", "--dry-run", "--out", tmp_path/name, env=env)
        assert r.returncode == 0, r.stderr
        mem = json.loads(r.stdout)["memory_gib"]
        assert 1 < mem["total"] < 80, mem   # each preset is sized for one 80 GB GPU
    r = cli("run", "sfd", "--preset", "gpu", "--device", "cpu", "--dry-run", "--out", tmp_path/"sfd", env=env)
    if importlib.util.find_spec("torchmetrics") is None:   # the real FID's package: named with its install command
        assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "pip install 'torchmetrics[image]'" in r.stderr, r.stderr
    else: assert r.returncode == 0, r.stderr
    empty = tmp_path/"empty"; empty.mkdir()
    r = cli("run", "knights", "--preset", "gpu", "--device", "cpu", "--dry-run", "--out", tmp_path/"k", env={**env, "UNLEARNKIT_STANDINS": str(empty)})
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "meta-llama/Meta-Llama-3-8B" in r.stderr and str(empty/"models"/"meta-llama--Meta-Llama-3-8B") in r.stderr, r.stderr
    nofiles = tmp_path/"nofiles"; nofiles.mkdir()   # models and datasets there, the paper's stimulus files not
    for kind in ("models", "datasets"): (nofiles/kind).symlink_to(standins/kind)
    r = cli("run", "fewshot", "--preset", "gpu", "--device", "cpu", "--dry-run", "--out", tmp_path/"f", env={**env, "UNLEARNKIT_STANDINS": str(nofiles)})
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "the files of 'eminorhan/llm-memory'" in r.stderr and str(nofiles/"files"/"eminorhan--llm-memory") in r.stderr, r.stderr
