"""Knights and Knaves (Xie et al. 2024): the generator is the official sampler, the scorers are the paper's (compact: no
contradictions), the parameter check, and the smoke run's claims recomputed from its own per-item scores."""
import csv, hashlib, json, math
import numpy as np, pandas as pd
import pytest
from conftest import cli
from unlearnkit.core import ParamError, _jsonable
from unlearnkit.repro import resolve_params
from unlearnkit.knights import (generate_puzzles, train_test_split, solve, perturb, perturb_set, make_puzzle, score_nl,
                                score_compact, nl_example, compact_example, limem, check_params, knights_claims,
                                knights_departs, accuracy_rows, limem_rows, Style, MATH_LEVEL, LANGUAGE_LEVEL, PERTURBATIONS)

# ---- the generator is the official sampler ----------------------------------------------------------------------
# sha256 of repr([(statements, solution), ...]) of the puzzles AlphaPav/mem-kk-logic's KKProblemSampler(1234, n)
# .sample_valid_problems(k) returns (data_prep/lib_kk.py at 35385cf, as data_gen_kk.py calls it; leaves renamed
# telling-truth -> knight, lying -> knave): the paper's data sets, test puzzles first.
OFFICIAL_SHA256 = {(2, 300): "9cfa664c6a757fd54665e0f2de13893eb73492a087c5b1399da56dc8679963d9",
                   (5, 300): "63be115dd2d63b072041acead95fb8d635119c10b0102eda4bb807ffda0e20a7",
                   (8, 100): "0bc5f70b5260a6e21eb24b14d775ce46bc690050608733a50765e9f8bb2cd959"}

@pytest.mark.parametrize("n,k", list(OFFICIAL_SHA256))
def test_generator_draws_the_official_puzzles(n, k):
    ps = generate_puzzles(n, k, seed=1234)
    assert hashlib.sha256(repr([(p.statements, p.solution) for p in ps]).encode()).hexdigest() == OFFICIAL_SHA256[(n, k)]

def test_first_official_puzzle_and_split():
    first = ((("<=>", ("knight", 1), ("knave", 1)), ("<=>", ("knave", 2), ("knight", 2)), ("->", ("knave", 0), ("knave", 1))),
             (False, False, True))   # the official sampler's first 3-person puzzle, seed 1234
    train, test = train_test_split(3, 20, 10, seed=1234)
    assert (test[0].statements, test[0].solution) == first   # the paper's test set comes first
    assert test + train == generate_puzzles(3, 30, seed=1234)

def _leaves(s): return [s] if s[0] in ("knight", "knave") else [l for x in s[1:] for l in _leaves(x)]
def _repeats(s): return s[0] not in ("knight", "knave") and (len(set(s[1:])) < len(s) - 1 or any(map(_repeats, s[1:])))

@pytest.mark.parametrize("n", range(2, 9))
def test_generator_keeps_the_official_constraints(n):
    "Nobody says, at any depth, that they are a knave; no operator repeats an operand; one solution; no duplicates."
    ps = generate_puzzles(n, 60, seed=7)
    assert len({p.statements for p in ps}) == 60
    for p in ps:
        assert solve(p.statements) == [p.solution]
        for i, s in enumerate(p.statements):
            assert ("knave", i) not in _leaves(s), (i, s)
            assert not _repeats(s), s
    assert generate_puzzles(n, 60, seed=7) == ps and generate_puzzles(n, 60, seed=8) != ps

def test_asking_for_more_puzzles_than_exist_fails_at_once():
    with pytest.raises(ValueError, match="only 399 with a unique solution exist"): generate_puzzles(2, 400)
    with pytest.raises(ValueError, match="only 0 with a unique solution exist"): generate_puzzles(3, 1, depth=1)
    assert len(generate_puzzles(2, 399)) == 399   # and all that exist can be drawn

@pytest.mark.parametrize("kw,needle", [(dict(n_people=1), "n_people"), (dict(n_people=9), "n_people"),
                                       (dict(n_people=3, depth=3), "depth"), (dict(n_people=3, width=4), "width")])
def test_generator_rejects_outside_grammar(kw, needle):
    with pytest.raises(ValueError, match=needle): generate_puzzles(n_puzzles=1, **kw)

# ---- perturbations ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", MATH_LEVEL)
@pytest.mark.parametrize("n", [3, 5, 8])
def test_math_perturbations_unique_different_allowed(kind, n):
    ps = generate_puzzles(n, 20, seed=3)
    out = perturb_set(ps, kind, seed=11)
    assert sum(o is not None for o in out) >= 14
    for k, (p, o) in enumerate(zip(ps, out)):
        if o is None: continue
        q, style = o
        assert solve(q.statements) == [q.solution] and q.solution != p.solution     # unique and different
        assert sum(a != b for a, b in zip(p.statements, q.statements)) == 1          # one person's statement changed
        assert not any(("knave", i) in _leaves(s) for i, s in enumerate(q.statements))   # never "I am a knave"
        assert perturb(p, kind, seed=11 + k) == o and style == Style()               # deterministic

@pytest.mark.parametrize("kind", LANGUAGE_LEVEL)
def test_language_perturbations_keep_logic(kind):
    p = generate_puzzles(3, 1, seed=0)[0]
    q, style = perturb(p, kind, seed=2)
    assert q == p and style != Style()
    assert score_nl(nl_example(q, style)[1], q, style)
    if kind == "flip_role": assert not score_nl(nl_example(p)[1], q, style)   # the answer's words swap

# ---- scoring ----------------------------------------------------------------------------------------------------
def test_compact_scorer_rejects_contradictions():
    p = next(x for x in generate_puzzles(3, 200, seed=0) if x.solution == (True, True, True))
    assert score_compact("A kt B kt C kt", p)
    assert not score_compact("A kt A kv B kt C kt", p)       # A is given both roles: a contradiction, not an answer
    assert not score_compact("A kt B kt C kt C kv", p)
    assert not score_compact("A kt B kt C kt D kt", p) and not score_compact("A kt B kt", p)

def test_nl_scorer_is_the_papers():
    p = generate_puzzles(3, 1, seed=0)[0]
    gold = nl_example(p)[1]
    assert score_nl(gold, p) and score_nl("reasoning...\n" + gold + "\n### extra", p)
    assert not score_nl(gold + "\n(4) Olivia is a knight", p)
    assert not score_nl(gold + " if I am right", p)
    assert not score_nl(gold + "\nno difference", p)          # the paper's test is the substring "if", not the word
    assert score_nl(gold + "\nLet's think step by step again: if ...", p)   # the paper cuts there before looking for "if"
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
def test_gpu_preset_checks_offline():
    p = resolve_params("knights", "gpu")
    assert check_params(dict(p)) == p
    assert p["people"] == [3, 5] and p["perturbations"] == list(PERTURBATIONS)
    assert (p["model"], p["lora_r"], p["lora_alpha"], p["lr"], p["epochs"], p["batch_size"] * p["grad_accum"]) == \
        ("meta-llama/Meta-Llama-3-8B", 32, 32, 5e-5, 50, 32)
    assert knights_departs(p).startswith("unquantised base weights")

@pytest.mark.parametrize("key,value", [("people", "3,5"), ("people", [3, 9]), ("people", []), ("perturbations", ["leaf", "typo"]),
                                       ("perturbations", ["flip_role"]), ("lora_r", 8), ("n_train", 0), ("schedule", "step"),
                                       ("depth", 1), ("lr", float("inf")), ("eval_every", 61), ("n_zero_shot", -1)])
def test_bad_params_named(key, value):
    p = resolve_params("knights", "smoke"); p[key] = value
    with pytest.raises(ParamError, match=f"parameter '{key}': got"): check_params(p)

def test_cli_rejects_bad_values_in_one_line(tmp_path):
    for args, needle in [(("-p", "people", "[3, 9]"), "parameter 'people': got [3, 9]"),
                         (("-p", "people", "3,5"), "parameter 'people'"),
                         (("-p", "perturbations", '["flip_role"]'), "parameter 'perturbations'")]:
        r = cli("run", "knights", "--dry-run", *args, "--out", tmp_path/"x")
        assert r.returncode != 0 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

# ---- the smoke run ----------------------------------------------------------------------------------------------
CLAIM_IDS = {"interpolates_train", "perturbed_lower_limem_positive", "limem_rises_with_epochs", "limem_grows_with_n",
             "ft_improves_test", "language_hurts_less"}

def test_smoke_claims_recomputed_from_items(repro_result):
    "The claims in metrics.json are what knights_claims gives on the run's own items file."
    m, out = repro_result("knights")
    assert {c["id"] for c in m["claims"]} == CLAIM_IDS
    items = pd.read_csv(out/"items.csv")
    again = knights_claims(items, departs=knights_departs(m["params"]), seed=m["provenance"]["seed"])
    assert json.loads(json.dumps(_jsonable(again))) == m["claims"]
    for c in m["claims"]:
        assert c["departs"] and "trained from scratch on compact symbols" in c["departs"]
        if c["held"] is not None: assert {"n", "effect", "p"} <= set(c["run"])

def test_smoke_aggregates_and_items(repro_result):
    m, out = repro_result("knights")
    items = pd.read_csv(out/"items.csv")
    p = m["params"]
    assert set(items.people) == set(p["people"]) and set(items.set) == {"train", "test"}
    n_evals = len(range(0, p["epochs"] + 1, p["eval_every"]))
    assert len(items) == len(p["people"]) * n_evals * (p["n_eval"] + p["n_test"])
    assert json.loads(json.dumps(_jsonable(accuracy_rows(items)))) == m["metrics"]["accuracy"]
    assert json.loads(json.dumps(_jsonable(limem_rows(items)))) == m["metrics"]["limem"]
    for r in m["metrics"]["limem"]:
        # float64 ratios of counts of a few hundred puzzles: LiMem and Acc·(1 - CR) differ by ~1e-16 (JSON keeps floats exactly), so 1e-9 is loose
        assert 0 <= r["limem"] <= r["acc"] + 1e-9
        if r["cr"] is not None: assert math.isclose(r["limem"], r["acc"] * (1 - r["cr"]), abs_tol=1e-9)
    assert (items[items.epoch == 0].correct == 0).all()   # a model trained from scratch solves nothing before training

def test_smoke_puzzles_are_the_officials(repro_result):
    m, _ = repro_result("knights")
    dist = {r["statistic"]: r for r in m["metrics"]["puzzle_distribution"]}
    for n in m["params"]["people"]:
        assert dist["self_knave_puzzles"][f"{n} people"] == 0 and dist["duplicate_operand_puzzles"][f"{n} people"] == 0
        assert dist["puzzles"][f"{n} people"] == m["params"]["n_train"] + m["params"]["n_test"]
        # the run's puzzles are the first of the official data set; a share of ~1000 statements has sd ~0.013, so 0.05 is ~4 sd
        assert abs(dist["root_leaf"][f"{n} people"] - dist["root_leaf"][f"{n} people, official"]) < 0.05

def test_smoke_zero_shot_small_model_fails(repro_result):
    "SmolLM2-135M solves few 2-person puzzles zero-shot: a check that the parser does not accept what it should not."
    m, out = repro_result("knights")
    zs, rows = m["metrics"]["zero_shot"], list(csv.DictReader(open(out/"zero_shot_items.csv", encoding="utf-8")))
    assert zs["n"] == m["params"]["n_zero_shot"] == len(rows)
    assert math.isclose(zs["acc"], sum(int(r["correct"]) for r in rows) / len(rows))   # the same ratio computed twice from counts
    assert zs["acc"] < 0.7   # the paper: only frontier models pass 70% on 2-person puzzles; a 135M model guesses (1/4 each)
