"""fewshot (Orhan 2023): the smoke run's metrics and claims, the presets' parameters, and the library's bad-input errors."""
import math
import pytest
from conftest import assert_claims_all_tested
from unlearnkit.repro import resolve_params, list_presets
from unlearnkit.fewshot import (check_params, make_stimuli, StimulusSet, exposure_steps, log_steps, paper_stimuli,
                                recognition_accuracy, OFFLINE_KINDS)

CLAIM_IDS = {"recognition_1x_novel", "recall_needs_3x", "recall_falls_recognition_stays", "recognition_outlasts_recall"}

def _num(x): return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

@pytest.fixture(scope="module")
def smoke(repro_result):
    return repro_result("fewshot")

def test_metrics_schema(smoke):
    m, out = smoke
    assert m["name"] == "fewshot" and m["preset"] == "smoke"
    assert {"recognition_by_exposures", "recall_by_exposures", "retention", "paper_style_rouge_floor", "best_lr"} <= set(m["metrics"])
    assert (out/"exposures.png").exists() and (out/"retention.png").exists()
    assert (out/"study.csv").exists() and (out/"retention.csv").exists()

def test_claims_table(smoke):
    m, _ = smoke
    assert_claims_all_tested(m, CLAIM_IDS)

def test_numbers_are_sane(smoke):
    m, _ = smoke
    mm = m["metrics"]
    p = m["params"]
    rec = mm["recognition_by_exposures"]
    assert set(rec) == {"0", *map(str, p["exposures"])}
    for e, by_kind in rec.items():
        assert set(by_kind) == set(p["kinds"])
        assert all(_num(v) and 0 <= v <= 1 for v in by_kind.values())
    # studying must raise recognition of novel sentences above the pretrained model's
    assert rec["3"]["novel"] > rec["0"]["novel"]
    # before study a fluent sentence always beats its scramble
    assert rec["0"]["scrambled"] <= 0.25
    for e, by_kind in mm["recall_by_exposures"].items():
        for k, s in by_kind.items():
            assert 0 <= s["exact"] <= s["rouge"] + 1e-9 <= 1 + 1e-9  # an exact match is a ROUGE-L of 1 (means of float64 ratios: 1e-9 covers their ~1e-16 rounding)
            assert s["rouge_full"] >= s["rouge"] - 0.02  # the prompt half only adds matched words
    # the paper-style score's floor: near 0.5 before any study, while the completion alone is near 0
    assert 0.35 <= mm["paper_style_rouge_floor"] <= 0.7
    assert mm["recall_by_exposures"]["0"]["novel"]["rouge"] < 0.3
    steps = sorted(map(int, mm["retention"]))
    assert steps == sorted(p["retention_steps"])
    # retention step 0 is the model right after the last exposure
    after = rec[str(max(p["exposures"]))]
    assert mm["retention"]["0"]["recognition"] == {k: after[k] for k in p["retention_kinds"]}

def test_held_matches_numbers(smoke):
    m, _ = smoke
    c = {x["id"]: x for x in m["claims"]}
    r = c["recall_needs_3x"]["run"]
    assert c["recall_needs_3x"]["held"] == (r["ROUGE-L completion, 3x"] >= 0.8 and r["ROUGE-L completion, 1x"] < 0.8)
    n = c["recognition_1x_novel"]
    assert n["held"] == (n["run"]["1 exposure"] >= n["paper"]["gpt2-124M"] - 0.05)
    f = c["recall_falls_recognition_stays"]["run"]
    assert c["recall_falls_recognition_stays"]["held"] == (f["recall drop (ROUGE-L) 0→10"] >= 0.1 and f["recognition drop 0→10"] <= 0.05)

@pytest.mark.parametrize("preset", ["smoke", "gpu"])
def test_presets_validate(preset):
    assert preset in list_presets("fewshot")
    p = resolve_params("fewshot", preset)
    check_params(p)
    if preset == "gpu":
        assert p["stimuli"] == "paper" and p["retention_text"] == "cnn_dailymail"
        assert set(p["lrs"]) == {1e-4, 3e-5, 1e-5} and p["retention_max_steps"] >= 10_000

@pytest.mark.parametrize("key,value,msg", [
    ("exposures", [0, 1, 3], "exposures"),
    ("exposures", [1, 2], "includes 1 and 3"),
    ("kinds", ["novel", "paraphrase"], "kinds"),
    ("recall_kinds", ["paraphrase"], "recall_kinds"),
    ("retention_kinds", ["substitution"], "retention_kinds"),
    ("retention_steps", [0, 10, 500], "retention_max_steps"),
    ("stimuli", "web", "'offline' or 'paper'"),
    ("lrs", [], "lrs"),
])
def test_bad_params(key, value, msg):
    p = resolve_params("fewshot", "smoke")
    p[key] = value
    with pytest.raises(ValueError, match=msg): check_params(p)

def test_bad_inputs_fail_before_training():
    with pytest.raises(ValueError, match="paired one-to-one"): StimulusSet("novel", ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="empty"): StimulusSet("random", [], [])
    with pytest.raises(ValueError, match="exposures"): exposure_steps(10, 1, [0])
    with pytest.raises(ValueError, match="empty"): exposure_steps(0, 1, [1])
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
