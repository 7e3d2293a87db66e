"""passn (Chen et al. 2025, DCO): what is specific to this reproduction. The claims in metrics.json are what
`passn_claims` gives on the run's own items.csv; the run's numbers are consistent with one another; the presets
pass the parameter check and bad values fail in the command line; and the library's estimator, loss, sampler and
tokenisation hold where the inline tests do not reach (many N, several examples, GPT-2, EOS-terminated answers)."""
import json, math, re
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import cli
from unlearnkit.core import ParamError
from unlearnkit.repro import ReproError, resolve_params, list_presets
from unlearnkit.models import tiny_lm, word_tokenizer
from unlearnkit.train import collate, lm_examples, sequence_nll, use_bos
from unlearnkit.evaluate import sequence_logprobs
from unlearnkit.passn import (ITEM_COLUMNS, check_params, coverage, pass_at_k, mean_pass_at_k, dco_objective, dco_weight,
                              dco_loss, sample_answers, correct_counts, make_task, evaluate_passn, passn_examples,
                              split_example, answer_logprobs, passn_claims)

CLAIM_IDS = ["ce_pass1_rises", "ce_passN_falls", "dco_keeps_coverage", "dco_tradeoff_pass1", "dco_limits_confidence"]

# --- the smoke run ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke(repro_result):
    return repro_result("passn")

def test_claims_recomputed_from_the_items_file(smoke):
    "The verdicts, effects and p-values in metrics.json are what the claims function gives on the run's items.csv."
    m, out = smoke
    items = pd.read_csv(out/"items.csv")
    assert tuple(items.columns) == ITEM_COLUMNS
    p = m["params"]
    again = passn_claims(items, p["ks"], departs=m["claims"][0]["departs"], seed=m["provenance"]["seed"])
    assert [c["id"] for c in m["claims"]] == CLAIM_IDS
    assert json.loads(json.dumps(again)) == m["claims"]

def test_items_match_the_aggregates(smoke):
    "Every objective is scored on the same test problems at epochs 0..E, and the per-epoch means are the table's numbers."
    m, out = smoke
    p, table = m["params"], m["metrics"]["table"]
    items = pd.read_csv(out/"items.csv")
    assert len(items) == len(p["objectives"]) * (p["epochs"] + 1) * p["n_test"]
    assert sorted(items["N_train"].unique()) == p["objectives"] and sorted(items["epoch"].unique()) == list(range(p["epochs"] + 1))
    for r in table:
        sel = items[(items["N_train"] == r["N_train"]) & (items["epoch"] == r["epoch"])]
        big = max(p["ks"])
        # the CSV holds every float at full precision (repr), so the means agree to rounding
        assert sel["p_hat"].mean() == pytest.approx(r["all/analytic@1"], rel=1e-9, abs=1e-12)
        assert coverage(sel["p_hat"].to_numpy(), big).mean() == pytest.approx(r[f"all/analytic@{big}"], rel=1e-9, abs=1e-12)
        sampled = sel["n_correct"].notna().all()
        assert sampled == (r["epoch"] % p["sample_every"] == 0 or r["epoch"] == p["epochs"])
        if sampled:
            assert mean_pass_at_k(p["n_samples"], sel["n_correct"].astype(int).to_numpy(), [1])[1] == pytest.approx(r["all/sampled@1"], rel=1e-9)

def test_sampling_agrees_with_the_analytic_values(smoke):
    m, _ = smoke
    # 256 samples of each of 400 problems: the sd of a mean sampled pass@k is below 0.005, so 0.05 is > 10 sd
    assert m["metrics"]["max_sampled_vs_analytic_gap"] < 0.05

def test_the_task_is_learned(smoke):
    "CE learns the learnable problems (the smoke task is not broken), and cannot know the unseen entities' answers."
    m, _ = smoke
    ce = m["metrics"]["final"]["CE"]
    t = {r["N_train"]: r for r in m["metrics"]["table"] if r["epoch"] == m["params"]["epochs"]}[1]
    assert t["learnable/greedy_acc"] > 0.5
    assert t["unlearnable/greedy_acc"] < 0.1   # 50 possible answers: chance is 0.02
    assert 0 <= ce["all/analytic@1"] <= ce["all/analytic@256"] <= 1

# --- presets and parameters ---------------------------------------------------------------------------------

def test_presets_validate():
    assert {"smoke", "gpu"} <= set(list_presets("passn"))
    for preset in ("smoke", "gpu"):
        check_params(resolve_params("passn", preset))
    gpu = resolve_params("passn", "gpu")
    assert gpu["task"] == "math" and gpu["objectives"][0] == 1 and gpu["epochs"] == 4 and max(gpu["ks"]) == 4096

BAD = [("objectives", "[16, 64]", "starts with 1"), ("objectives", "[1, 64, 16]", "increasing order"),
       ("ks", "[]", "a list of 1+ ints"), ("ks", "[0, 4]", "each >= 1"), ("epochs", "0", "an int >= 1"),
       ("task", "gsm8k", "one of 'synthetic', 'math'"), ("n_samples", "-1", "an int >= 0"), ("hard_frac", "1.5", "< 1"),
       ("lr", "0", "a finite number > 0"), ("d_model", "130", "divisible by n_head (4)"), ("model_name", "gpt2", "'tiny'")]

@pytest.mark.parametrize("key, bad, allowed", BAD)
def test_bad_params_fail_when_resolved(key, bad, allowed):
    "A preset or -p value is cast and checked by the paper's check (as the command line does), with one message format."
    with pytest.raises(ReproError, match=f"passn: parameter '{key}': got .*; allowed: .*{re.escape(allowed)}"):
        resolve_params("passn", "smoke", overrides={key: bad})

def test_bad_params_fail_in_the_command_line():
    "The command line rejects a bad value in one line, before a kernel starts."
    for key, bad, allowed in (BAD[1], BAD[-2]):
        r = cli("run", "passn", "--dry-run", "-p", key, bad)
        msg = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(msg) == 1 and f"parameter '{key}': got" in msg[0] and allowed in msg[0], r.stderr

def test_check_params_rejects_what_the_cli_cannot_send():
    p = resolve_params("passn", "smoke")
    for key, bad in [("lr", math.nan), ("lr", math.inf), ("ks", (1, 4)), ("objectives", [1, True]), ("batch_size", 2.0)]:
        with pytest.raises(ParamError, match=f"parameter '{key}': got"): check_params({**p, key: bad})
    with pytest.raises(ParamError, match="parameter 'epoch': got 3; allowed: no such parameter"): check_params({**p, "epoch": 3})

# --- the estimator and coverage -----------------------------------------------------------------------------

def test_estimator_matches_binomials():
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

@pytest.mark.parametrize("args, msg", [((10, 3, 11), "k .11. must be <= n"), ((10, 11, 2), "c must lie"), ((0, 0, 1), "n must be >= 1"),
                                        ((10, 2.5, 1), "whole numbers"), ((10, np.array([], dtype=int), 1), "empty")])
def test_estimator_bad_input(args, msg):
    with pytest.raises(ValueError, match=msg): pass_at_k(*args)

# --- the DCO loss -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("N", [2, 4, 16, 64, 256, 4096])
def test_dco_gradient_is_F_times_ce_gradient(N):
    lp = torch.log(torch.tensor([1e-9, 1e-4, 0.01, 0.2, 0.6, 0.99], dtype=torch.float64)).requires_grad_(True)
    dco_objective(lp, N).sum().backward()
    g_dco = lp.grad.clone(); lp.grad = None
    (-lp).sum().backward()      # CE = -log p̂
    # float64 autograd through log1mexp/expm1 vs the closed form: ≤ 5e-9 relative measured (N = 4 at p̂ = 1e-9, near the
    # switch to the series), 20x headroom; atol for the weights ≈ 0 at p̂ = 0.99, which are ~1e-15 off
    torch.testing.assert_close(g_dco, dco_weight(lp.detach(), N) * lp.grad, rtol=1e-7, atol=1e-12)

def test_dco_through_a_model_on_a_batch():
    tok = word_tokenizer(list("0123456789="))
    m = tiny_lm(vocab_size=len(tok), n_layer=1, d_model=32, n_head=2, max_len=16, seed=3)
    b = collate(lm_examples(tok, ["1 9", "0 3"], prompts=["5 5 =", "1 2 ="], add_eos=False), pad_id=tok.pad_token_id)
    def grads(fn):
        m.zero_grad(); fn(m, b).backward()
        return torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None])
    with torch.no_grad(): lp = -sequence_nll(m, b)
    F = dco_weight(lp, 8).float()
    # the gradient of the batch mean is the F-weighted mean of the per-example CE gradients
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

# --- one tokenisation: training, scoring and sampling -------------------------------------------------------

@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_p_hat_is_what_training_maximises_and_the_sampler_draws_from(arch):
    "With BOS and EOS-terminated answers, p̂ from scoring = -sequence_nll of the training example = the sampler's probability."
    task = make_task(40, 16, seed=4)
    tok = word_tokenizer(task["vocab"]); tok.add_bos_token = True
    assert use_bos(tok)
    m = tiny_lm(arch, vocab_size=len(tok), n_layer=1, d_model=32, n_head=2, max_len=16, seed=1, tokenizer=tok).eval()
    probs = task["test"]
    ev = evaluate_passn(m, tok, probs, n_samples=0, add_eos=True)
    exs = passn_examples(tok, probs, add_eos=True)
    assert all(e["input_ids"][0] == tok.bos_token_id and e["input_ids"][-1] == tok.eos_token_id for e in exs)
    with torch.no_grad(): train_lp = np.array([-sequence_nll(m, collate([e])).item() for e in exs])
    # fp32 logits, sums of three tokens: 1e-4 relative
    np.testing.assert_allclose(ev["logp"], train_lp, rtol=1e-4)
    ref = sequence_logprobs(m, tok, [p["prompt"] for p in probs], [p["answer"] + tok.eos_token for p in probs])
    np.testing.assert_allclose(ev["logp"], ref, rtol=1e-4)
    pids = [split_example(e)[0] for e in exs]
    s, slp = sample_answers(m, pids, n=5, max_new_tokens=3, eos_id=tok.eos_token_id, seed=0)
    sx = []
    for i in range(len(pids)):
        for j in range(5):
            t = s[i, j].tolist(); t = t[:t.index(tok.eos_token_id) + 1] if tok.eos_token_id in t else t
            sx.append(dict(input_ids=pids[i] + t, labels=[-100] * len(pids[i]) + t))
    np.testing.assert_allclose(slp.numpy().ravel(), answer_logprobs(m, sx), rtol=1e-4)

def test_sampler_dedup_is_exact_and_equal_in_distribution():
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
