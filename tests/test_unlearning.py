"""unlearning: every registered method and every registered metric on a toy world, bad input, the gpu preset, and the
smoke run's claims recomputed from its own per-item files."""
import json, math
import numpy as np
import pandas as pd
import pytest
import torch

from unlearnkit.core import ParamError
from unlearnkit.factworld import make_world, world_splits, check_splits
from unlearnkit.models import tiny_lm
from unlearnkit.repro import resolve_params
from unlearnkit.train import train, collate, causal_lm_loss
from unlearnkit.unlearn import (REGISTRY, build_methods, check_params, get_method, gu_runs, qa_examples, unlearn, unlearning_claims,
                                departures)
from unlearnkit.audit import METRICS, audit_model, compare_to_oracle
from conftest import cli

CLAIM_IDS = ["erasure_illusion", "gu_keeps_retain", "ssd_fast", "ga_collapse"]

# --- every registered method on a toy world -----------------------------------------------------------

@pytest.fixture(scope="module")
def toy():
    torch.set_num_threads(1)
    w = make_world(12, 4, seed=0); sp = world_splits(w, 0.2); tok = w.tokenizer()
    target = tiny_lm("llama", len(tok), n_layer=2, d_model=64, n_head=4, max_len=64, seed=0, tokenizer=tok)
    train(target, qa_examples(tok, sp["train"]), lr=3e-3, epochs=10, batch_size=32, progress=False)
    return w, sp, tok, target

def _forget_nll(m, tok, sp):
    b = collate(qa_examples(tok, sp["forget"], add_eos=False), tok.pad_token_id)
    with torch.no_grad(): return float(causal_lm_loss(m, b))

TOY_HP = dict(ga=dict(epochs=3, lr=1e-3), graddiff=dict(epochs=3, lr=1e-3), npo=dict(epochs=3, lr=1e-3),
              simnpo=dict(epochs=3, lr=3e-3), rmu=dict(epochs=3, lr=3e-3, layer=1, steering_coeff=20.0, alpha=1.0),
              ssd=dict(selection=1.0), gu=dict(epochs=3, lr=1e-3), retrain=dict(epochs=3))

def test_toy_settings_cover_the_registry():
    assert set(TOY_HP) == set(REGISTRY), "a new method needs toy hyperparameters here"

@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_method_forgets_and_leaves_target_untouched(toy, name):
    w, sp, tok, target = toy
    before = {k: v.clone() for k, v in target.state_dict().items()}
    base = _forget_nll(target, tok, sp)
    m, res = unlearn(target, name, qa_examples(tok, sp["forget"]), qa_examples(tok, sp["retain_train"]), progress=False, **TOY_HP[name])
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items()), "unlearn must not modify the target"
    assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items()), f"{name} did not change the model"
    assert _forget_nll(m, tok, sp) > base, f"{name} did not raise the forget NLL"
    assert res.method == name and res.wall_s > 0 and res.info["params"]

@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_method_is_deterministic(toy, name):
    w, sp, tok, target = toy
    fx, rx = qa_examples(tok, sp["forget"]), qa_examples(tok, sp["retain_train"])
    a, _ = unlearn(target, name, fx, rx, progress=False, seed=3, **TOY_HP[name])
    b, _ = unlearn(target, name, fx, rx, progress=False, seed=3, **TOY_HP[name])
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))   # exact: same seed, same kernels on the same shapes

def test_rmu_direction_follows_the_seed(toy):
    w, sp, tok, target = toy
    fx, rx = qa_examples(tok, sp["forget"]), qa_examples(tok, sp["retain_train"])
    runs = [unlearn(target, "rmu", fx[:1], rx[:1], progress=False, seed=s, epochs=1, batch_size=1, lr=1e-2, layer=1, alpha=0.0)[0]
            for s in (3, 4)]
    w3, w4 = (m.model.layers[1].mlp.down_proj.weight for m in runs)
    assert not torch.equal(w3, w4), "RMU's random direction must follow the run's seed, not a fixed one"
    torch.testing.assert_close(runs[0].model.layers[0].self_attn.q_proj.weight, target.model.layers[0].self_attn.q_proj.weight,
                               rtol=0, atol=0)   # only the MLP output projections of blocks ℓ-2..ℓ move

# --- every registered metric, given only the splits it declares ---------------------------------------

@pytest.fixture(scope="module")
def toy_oracle_audit(toy):
    w, sp, tok, target = toy
    return audit_model(target, tok, sp, n_samples=2)

@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_reads_only_what_it_declares(toy, toy_oracle_audit, name):
    w, sp, tok, target = toy
    M = METRICS[name]
    sub = {s: sp[s] for s in M.needs + M.optional}
    if any(not len(v) for v in sub.values()): pytest.skip(f"the toy world has no {name} items")
    a = audit_model(target, tok, sub, n_samples=2, metrics=[name])
    if M.oracle: a = compare_to_oracle(a, toy_oracle_audit, [name])
    v = a.summary[name]
    assert M.bounds[0] <= v <= M.bounds[1], (name, v)
    if M.at_oracle is not None:   # the target against its own audit: the documented "identical to the oracle" value
        assert v == pytest.approx(M.at_oracle, abs=1e-9), (name, v)
    assert M.reading.endswith(".") and M.reference
    for s in M.needs:
        with pytest.raises(ValueError, match=f"metric '{name}' needs split '{s}'"):
            audit_model(target, tok, {k: x for k, x in sub.items() if k != s}, metrics=[name])

def test_items_behind_the_summary(toy_oracle_audit):
    rows = pd.DataFrame(toy_oracle_audit.item_rows("toy"))
    forget = rows[rows["split"] == "forget"]
    assert forget["prob"].mean() == pytest.approx(toy_oracle_audit.summary["forget_prob"], rel=1e-12)
    assert {"person", "attribute", "prob", "nll", "mink", "zlib_bytes", "tr", "rouge"} <= set(forget.columns)

# --- bad input fails before any work, with the exact error ----------------------------------------------

def test_bad_input(toy):
    w, sp, tok, target = toy
    fx, rx = qa_examples(tok, sp["forget"]), qa_examples(tok, sp["retain_train"])
    with pytest.raises(ValueError, match="method must be one of"): get_method("nosuch")
    with pytest.raises(ValueError, match=r"npo\.beta must be a finite number > 0, got 0"): get_method("npo", beta=0)
    with pytest.raises(ValueError, match=r"ssd\.selection must be a finite number > 0, got -1"): get_method("ssd", selection=-1)
    with pytest.raises(ValueError, match=r"gu\.base must be one of"): get_method("gu", base="rmu")
    with pytest.raises(ValueError, match="unknown hyperparameter"): get_method("ga", beta=1)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"ga\.lr must be a finite number > 0, got {bad}"): get_method("ga", lr=bad)
        with pytest.raises(ValueError, match=rf"graddiff\.lr must be a finite number > 0, got {bad}"): unlearn(target, "graddiff", fx, rx, lr=bad)
    with pytest.raises(ValueError, match="rmu.layer must be < 2"): unlearn(target, "rmu", fx, rx, layer=5)
    with pytest.raises(ValueError, match="RMU needs a decoder"): unlearn(torch.nn.Linear(2, 2), "rmu", fx, rx)
    with pytest.raises(ValueError, match="forget set is empty"): unlearn(target, "ga", [], rx)
    with pytest.raises(ValueError, match="retain set is empty"): unlearn(target, "graddiff", fx, [])
    with pytest.raises(ValueError, match="overlap"):
        check_splits(dict(forget=[dict(person="x")], retain=[dict(person="x")], holdout=[dict(person="y")]))
    with pytest.raises(ValueError, match="forget_frac must be in"): world_splits(w, 0.0)
    with pytest.raises(ValueError, match="n_people must be an integer >= 10"): make_world(3)

@pytest.mark.parametrize("key,value,msg", [
    ("unlearn_lrs", '{"ga": 1e-4}', "missing ['graddiff', 'gu', 'npo', 'rmu', 'simnpo']"),
    ("unlearn_lrs", '{"ga": -1.0, "graddiff": 1e-4, "npo": 1e-4, "simnpo": 1e-4, "rmu": 1e-4, "gu": 1e-4}', "each > 0"),
    ("forget_fracs", "[0.05, 0.5]", "each in (0, 0.5)"),
    ("methods", '["ga", "retrain"]', "parameter 'methods'"),
    ("rmu_layer", "2", "an int < n_layer = 2"),
    ("ssd_sweep", "[10, 1]", "in increasing order"),
])
def test_cli_rejects_bad_values_before_a_kernel_starts(key, value, msg):
    r = cli("run", "unlearning", "--dry-run", "-p", key, value, timeout=120)
    assert r.returncode != 0 and msg in r.stderr and f"parameter '{key}'" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, "one line, no traceback"

def test_gpu_preset_validates():
    p = resolve_params("unlearning", "gpu")      # runs check_params, offline
    assert p["model"] != "tiny" and p["forget_fracs"] == [0.01, 0.05, 0.1]
    assert (p["ssd_selection"], p["ssd_dampening"]) == (10.0, 1.0) and p["rmu_alpha"] == 1200.0
    runs = build_methods(p); gu_runs(p)          # every method builds from the preset
    assert set(runs) == set(p["methods"]) | {"ga_aggressive"}
    make_world(p["n_people"], p["n_holdout"], seed=0)

def test_smoke_defaults_pass_the_check():
    p = resolve_params("unlearning", "smoke")
    assert check_params(dict(p)) == p
    with pytest.raises(ParamError, match="parameter 'forget_fracs'"): check_params(dict(p, forget_fracs="0.05"))

# --- the smoke reproduction ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke(repro_result):
    return repro_result("unlearning")

def test_files_and_schema(smoke):
    m, out = smoke
    mm = m["metrics"]
    assert {"methods_table", "metric_guide", "erasure_illusion", "gu", "ssd_sweep", "wall_s", "by_forget_frac"} <= set(mm)
    assert {"oracle", "target", "ga_aggressive", *m["params"]["methods"]} <= set(mm["methods_table"])
    for f in ("items.csv", "gu_items.csv", "methods_table.csv", "forget_vs_utility.png", "erasure_illusion.png", "gu_trajectories.png",
              "ssd_sweep.png"):
        assert (out/f).exists(), f
    assert [c["id"] for c in m["claims"]] == CLAIM_IDS

def test_claims_recomputed_from_the_items(smoke):
    "The claims in metrics.json are what the claims function gives on the run's own per-item files."
    m, out = smoke
    p = dict(m["params"], seed=m["provenance"]["seed"])
    items = pd.read_csv(out/"items.csv")
    items = items[items["frac"] == p["forget_fracs"][0]]
    again = unlearning_claims(items, pd.read_csv(out/"gu_items.csv"), m["metrics"]["wall_s"], departures(p), p["seed"])
    assert json.loads(json.dumps(again)) == m["claims"]

def test_audit_numbers_are_read_against_the_oracle(smoke):
    m, out = smoke
    t = m["metrics"]["methods_table"]
    tg, orc = t["target"], t["oracle"]
    assert tg["forget_prob"] > orc["forget_prob"] + 0.2          # the target knows the forget facts, the oracle does not
    assert tg["retain_prob"] > 0.8 and orc["retain_prob"] > 0.8  # both learned the retain facts
    assert tg["mia_mink"] > 0.9 and tg["privleak"] < -80         # MUSE's convention: a memorising model reads about -100
    assert orc["privleak"] == 0 and orc["forget_quality"] == pytest.approx(1.0) and orc["mia_ref"] == 0.5
    items = pd.read_csv(out/"items.csv")
    f = items[(items["model"] == "target") & (items["split"] == "forget")]
    assert f["prob"].mean() == pytest.approx(tg["forget_prob"], rel=1e-12)   # the summary is the mean of the items
