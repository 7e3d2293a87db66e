"""sort (Pink et al. 2024): the smoke run's metrics and claims, the presets' parameters, and the library's bad-input errors."""
import math, warnings
import pytest
from unlearnkit.repro import resolve_params, list_presets
from unlearnkit.sort import (check_params, make_sort_items, distance_bins, summarize, binom_summary, sort_claims,
                             book_passages, retrieve_context, CONDITIONS)

CLAIM_IDS = {"in_context_above_chance", "in_context_falls_with_length", "accuracy_rises_with_distance",
             "no_context_at_chance", "finetune_below_in_context"}

def _num(x): return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

@pytest.fixture(scope="module")
def smoke(repro_result):
    return repro_result("sort")

def test_metrics_schema(smoke):
    m, out = smoke
    assert m["name"] == "sort" and m["preset"] == "smoke"
    mm = m["metrics"]
    assert {"accuracy", "by_condition", "by_excerpt_length", "by_bin", "by_cell", "n_items", "seconds", "finetune"} <= set(mm)
    assert set(mm["accuracy"]) == set(m["params"]["conditions"])
    assert (out/"accuracy.png").exists() and (out/"label_bias.png").exists()
    assert (out/"items.csv").exists() and (out/"accuracy_by_cell.csv").exists()

def test_every_cell_is_filled_and_counterbalanced(smoke):
    m, out = smoke
    p, mm = m["params"], m["metrics"]
    n_cells = len(p["conditions"]) * len(p["excerpt_lengths"]) * len(p["segment_lengths"]) * 4
    assert len(mm["by_cell"]) == n_cells
    assert all(c["n"] == p["n_excerpts"] for c in mm["by_cell"])
    assert mm["n_items"] == len(p["excerpt_lengths"]) * len(p["segment_lengths"]) * 4 * p["n_excerpts"]
    import csv
    rows = list(csv.DictReader(open(out/"items.csv")))
    for cond in p["conditions"]:
        ans = [r["answer"] for r in rows if r["condition"] == cond]
        assert len(ans) == mm["n_items"] and ans.count("A") == ans.count("B")   # chance is exactly 0.5

def test_numbers_are_sane(smoke):
    m, _ = smoke
    mm = m["metrics"]
    for c in mm["by_condition"]:
        assert _num(c["acc"]) and 0 <= c["ci_lo"] <= c["acc"] <= c["ci_hi"] <= 1 and 0 <= c["p_value"] <= 1
        assert c["correct"] == round(c["acc"] * c["n"])
    ft = mm["finetune"]
    assert ft["steps"] > 0 and ft["loss_last"] < ft["loss_first"]      # fine-tuning learned the act
    assert 0.5 <= mm["retrieval_hit_rate"] <= 1                         # BM25 finds verbatim segments

def test_claims_table(smoke):
    m, _ = smoke
    claims = {c["id"]: c for c in m["claims"]}
    assert CLAIM_IDS == set(claims)
    for c in claims.values():
        assert c["source"] and c["run"] is not None and c["held"] in (True, False, None)
    acc = m["metrics"]["accuracy"]
    ic = next(c for c in m["metrics"]["by_condition"] if c["condition"] == "in_context")
    assert claims["in_context_above_chance"]["held"] == (ic["acc"] > 0.5 and ic["p_value"] < 0.05)
    nc = next(c for c in m["metrics"]["by_condition"] if c["condition"] == "no_context")
    assert claims["no_context_at_chance"]["held"] == (nc["p_value"] >= 0.05 or abs(nc["acc"] - 0.5) <= 0.03)   # 0.03: the claim's equivalence margin, not rounding
    if not claims["in_context_above_chance"]["held"]:   # the trend claims cannot be tested without the task working
        for k in ("in_context_falls_with_length", "accuracy_rises_with_distance", "finetune_below_in_context"):
            assert claims[k]["held"] is None

def test_presets_validate():
    assert {"smoke", "gpu"} <= set(list_presets("sort"))
    for preset in ("smoke", "gpu"):
        check_params(resolve_params("sort", preset))
    g = resolve_params("sort", "gpu")
    assert g["source"] == "booksort" and "Llama-3-8B" in g["model_name"] and max(g["excerpt_lengths"]) <= 2500

def test_gpu_preset_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1"); monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from unlearnkit.sort import load_booksort
    with pytest.raises(Exception) as e:
        load_booksort([250], [20])
    assert "booksort" in str(e.value).lower() or "hub" in str(e.value).lower() or "offline" in str(e.value).lower()

TEXT = " ".join(f"Line{i} goes here now." for i in range(400))   # 1600 words, a sentence every 4 words

def test_bad_input():
    with pytest.raises(ValueError, match="must be shorter than excerpt_lengths"): distance_bins(50, 50)
    with pytest.raises(ValueError, match="too long for excerpt_lengths"): distance_bins(100, 50)
    with pytest.raises(ValueError, match="shorter than the longest excerpt"): make_sort_items(TEXT, [5000], [20])
    with pytest.raises(ValueError, match="n_excerpts must be an even"): make_sort_items(TEXT, [200], [20], n_excerpts=3)
    base = resolve_params("sort", "smoke")
    for bad, msg in [(dict(conditions=["sleep"]), "conditions must be"), (dict(source="web"), "source must be"),
                     (dict(retrieval_order="random"), "retrieval_order"), (dict(prompt="p9"), "prompt must be one of")]:
        with pytest.raises(ValueError, match=msg): check_params({**base, **bad})

def test_empty_bin_warns_and_reports_zero():
    rows = [dict(condition="in_context", bin=0, correct=1, pred="A")]
    with pytest.warns(UserWarning, match="empty cell"):
        tab = summarize(rows, by=("condition", "bin"), expected=[("in_context", 0), ("in_context", 1)])
    assert [t["n"] for t in tab] == [1, 0] and math.isnan(tab[1]["acc"])

def test_items_are_deterministic_and_balanced():
    a = make_sort_items(TEXT, [250], [20, 50], n_excerpts=6, seed=3, as_dataset=False)
    assert a == make_sort_items(TEXT, [250], [20, 50], n_excerpts=6, seed=3, as_dataset=False)
    assert a != make_sort_items(TEXT, [250], [20, 50], n_excerpts=6, seed=4, as_dataset=False)
    assert sum(r["answer"] == "A" for r in a) * 2 == len(a) == 2 * 4 * 6

def test_retrieval_finds_segments():
    items = make_sort_items(TEXT, [200], [20], n_excerpts=2, seed=0, as_dataset=False)
    ix = book_passages(TEXT, 40, 20)
    # the toy text repeats its words, but the numbered first word of every sentence makes each segment unique
    for it in items:
        ctx, _ = retrieve_context(ix, it, k=1)
        assert it["seg_a"].split()[0] in ctx and it["seg_b"].split()[0] in ctx
