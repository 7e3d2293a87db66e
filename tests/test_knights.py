"""Knights and Knaves (Xie et al. 2024): generator/solver/perturbation invariants, parameter checks, and the smoke run."""
import math, random
import pytest
from conftest import cli
from unlearnkit.repro import check_metrics, resolve_params
from unlearnkit.knights import (generate_puzzles, solve, perturb, perturb_set, perturb_leaf, perturb_statement, make_puzzle,
                                score_nl, score_compact, nl_example, compact_example, limem, validate_params, require_hub,
                                is_forbidden, Style, PerturbationError, MATH_LEVEL, LANGUAGE_LEVEL, PERTURBATIONS)

# ---- generator and solver ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", range(2, 9))
def test_generator_unique_distinct_deterministic(n):
    ps = generate_puzzles(n, 12, seed=7)
    assert len({p.statements for p in ps}) == 12
    for p in ps:
        assert solve(p.statements) == [p.solution]
        assert not any(is_forbidden(s, i) for i, s in enumerate(p.statements))
    assert generate_puzzles(n, 12, seed=7) == ps
    assert generate_puzzles(n, 12, seed=8) != ps

def test_solver_against_hand_cases():
    assert solve((("knave", 1), ("and", ("knight", 0), ("knight", 1)))) == [(True, False)]
    assert solve((("knight", 1), ("knight", 0))) == [(True, True), (False, False)]
    assert solve((("<=>", ("knight", 0), ("knave", 1)), ("->", ("knight", 0), ("knave", 0)))) == [(True, False)]

@pytest.mark.parametrize("kw,needle", [(dict(n_people=1), "n_people"), (dict(n_people=9), "n_people"),
                                       (dict(n_people=3, depth=3), "depth"), (dict(n_people=3, width=4), "width")])
def test_generator_rejects_outside_grammar(kw, needle):
    with pytest.raises(ValueError, match=needle): generate_puzzles(n_puzzles=1, **kw)

def test_generator_gives_up_instead_of_looping():
    with pytest.raises(RuntimeError, match="max_draws"): generate_puzzles(2, 100, depth=1, max_draws=500)

# ---- perturbations ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", MATH_LEVEL)
@pytest.mark.parametrize("n", [3, 5, 8])
def test_math_perturbations_unique_and_different(kind, n):
    ps = generate_puzzles(n, 20, seed=3)
    out = perturb_set(ps, kind, seed=11)
    assert sum(o is not None for o in out) >= 14
    for k, (p, o) in enumerate(zip(ps, out)):
        if o is None: continue
        q, style = o
        assert solve(q.statements) == [q.solution]            # unique
        assert q.solution != p.solution                        # different
        assert sum(a != b for a, b in zip(p.statements, q.statements)) == 1
        assert perturb(p, kind, seed=11 + k) == o              # deterministic
        assert style == Style()

@pytest.mark.parametrize("kind", LANGUAGE_LEVEL)
def test_language_perturbations_keep_logic(kind):
    p = generate_puzzles(3, 1, seed=0)[0]
    q, style = perturb(p, kind, seed=2)
    assert q == p and style != Style()
    prompt, gold = nl_example(q, style)
    assert score_nl(gold, q, style)
    if kind == "flip_role": assert not score_nl(nl_example(p)[1], q, style)   # the answer's words swap

def test_retry_budget_error():
    stuck = make_puzzle((("knave", 1), ("and", ("knight", 0), ("knight", 1))))   # no leaf swap changes its answer
    with pytest.raises(PerturbationError, match="max_tries"): perturb_leaf(stuck, rng=random.Random(0))
    p = generate_puzzles(3, 1, seed=0)[0]
    fails = 0
    for s in range(30):
        try: perturb_statement(p, rng=random.Random(s), max_tries=1)
        except PerturbationError as e: fails += 1; assert "max_tries=1" in str(e)
    assert fails > 0
    with pytest.raises(ValueError, match="max_tries"): perturb(p, "statement", max_tries=0)
    with pytest.raises(ValueError, match="allowed"): perturb(p, "nonsense")

# ---- scoring and metrics ----------------------------------------------------------------------------------------
def test_scoring_is_the_papers_and_never_crashes():
    p = generate_puzzles(3, 1, seed=0)[0]
    gold = nl_example(p)[1]
    assert score_nl(gold, p) and score_nl("reasoning...\n" + gold + "\n### extra", p)
    assert not score_nl(gold + "\n(4) Olivia is a knight", p)
    assert not score_nl(gold + " if I am right", p)
    flipped = gold.replace("knight", "X").replace("knave", "knight").replace("X", "knave")
    assert not score_nl(flipped, p)
    for bad in ["", None, 3.5, b"CONCLUSION:", "CONCLUSION:" * 3, "\x00" * 10]:
        assert score_nl(bad, p) is False and score_compact(bad, p) is False
    assert score_compact(compact_example(p)[1], p)

def test_limem_formula():
    r = limem([True, True, True, True, False], [True, False, False, None, True])
    assert r["n"] == 4 and r["n_correct"] == 3 and r["n_consistent"] == 1
    assert math.isclose(r["limem"], r["acc"] * (1 - r["cr"]))   # float64 ratios of counts < 10: the two forms differ by ~1e-16; isclose's rel_tol=1e-9

# ---- parameters -------------------------------------------------------------------------------------------------
def test_gpu_preset_validates_without_running():
    p = resolve_params("knights", "gpu")
    cfg = validate_params(p)
    assert cfg["form"] == "nl" and cfg["people"] == (3, 5) and set(cfg["perturbations"]) == set(PERTURBATIONS)
    assert p["lora_r"] == 32 and p["lora_alpha"] == 32 and p["lr"] == 5e-5

@pytest.mark.parametrize("key,value,needle", [("people", "3,9", "people"), ("perturbations", "leaf,typo", "perturbations"),
                                              ("perturbations", "flip_role", "compact"), ("lora_r", 8, "lora_r"),
                                              ("n_train", 0, "n_train"), ("schedule", "step", "schedule"), ("depth", 5, "depth")])
def test_bad_params_named(key, value, needle):
    p = resolve_params("knights", "smoke"); p[key] = value
    with pytest.raises(ValueError, match=needle): validate_params(p)

def test_hub_check_fails_fast_and_clearly(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)   # offline mode skips the check on purpose
    with pytest.raises(RuntimeError, match="Hugging Face hub"): require_hub("unlearnkit-invalid/no-such-model-xyz", timeout=5)
    require_hub("smollm2-135m"); require_hub("tiny")    # offline names pass

def test_cli_rejects_bad_people(tmp_path):
    r = cli("run", "knights", "-p", "people", "3,9", "--out", tmp_path/"x")
    assert r.returncode != 0 and "people must be" in r.stderr

# ---- the smoke run ----------------------------------------------------------------------------------------------
def test_smoke_run(repro_result):
    m, out = repro_result("knights")
    check_metrics(m, "knights", "smoke")
    ids = {c["id"]: c for c in m["claims"]}
    assert set(ids) == {"interpolates_train", "perturbed_lower_limem_positive", "limem_grows_with_n", "ft_improves_test",
                        "language_hurts_less", "zero_shot_small_model_fails"}
    for f in ("accuracy_over_epochs.png", "limem.png", "accuracy.csv", "limem.csv", "knights.ipynb"):
        assert (out/f).exists(), f
    rows, lrows = m["metrics"]["accuracy"], m["metrics"]["limem"]
    assert all(0 <= r["acc"] <= 1 for r in rows)
    for r in lrows:
        # float64 ratios of counts of a few hundred puzzles: LiMem and Acc·(1 - CR) differ by ~1e-16 (JSON keeps floats exactly), so 1e-9 is loose
        assert 0 <= r["limem"] <= r["acc"] + 1e-9
        if r["cr"] is not None: assert math.isclose(r["limem"], r["acc"] * (1 - r["cr"]), abs_tol=1e-9)
    # the untrained model solves nothing; the claims' verdicts follow from the measured numbers
    assert all(r["acc"] == 0 for r in rows if r["epoch"] == 0 and r["set"] == "train")
    fin = m["metrics"]["final"]
    assert ids["interpolates_train"]["held"] == all(v >= 0.9 for v in fin["train_acc"].values())
    if len(fin["train_acc"]) == 1: assert ids["limem_grows_with_n"]["held"] is None
    zs = m["metrics"]["zero_shot"]
    assert zs["n"] == m["params"]["n_zero_shot"] and 0 <= zs["acc"] <= 1
    assert ids["zero_shot_small_model_fails"]["held"] == (zs["acc"] < 0.7)
