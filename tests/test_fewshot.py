"""fewshot (Orhan 2023): what is specific to this reproduction. The claims in metrics.json are what the claims
function gives on the run's own items.csv; the per-item scores agree with the recorded summaries; the presets pass
the parameter check and bad values fail in one line; the library's inputs fail before any training."""
import math
import pandas as pd
import pytest
from conftest import cli
from unlearnkit.repro import resolve_params, list_presets
from unlearnkit.fewshot import (check_params, fewshot_claims, make_stimuli, StimulusSet, exposure_steps, log_steps,
                                paper_stimuli, protocol_departures, recognition_accuracy, summary_rows, OFFLINE_KINDS,
                                LONG_RETENTION)

CLAIM_IDS = {"recognition_1x_novel", "recall_rises_with_exposures", "recall_falls_first_10", "recognition_outlasts_recall",
             "recall_persists", "recognition_retained_novel"}

@pytest.fixture(scope="module")
def smoke(repro_result):
    m, out = repro_result("fewshot")
    return m, out, pd.read_csv(out/"items.csv", float_precision="round_trip")   # round_trip: the floats the run wrote, bit for bit

def test_claims_recomputed_from_items(smoke):
    "The verdicts and numbers in metrics.json are the claims function's on the run's own per-item scores."
    m, _, items = smoke
    assert CLAIM_IDS <= {c["id"] for c in m["claims"]}
    assert fewshot_claims(items, m["metrics"]["departs"], seed=m["provenance"]["seed"]) == m["claims"]

def test_claims_say_where_the_preset_departs(smoke):
    m, _, _ = smoke
    dep = protocol_departures(m["params"])
    assert dep == m["metrics"]["departs"]
    for c in m["claims"]:
        assert c["departs"] and "smollm2-135m" in c["departs"], c["id"]

def test_long_term_claims_wait_for_long_retention(smoke):
    "Survival over 1k-100k updates is not settled by a short retention: those rows stay open, keeping their test."
    m, _, _ = smoke
    steps = max(m["params"]["retention_steps"])
    assert steps < LONG_RETENTION, "the smoke preset retains for fewer updates than the long-term claims need"
    long_term = [c for c in m["claims"] if c["id"] == "recall_persists" or c["id"].startswith("recognition_retained_")]
    assert {c["id"] for c in long_term} >= {"recall_persists", "recognition_retained_novel"}
    for c in long_term:
        assert c["held"] is None and c["reason"].startswith(f"retention too short to test it: {steps} updates"), c
        assert {"n", "effect", "p"} <= set(c["run"]), c["id"]

def test_items_agree_with_recorded_summaries(smoke):
    "Per-item rows and metrics.json tell the same story: every probe, every kind, every retention step."
    m, out, items = smoke
    mm, p = m["metrics"], m["params"]
    assert set(items.kind) == set(p["kinds"])
    summ = summary_rows(items)
    study = {(r["exposures"], r["kind"]): r for r in summ if r["phase"] == "study"}
    assert {e for e, _ in study} == {0, *p["exposures"]}
    for (e, k), r in study.items():
        assert r["recognition"] == mm["recognition_by_exposures"][str(e)][k]   # k/n both ways: exact
        if k in p["recall_kinds"]:   # the same per-item floats averaged by pandas and by NumPy: last-bit rounding at most
            assert r["rouge"] == pytest.approx(mm["recall_by_exposures"][str(e)][k]["rouge"], rel=1e-12)
    ret = [r for r in summ if r["phase"] == "retention"]
    assert sorted({r["step"] for r in ret}) == p["retention_steps"]
    for r in ret: assert r["recognition"] == mm["retention"][str(r["step"])]["recognition"][r["kind"]]
    # retention step 0 is the model right after the last exposure: the same weights, so the same losses up to float32
    # rounding (the texts are batched with different neighbours: ~1e-7 relative; a different model moves them by far more)
    last = items[(items.phase == "study") & (items.exposures == max(p["exposures"])) & items.kind.isin(p["retention_kinds"])]
    first = items[(items.phase == "retention") & (items.step == 0)]
    assert list(first.sort_values(["kind", "i"]).seen_nll) == pytest.approx(list(last.sort_values(["kind", "i"]).seen_nll), rel=1e-5)
    assert (out/"exposures.png").exists() and (out/"retention.png").exists() and (out/"summary.csv").exists()

def test_paper_style_rouge_has_a_floor(smoke):
    "Before study the model recalls next to nothing, yet the paper's prompt + completion ROUGE sits near 0.5."
    m, _, items = smoke
    before = items[(items.phase == "study") & (items.exposures == 0) & (items.kind == "novel")]
    assert before.rouge.mean() < 0.3
    assert 0.35 < before.rouge_full.mean() < 0.7   # half the reference is the prompt itself: F1 near 1/2
    # the same per-item float64 scores averaged by NumPy in the run and by pandas here: last-bit differences at most
    assert math.isclose(m["metrics"]["paper_style_rouge_floor"], before.rouge_full.mean(), rel_tol=1e-12)

@pytest.mark.parametrize("preset", ["smoke", "gpu"])
def test_presets_validate(preset):
    assert preset in list_presets("fewshot")
    p = resolve_params("fewshot", preset)
    check_params(p)
    if preset == "gpu":
        assert p["stimuli"] == "paper" and p["retention_text"] == "cnn_dailymail"
        assert set(p["lrs"]) == {1e-4, 3e-5, 1e-5} and p["retention_max_steps"] >= 10_000

@pytest.mark.parametrize("key,value,msg", [
    ("exposures", "[0, 1, 3]", "parameter 'exposures': got [0, 1, 3]; allowed:"),
    ("exposures", "[]", "parameter 'exposures': got []"),
    ("retention_steps", "[0, 10, 500]", "steps <= retention_max_steps"),
    ("retention_steps", "[-5, 0, 10, 20]", "parameter 'retention_steps': got [-5, 0, 10, 20]"),
    ("lrs", "[1e-4, 'a']", "parameter 'lrs'"),
    ("retention_lr", "0", "parameter 'retention_lr': got 0.0; allowed: a finite number > 0"),
    ("kinds", "['novel', 'paraphrase']", "parameter 'kinds'"),
    ("stimuli", "web", "allowed: one of 'offline', 'paper'"),
])
def test_bad_params_fail_in_one_line(key, value, msg):
    r = cli("run", "fewshot", "--dry-run", "-p", key, value)
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

def test_bad_inputs_fail_before_training():
    with pytest.raises(ValueError, match="paired one-to-one"): StimulusSet("novel", ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="empty"): StimulusSet("random", [], [])
    with pytest.raises(ValueError, match="exposures must be"): exposure_steps(10, 1, [0])
    with pytest.raises(ValueError, match="study set is empty"): exposure_steps(0, 1, [1])
    with pytest.raises(ValueError, match="equal length"): recognition_accuracy([1.0], [1.0, 2.0])
    assert log_steps(1000)[-1] == 1000 and log_steps(1000)[:4] == [1, 2, 5, 10]

def test_offline_stimuli_deterministic_and_disjoint():
    a, b = make_stimuli(seed=3), make_stimuli(seed=3)
    assert {k: (v.seen, v.foils) for k, v in a.items()} == {k: (v.seen, v.foils) for k, v in b.items()}
    assert set(a) == set(OFFLINE_KINDS)
    studied = {s for st in a.values() for s in st.seen}
    assert not studied & {f for st in a.values() for f in st.foils}

def test_paper_stimuli_download_or_clear_error():
    "Online: the paper's files parse into paired sets; offline: a ConnectionError that says what to do."
    try:
        sets = paper_stimuli(expts=(1,), n=5, timeout=5)
    except ConnectionError as e:
        assert "stimuli='offline'" in str(e)
    else:
        assert len(sets["novel"]) == 5 and sets["novel"].seen[0] != sets["novel"].foils[0]
