"""passn (Chen et al. 2025, DCO): the smoke run's metrics and claims, the presets' parameters, and the library's
invariants (estimator, DCO loss and gradient, sampler) and bad-input errors."""
import math
import numpy as np
import pytest
from conftest import assert_claims_all_tested
import torch
from unlearnkit.repro import resolve_params, list_presets
from unlearnkit.passn import (check_params, coverage, mean_coverage, pass_at_k, mean_pass_at_k, dco_objective, dco_weight,
                              dco_loss, sample_answers, correct_counts, make_task, evaluate_passn)

CLAIM_IDS = {"ce_pass1_rises", "ce_passN_falls", "dco_keeps_coverage", "dco_tradeoff_pass1", "dco_weight_shrinks"}

def _num(x): return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

# --- the smoke run ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke(repro_result):
    return repro_result("passn")

def test_metrics_schema(smoke):
    m, out = smoke
    assert m["name"] == "passn" and m["preset"] == "smoke"
    assert {"table", "final", "max_sampled_vs_analytic_gap", "weights"} <= set(m["metrics"])
    for f in ("ce_pass_at_k_by_epoch.png", "ce_vs_dco.png", "dco_weight.png", "confidence_histograms.png", "pass_at_k_by_epoch.csv"):
        assert (out/f).exists(), f

def test_claims_table(smoke):
    m, _ = smoke
    assert_claims_all_tested(m, CLAIM_IDS)

def test_numbers_are_sane(smoke):
    m, _ = smoke
    p, mm = m["params"], m["metrics"]
    rows = mm["table"]
    objs = {r["objective"] for r in rows}
    assert len(objs) == len(p["objectives"])
    for r in rows:
        assert set(r["objective"] for r in rows) == objs
        vals = [r[f"all/analytic@{k}"] for k in p["ks"]]
        assert all(_num(v) and 0 <= v <= 1 for v in vals)
        assert all(a <= b + 1e-12 for a, b in zip(vals, vals[1:])), "pass@k must not fall with k"   # float64 means in [0, 1]: ~1e-16 rounding
    # every objective is scored at epoch 0 .. epochs
    for o in objs:
        assert sorted(r["epoch"] for r in rows if r["objective"] == o) == list(range(p["epochs"] + 1))
    # the estimator from 256 samples agrees with the exact analytic value within sampling noise
    assert mm["max_sampled_vs_analytic_gap"] < 0.05
    # CE's claims come from its own rows: recompute them from the table
    ce = {r["epoch"]: r for r in rows if r["objective"] == "CE"}
    held = {c["id"]: c["held"] for c in m["claims"]}
    assert held["ce_pass1_rises"] == (ce[p["epochs"]]["all/analytic@1"] > ce[1]["all/analytic@1"])
    big = max(p["ks"])
    assert held["ce_passN_falls"] == (ce[p["epochs"]][f"all/analytic@{big}"] < ce[1][f"all/analytic@{big}"])
    # training must have taught the learnable problems
    assert ce[p["epochs"]]["learnable/greedy_acc"] > 0.5

# --- presets ------------------------------------------------------------------------------------------------

def test_presets_validate():
    assert {"smoke", "gpu"} <= set(list_presets("passn"))
    for preset in ("smoke", "gpu"):
        check_params(resolve_params("passn", preset))
    gpu = resolve_params("passn", "gpu")
    assert gpu["task"] == "math" and 1 in gpu["objectives"] and gpu["epochs"] == 4

def test_bad_params_fail():
    p = resolve_params("passn", "smoke")
    for key, bad in [("objectives", [16, 64]), ("objectives", []), ("epochs", 0), ("task", "gsm8k"), ("n_samples", -1),
                     ("hard_frac", 1.5), ("ks", [0, 4]), ("lr", 0.0), ("d_model", 130)]:
        with pytest.raises(ValueError, match=key):
            check_params({**p, key: bad})

# --- the estimator and coverage -----------------------------------------------------------------------------

def test_estimator_matches_binomials_and_edges():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 60)); c = int(rng.integers(0, n + 1)); k = int(rng.integers(1, n + 1))
        # float64 sums of < 60 log1p terms vs exact integer binomials: ~1e-15 apart, so 1e-12 is loose
        assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)
    assert pass_at_k(256, 0, 1) == 0.0 and pass_at_k(256, 0, 256) == 0.0
    assert pass_at_k(256, 256, 1) == 1.0 and pass_at_k(256, 1, 256) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)   # float64, ~1e-16 off: approx's rel=1e-6 is loose
    np.testing.assert_allclose(pass_at_k(8, np.array([0, 4, 8]), 1), [0, 0.5, 1])   # the same, at rtol=1e-7
    assert mean_pass_at_k(4, np.array([1, 2]), ks=(1, 2, 8)).keys() == {1, 2}   # k > n is left out

def test_estimator_is_unbiased_for_known_p():
    p = np.array([0.01, 0.1, 0.5]); n, k = 64, 16
    rng = np.random.default_rng(1)
    c = rng.binomial(n, p[:, None], size=(3, 4000))
    draws = pass_at_k(n, c.ravel(), k).reshape(3, -1)
    sd = draws.std(1) / np.sqrt(draws.shape[1])      # sd of each mean over 4000 draws: 2.7e-3, 2.2e-3, 1.3e-6
    assert (np.abs(draws.mean(1) - coverage(p, k)) < 5 * sd).all()

@pytest.mark.parametrize("args, msg", [((10, 3, 11), "k .11. must be <= n"), ((10, 11, 2), "c must lie"), ((10, -1, 2), "c must lie"),
                                        ((0, 0, 1), "n must be >= 1"), ((10, 3, 0), "k must be"), ((10, 2.5, 1), "whole numbers"),
                                        ((10, np.array([], dtype=int), 1), "empty")])
def test_estimator_bad_input(args, msg):
    with pytest.raises(ValueError, match=msg): pass_at_k(*args)

def test_coverage_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 1\]"): coverage(-0.1, 4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"): coverage(np.nan, 4)
    with pytest.raises(ValueError, match="N must be"): coverage(0.5, 0)
    with pytest.raises(ValueError, match="N must be"): coverage(0.5, 2.5)
    with pytest.raises(ValueError, match="empty"): mean_coverage([])

# --- the DCO loss -------------------------------------------------------------------------------------------

def test_dco_N1_is_ce():
    lp = torch.log(torch.tensor([1e-8, 0.2, 0.7, 1.0], dtype=torch.float64))
    assert torch.equal(dco_objective(lp, 1), -lp)      # exact: N = 1 is a negation
    assert torch.equal(dco_weight(lp, 1), torch.ones_like(lp))

@pytest.mark.parametrize("N", [2, 4, 16, 64, 256, 4096])
def test_dco_gradient_is_F_times_ce_gradient(N):
    lp = torch.log(torch.tensor([1e-9, 1e-4, 0.01, 0.2, 0.6, 0.99], dtype=torch.float64)).requires_grad_(True)
    dco_objective(lp, N).sum().backward()
    g_dco = lp.grad.clone(); lp.grad = None
    (-lp).sum().backward()      # CE = -log p̂
    # float64 autograd through log1mexp/expm1 vs the closed form: ≤ 5e-9 relative measured (N = 4 at p̂ = 1e-9, near the
    # switch to the series), 20x headroom; atol for the weights ≈ 0 at p̂ = 0.99, which are ~1e-15 off
    torch.testing.assert_close(g_dco, dco_weight(lp.detach(), N) * lp.grad, rtol=1e-7, atol=1e-12)

def test_dco_through_a_model():
    from unlearnkit.models import tiny_lm, word_tokenizer
    from unlearnkit.train import collate, lm_examples, sequence_nll
    tok = word_tokenizer(list("0123456789="))
    m = tiny_lm(vocab_size=len(tok), n_layer=1, d_model=32, n_head=2, max_len=16, seed=3)
    b = collate(lm_examples(tok, ["1 9", "0 3"], prompts=["5 5 =", "1 2 ="], add_eos=False), pad_id=tok.pad_token_id)
    def grads(fn):
        m.zero_grad(); fn(m, b).backward()
        return torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None])
    with torch.no_grad(): lp = -sequence_nll(m, b)
    F = dco_weight(lp, 8).float()
    # per-example gradient of the batch mean: mean_i F_i * grad CE_i
    g_ce = [grads(lambda mm, bb, i=i: sequence_nll(mm, bb)[i] / 2) for i in range(2)]
    # float32 gradients up to ~1.8 from different backward passes: ≤ 4e-7 apart measured, in elements of any size, so
    # the absolute part matters: 1e-5 is 25x that, while a weight F ≈ 0.99 left out would be off by ~2e-2
    torch.testing.assert_close(grads(dco_loss(8)), F[0] * g_ce[0] + F[1] * g_ce[1], rtol=1e-4, atol=1e-5)

def test_dco_extremes_are_finite():
    lp = torch.tensor([-1e5, -800.0, -50.0, -1e-15, 0.0], dtype=torch.float64, requires_grad=True)
    for N in (4, 64, 4096):
        lp.grad = None
        v = dco_objective(lp, N); v.sum().backward()
        assert torch.isfinite(v).all() and torch.isfinite(lp.grad).all()
        assert v[-1].item() == pytest.approx(0.0, abs=1e-9)                 # p̂ = 1: nothing left to gain (float64: ~1e-16)
        assert v[0].item() == pytest.approx(1e5 - math.log(N), rel=1e-9)    # p̂ -> 0: CE minus log N (float64 series: ~1e-16 relative)
        w = dco_weight(torch.tensor([-math.inf, -1e5, 0.0]), N)
        assert torch.isfinite(w).all() and w.tolist() == pytest.approx([1.0, 1.0, 0.0])   # float32 input: ~1e-7 off at most, approx's rel=1e-6
    # float32 input stays float32 and finite
    v32 = dco_objective(torch.tensor([-200.0, -1e-3, 0.0]), 64)
    assert v32.dtype == torch.float32 and torch.isfinite(v32).all()

def test_dco_weight_monotone_and_landmarks():
    p = torch.linspace(1e-6, 1 - 1e-6, 2000, dtype=torch.float64)
    for N in (4, 64, 1024):
        F = dco_weight(p.log(), N)
        assert (F[1:] <= F[:-1] + 1e-12).all() and F.max() <= 1 + 1e-12 and F.min() >= 0   # float64 weights in [0, 1]: ~1e-16 rounding
    assert dco_weight(torch.tensor(math.log(1 / 4096)), 4096).item() == pytest.approx(0.582, abs=5e-4)   # the paper's 0.582, to 3 decimals (0.58201)

def test_dco_bad_input():
    with pytest.raises(ValueError, match="N must be"): dco_loss(0)
    with pytest.raises(ValueError, match="N must be"): dco_objective(torch.tensor([-1.0]), 1.5)
    with pytest.raises(ValueError, match="<= 0"): dco_objective(torch.tensor([0.1]), 4)
    with pytest.raises(ValueError, match="empty"): dco_weight(torch.tensor([]), 4)

# --- the sampler and evaluation -------------------------------------------------------------------------------

def test_sampler_dedup_is_exact_and_equal_in_distribution():
    from unlearnkit.models import tiny_lm, word_tokenizer
    tok = word_tokenizer(list("0123456789="))
    m = tiny_lm(vocab_size=len(tok), n_layer=1, d_model=32, n_head=2, max_len=16, seed=0).eval()
    pids = [tok("3 1 =", add_special_tokens=False)["input_ids"], tok("7 =", add_special_tokens=False)["input_ids"]]
    a, la = sample_answers(m, pids, n=3000, max_new_tokens=2, seed=0, dedup=True)
    b, lb = sample_answers(m, pids, n=3000, max_new_tokens=2, seed=0, dedup=False, max_rows=500)
    with torch.no_grad(): p = torch.softmax(m(input_ids=torch.tensor([pids[1]])).logits[0, -1], -1).double()
    sd = (p * (1 - p) / 3000).sqrt()                   # binomial sd of a frequency over 3000 samples (≤ 0.006 here)
    for t in (a, b):   # first-token marginals agree with the model, within 5 sd for every token
        emp = torch.bincount(t[1, :, 0], minlength=len(p)).double() / 3000
        assert ((emp - p).abs() < 5 * sd).all(), ((emp - p) / sd)
    # each sample's log-prob is exact: recompute one by teacher forcing
    with torch.no_grad():
        ids = torch.tensor([pids[0] + a[0, 5].tolist()])
        lsm = torch.log_softmax(m(input_ids=ids).logits[0].double(), -1)
        ref = lsm[len(pids[0]) - 1, a[0, 5, 0]] + lsm[len(pids[0]), a[0, 5, 1]]
    assert la[0, 5].item() == pytest.approx(ref.item(), abs=1e-5)   # float32 log-probs of ~-5.7 on two paths: ≤ 2e-7 apart measured, 50x headroom
    assert correct_counts(a, [a[0, 0].tolist(), [99, 99]])[1] == 0

def test_evaluate_bad_input():
    from unlearnkit.models import tiny_lm, word_tokenizer
    task = make_task(20, 10, seed=0)
    tok = word_tokenizer(task["vocab"])
    m = tiny_lm(vocab_size=len(tok), n_layer=1, d_model=32, n_head=2, max_len=16, seed=0).eval()
    with pytest.raises(ValueError, match="empty"): evaluate_passn(m, tok, [])
    with pytest.raises(ValueError, match="empty"): sample_answers(m, [], n=4)
    with pytest.raises(ValueError, match="n=1"): sample_answers(m, [[1, 2]], n=4, temperature=0)
    with pytest.raises(ValueError, match="hard_frac"): make_task(hard_frac=-0.1)
