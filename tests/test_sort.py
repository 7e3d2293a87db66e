"""sort (Pink et al. 2024): what is specific to this reproduction. The claims in metrics.json are what
`sort_claims` gives on the run's own items.csv; the items file keeps both scoring rules and the counterbalancing;
the generator passes the paper's uniformity check; the presets validate; bad values fail with the parameter's name."""
import json
import numpy as np
import pandas as pd
import pytest
from unlearnkit.core import ParamError
from unlearnkit.repro import ReproError, resolve_params, list_presets
from unlearnkit.sort import (ab_answer, book_passages, check_params, load_booksort, make_sort_items, play_text,
                             position_uniformity, retrieve_context, sort_claims, sort_tables)

@pytest.fixture(scope="module")
def smoke(repro_result):
    m, out = repro_result("sort")
    return m, out, pd.read_csv(out/"items.csv", keep_default_na=False, na_values=[""]).to_dict("records")

def test_claims_are_recomputed_from_the_items_file(smoke):
    "The verdicts, numbers and reasons in metrics.json follow from items.csv alone (same tests, same seed)."
    m, _, rows = smoke
    again = sort_claims(rows, m["params"], scoring=m["params"]["scoring"], seed=m["provenance"]["seed"])
    assert json.loads(json.dumps(again)) == m["claims"]
    assert {c["id"] for c in m["claims"]} == {"in_context_above_chance", "in_context_falls_with_length",
                                              "accuracy_rises_with_distance", "no_context_at_chance", "finetune_below_in_context"}
    for c in m["claims"]:
        assert c["departs"] and "smollm2-135m" in c["departs"], c["id"]   # the smoke preset says where it departs

def test_items_file_keeps_both_rules_and_the_counterbalancing(smoke):
    m, _, rows = smoke
    p = m["params"]
    n_items = len(p["excerpt_lengths"]) * len(p["segment_lengths"]) * 4 * p["n_excerpts"]
    for cond in p["conditions"]:
        rs = [r for r in rows if r["condition"] == cond]
        assert len(rs) == n_items and sum(r["answer"] == "A" for r in rs) * 2 == n_items   # chance is exactly 0.5
    for r in rows:   # each answer is what its log-probs give (a missing official log-prob is an empty cell: NaN)
        lp = lambda k: -np.inf if pd.isna(r[k]) else r[k]
        assert r["pred"] == ab_answer(lp("lp_a"), lp("lp_b")) and r["correct"] == int(r["pred"] == r["answer"])
        assert r["pred_logsumexp"] == ab_answer(r["lp_a_logsumexp"], r["lp_b_logsumexp"])
        assert r["correct_logsumexp"] == int(r["pred_logsumexp"] == r["answer"])

def test_metrics_tables_follow_from_the_items(smoke):
    m, _, rows = smoke
    p, mm = m["params"], m["metrics"]
    t = json.loads(json.dumps(sort_tables(rows, p["conditions"], p["excerpt_lengths"], p["segment_lengths"], p["scoring"]),
                              default=float).replace("NaN", "null"))
    for k in ("by_condition", "by_cell", "scoring_rules"):
        assert mm[k] == t[k], k
    assert all(c["n"] == p["n_excerpts"] for c in mm["by_cell"])   # every (condition, L_E, L_S, bin) cell is filled
    assert mm["accuracy"] == {r["condition"]: round(r["acc"], 4) for r in mm["by_condition"]}
    ft = mm["finetune"]
    assert ft["steps"] > 0 and ft["loss_last"] < ft["loss_first"]      # fine-tuning learned the act
    assert 0.5 <= mm["retrieval_hit_rate"] <= 1                         # BM25 finds verbatim segments

def test_uniformity_is_reported_and_the_generator_passes_it(smoke):
    "The paper's KS checks on the run's items are in metrics; on 100 excerpts of the same play the generator passes them."
    m, _, _ = smoke
    u = m["metrics"]["uniformity"]
    assert {x["positions"] for x in u} == {"excerpt starts", "segment starts (A)"} and all(0 <= x["p"] <= 1 for x in u)
    # the whole play: one act has too few sentence starts (76 for 250-word excerpts) to test a draw of many excerpts
    text, _ = play_text(m["params"]["play"], "")
    items = make_sort_items(text, [250], [20, 50], n_excerpts=100, seed=0)
    big = position_uniformity(items, len(text.split()))
    assert [x["n"] for x in big] == [100, 400, 400]
    assert all(x["p"] > 0.05 for x in big), big   # seeded: a deterministic check of the draw, as the paper's generator does

def test_presets_validate():
    assert {"smoke", "gpu"} <= set(list_presets("sort"))
    for preset in ("smoke", "gpu"):
        check_params(resolve_params("sort", preset))
    g = resolve_params("sort", "gpu")
    assert g["source"] == "booksort" and "Llama-3-8B" in g["model_name"] and max(g["excerpt_lengths"]) <= 2500
    assert "in_memory" not in g["conditions"] and g["n_excerpts"] == 100

@pytest.mark.parametrize("key,value,needle", [
    ("n_excerpts", "3", "parameter 'n_excerpts': got 3; allowed: an even int >= 2"),
    ("excerpt_lengths", "[250.5]", "parameter 'excerpt_lengths': got [250.5]"),
    ("segment_lengths", "[100]", "parameter 'segment_lengths': got [100]; allowed: segment lengths below 62"),
    ("act", "IX", "parameter 'act': got 'IX'; allowed: one of 'I', 'II', 'III', 'IV', 'V'"),
    ("conditions", "['in_context', 'dreaming']", "parameter 'conditions'"),
    ("passage_stride", "100", "parameter 'passage_stride': got 100"),
    ("scoring", "vote", "parameter 'scoring': got 'vote'"),
    ("books", "[69087]", "parameter 'books': got [69087]; allowed: [] with source='shakespeare'"),
])
def test_bad_values_name_the_parameter(key, value, needle):
    with pytest.raises(ReproError, match="^sort: ") as e:
        resolve_params("sort", "smoke", {key: value})
    assert needle in str(e.value)

def test_booksort_limits():
    g = resolve_params("sort", "gpu")
    for bad, needle in [(dict(conditions=["in_memory"]), "without 'in_memory'"), (dict(excerpt_lengths=[500]), "Book-SORT's lengths"),
                        (dict(n_excerpts=110), "from 2 to 100")]:
        with pytest.raises(ParamError) as e: check_params({**g, **bad})
        assert needle in str(e.value)

def test_gpu_preset_fails_fast_offline(monkeypatch):
    import datasets
    monkeypatch.delenv("UNLEARNKIT_STANDINS", raising=False)   # the hub path, not a stand-in
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1"); monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConnectionError, match="cannot reach the Hugging Face hub"):
        load_booksort([250], [20])

def test_gpu_data_path_reads_booksort_in_its_hub_layout(tmp_path, monkeypatch):
    "The gpu preset's data code on the stand-in of memari/booksort (the real schema): items in this module's schema, filtered."
    from unlearnkit.standins import make_dataset_standin
    make_dataset_standin("memari/booksort", tmp_path)
    monkeypatch.setenv("UNLEARNKIT_STANDINS", str(tmp_path))
    items = load_booksort([250, 1000], [20], max_excerpt_idx=2, books=[69087])
    assert len(items) == 2 * 2 and {(r["excerpt_length"], r["segment_length"], r["book"]) for r in items} == {(250, 20, "69087"), (1000, 20, "69087")}
    for r in items:
        words = r["excerpt"].split()
        assert r["seg_a"] == " ".join(words[r["pos_a"]: r["pos_a"] + 20]) and r["seg_b"] == " ".join(words[r["pos_b"]: r["pos_b"] + 20])
        assert r["answer"] == ("A" if r["pos_a"] < r["pos_b"] else "B") and r["distance"] == abs(r["pos_b"] - r["pos_a"])

TEXT = " ".join(f"Line{i} goes here now." for i in range(400))   # 1600 words, a sentence every 4 words

def test_items_are_deterministic_and_balanced():
    a = make_sort_items(TEXT, [250], [20, 50], n_excerpts=6, seed=3)
    assert a == make_sort_items(TEXT, [250], [20, 50], n_excerpts=6, seed=3)
    assert a != make_sort_items(TEXT, [250], [20, 50], n_excerpts=6, seed=4)
    assert sum(r["answer"] == "A" for r in a) * 2 == len(a) == 2 * 4 * 6

def test_retrieval_finds_segments():
    items = make_sort_items(TEXT, [200], [20], n_excerpts=2, seed=0)
    ix = book_passages(TEXT, 40, 20)
    # the toy text repeats its words, but the numbered first word of every sentence makes each segment unique
    for it in items:
        ctx, _ = retrieve_context(ix, it, k=1)
        assert it["seg_a"].split()[0] in ctx and it["seg_b"].split()[0] in ctx
