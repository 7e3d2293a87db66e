"""kvcache (A2SF, TRIM-KV and heuristics): cache invariants on every registered policy, A2SF's score and TRIM-KV's
decayed attention against hand computations, bad input, the presets' parameters, and the smoke run's claims
recomputed from its own per-item files."""
import math
import numpy as np, pandas as pd
import pytest
import torch
from conftest import assert_claims_all_tested
from transformers import DynamicCache
from unlearnkit.core import ParamError
from unlearnkit.models import tiny_lm
from unlearnkit.repro import resolve_params, list_presets, paper_module
from unlearnkit.kvcache import (POLICIES, make_policy, EvictingCache, evicting, forward_with_policy, generate_with_policy,
                                Full, H2O, A2SF, StreamingLLM, kv_bytes, memory_stats)
from unlearnkit.trimkv import RetentionGates, TrimKV, decayed_attention
from unlearnkit.kvrecall import check_params, kvcache_claims, kvcache_departs

CLAIM_IDS = {"a2sf_beats_h2o", "a2sf_beats_h2o_lm", "trimkv_best_small_budget", "streaming_loses_middle"}

@pytest.fixture(scope="module")
def model():
    return tiny_lm(n_layer=2, d_model=64, n_head=4, n_kv_head=2, max_len=256, seed=0).eval()

@pytest.fixture(scope="module")
def ids():
    return torch.randint(4, 260, (2, 40), generator=torch.Generator().manual_seed(1))

def _policy(name, model):
    return make_policy(name, **({"gates": RetentionGates(model, seed=0)} if name == "trimkv" else {}))

@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize("chunk", [1, 3])
def test_budget_respected_every_step(model, ids, name, chunk):
    pol, B = _policy(name, model), 10
    cache = EvictingCache(model, pol, B if pol.evicts else None)
    with torch.no_grad(), evicting(model, cache):
        for s in range(0, ids.shape[1], chunk):
            model(input_ids=ids[:, s:s+chunk], cache=cache, use_cache=True)
            seen = min(s + chunk, ids.shape[1])
            want = seen if not pol.evicts else min(seen, B)
            assert cache.stored() == [want]*2, (name, s, cache.stored())
            for l in cache.layers:   # kept positions are distinct and all already seen (slots need not be in order)
                assert (l.positions.sort(-1).values.diff(dim=-1) > 0).all() and int(l.positions.max()) < seen
                if not pol.evicts: assert l.positions[0, 0].tolist() == list(range(seen))
    assert cache.get_seq_length() == ids.shape[1]   # positions keep counting: no re-rotation
    assert max(cache.held_bytes) == kv_bytes(model, want, batch=2)

@pytest.mark.parametrize("name", ["streaming_llm", "h2o", "tova", "trimkv"])
@pytest.mark.parametrize("chunk", [1, 3])
def test_eviction_buffer(model, ids, name, chunk):
    "With buffer b a layer grows to B + b tokens, then one eviction brings it back to exactly B."
    B, b = 8, 5
    cache = EvictingCache(model, _policy(name, model), B, buffer=b)
    evictions = 0
    with torch.no_grad(), evicting(model, cache):
        for s in range(0, ids.shape[1], chunk):
            grown = cache.stored()[0] + min(chunk, ids.shape[1] - s)
            model(input_ids=ids[:, s:s+chunk], cache=cache, use_cache=True)
            assert cache.stored() == [grown if grown <= B + b else B]*2, (s, grown, cache.stored())
            evictions += grown > B + b
            if name == "streaming_llm" and grown > B + b:   # the sinks and the newest B - 4 positions
                seen = s + min(chunk, ids.shape[1] - s)
                assert cache.layers[1].positions[1, 0].sort().values.tolist() == [0, 1, 2, 3] + list(range(seen - B + 4, seen))
    assert evictions >= 2 and max(cache.held_bytes) <= kv_bytes(model, B + b, batch=2)

def test_layer_storage_guarded_and_reset(model, ids):
    _, c = forward_with_policy(model, ids, H2O(), 8)
    with pytest.raises(AttributeError, match="change only through"): c.layers[0].keys = torch.zeros(1)
    c.reset()
    assert c.stored() == [0, 0] and c.get_seq_length() == 0 and c.layers[0].keys is None and c.held == 0 and c.arena is None
    with torch.no_grad(), evicting(model, c): model(input_ids=ids[:, :12], cache=c, use_cache=True)   # reusable after reset
    assert c.stored() == [8, 8] and c.get_seq_length() == 12

def test_full_is_plain_cache_bit_for_bit(model, ids):
    full, _ = forward_with_policy(model, ids, Full(), None, chunk=4)
    dc, outs = DynamicCache(), []
    with torch.no_grad():
        for s in range(0, ids.shape[1], 4): outs.append(model(input_ids=ids[:, s:s+4], cache=dc, use_cache=True).logits)
    assert torch.equal(full, torch.cat(outs, 1))
    g_full, _ = generate_with_policy(model, ids[:1], Full(), None, max_new_tokens=6)
    with torch.no_grad(): g_ref = model.generate(input_ids=ids[:1], attention_mask=torch.ones_like(ids[:1]), max_new_tokens=6, do_sample=False)
    assert torch.equal(g_full[0], g_ref[0, ids.shape[1]:])

@pytest.mark.parametrize("chunk", [1, 4])
def test_a2sf_alpha_one_is_h2o_exactly(model, ids, chunk):
    a, ca = forward_with_policy(model, ids, A2SF(alpha=1.0, n_recent=3), 9, chunk=chunk)
    h, ch = forward_with_policy(model, ids, H2O(n_recent=3), 9, chunk=chunk)
    assert torch.equal(a, h)
    for la, lh in zip(ca.layers, ch.layers):
        assert torch.equal(la.positions, lh.positions) and torch.equal(la.state["acc"], lh.state["acc"])
    _, c9 = forward_with_policy(model, ids, A2SF(alpha=0.5, n_recent=3), 9, chunk=chunk)
    assert not torch.equal(c9.layers[1].state["acc"], ch.layers[1].state["acc"])

def test_a2sf_score_by_hand():
    "Three causal attention rows, α = 0.5: key k scores Σ_q α^(2−q)·row_q[k] (the newest row counts fully)."
    rows = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.4, 0.0], [0.2, 0.3, 0.5]])
    class Toy:
        acc = torch.zeros(1, 1, 0)
        def token_state(self, name): return self.acc
    toy, pol = Toy(), A2SF(alpha=0.5)
    for t in range(3):
        toy.acc = torch.cat([toy.acc, torch.zeros(1, 1, 1)], -1)   # a new token's state starts at 0
        pol.observe(toy, rows[None, None, t:t+1, :t+1], None)
    # 0.25·1 + 0.5·0.6 + 0.2, 0.5·0.4 + 0.3, 0.5 — exact in binary floating point up to one rounding each
    torch.testing.assert_close(toy.acc[0, 0], torch.tensor([0.75, 0.5, 0.5]), rtol=0, atol=1e-7)

def test_a2sf_scores_match_the_models_attention():
    """With a budget above the length nothing is evicted, and each token's score is Σ_q α^(T−1−q)·P[q, k] over the
    model's own attention P (eager, averaged over the query heads of each KV head), computed here independently."""
    m = tiny_lm(n_layer=2, d_model=64, n_head=4, n_kv_head=2, max_len=256, seed=3).double().eval()
    x = torch.randint(4, 260, (1, 12), generator=torch.Generator().manual_seed(2))
    alpha, T = 0.8, x.shape[1]
    _, c = forward_with_policy(m, x, A2SF(alpha=alpha), 100, chunk=1)
    impl = m.config._attn_implementation
    m.config._attn_implementation = "eager"
    try:
        with torch.no_grad(): att = m(x, output_attentions=True).attentions
    finally: m.config._attn_implementation = impl
    w = alpha ** torch.arange(T - 1, -1, -1, dtype=torch.float64)   # α^(T−1−q) for queries q = 0..T−1
    for layer, P in zip(c.layers, att):
        P = P.view(1, 2, 2, T, T).mean(2)                              # (b, kv_heads, q, k)
        want = torch.einsum("q,bhqk->bhk", w, P)
        # the cache scores in float32 (its attention and its state): float32 rounding of sums of 12 terms
        torch.testing.assert_close(layer.state["acc"].double(), want, rtol=1e-5, atol=1e-6)
        wrong = torch.einsum("k,bhqk->bhk", w, P)                      # α counted from the key instead of the query
        assert not torch.allclose(layer.state["acc"].double(), wrong, rtol=1e-3, atol=1e-4)

def test_trimkv_decayed_attention_is_the_papers_form():
    """One head, three tokens, d = 1, β = 0.5: the last query's logits (3, 3, 6) are multiplied by β^(t−i) = (0.25, 0.5, 1)
    (official eager attention), not shifted by (t−i)·log β (an earlier version here)."""
    stub = type("Attn", (), {"scaling": 1.0})()
    q, k, v = (torch.tensor(a, dtype=torch.float64).view(1, 1, 3, 1) for a in ([1., 2, 3], [1., 1, 2], [1., 10, 100]))
    out, _ = decayed_attention(stub, q, k, v, torch.full((1, 1, 3), math.log(0.5), dtype=torch.float64))
    def mean_under_softmax(logits, values):
        w = [math.exp(z) for z in logits]; return sum(a*b for a, b in zip(w, values))/sum(w)
    paper = mean_under_softmax([0.75, 1.5, 6.0], [1, 10, 100])
    additive = mean_under_softmax([3 + 2*math.log(0.5), 3 + math.log(0.5), 6.0], [1, 10, 100])
    assert abs(paper - additive) > 1e-3
    assert out[0, 2, 0, 0].item() == pytest.approx(paper, rel=1e-12)   # float64 throughout: rounding only
    assert out[0, 1, 0, 0].item() == pytest.approx(mean_under_softmax([1.0, 2.0], [1, 10]), rel=1e-12)

def test_trimkv_score_and_window(model, ids):
    "Eviction score (t + 1 − i)·log β_i (the official cache); the newest `n_recent` tokens are never evicted."
    g = RetentionGates(model, seed=0)
    with torch.no_grad():
        for gate in g.gates: gate[2].bias.fill_(-3.0)   # small β for every token: without the window, old tokens would stay as long
    cache = EvictingCache(model, TrimKV(gates=g, n_recent=4), 8)
    with torch.no_grad(), evicting(model, cache):
        for s in range(ids.shape[1]):
            model(input_ids=ids[:, s:s+1], cache=cache, use_cache=True)
            for l in cache.layers:
                for row in l.positions.reshape(-1, l.n): assert set(range(max(0, s - 3), s + 1)) <= set(row.tolist())
    l = cache.layers[0]
    lb = l.token_state("logbeta")
    torch.testing.assert_close(TrimKV(gates=g).score(l, None), (l.seen + 1 - l.positions).float()*lb)

def test_generate_evicts_during_decoding(model, ids):
    g, c = generate_with_policy(model, ids[:1], StreamingLLM(n_sink=2), 8, max_new_tokens=5, prefill_chunk=4, record=True)
    assert g.shape == (1, 5) and c.stored() == [8, 8]
    assert c.layers[0].positions[0, 0].sort().values.tolist() == [0, 1] + list(range(ids.shape[1] + 4 - 6, ids.shape[1] + 4))
    assert max(c.held_bytes) == kv_bytes(model, 8)   # the budget held at every step, prompt included

def test_memory_stats(model, ids):
    _, c = forward_with_policy(model, ids, H2O(), 12, chunk=1)
    m = memory_stats(c)
    assert m["held_peak"] == kv_bytes(model, 12, batch=2) and m["held_mean"] <= m["held_peak"] <= m["peak_in_step"]

@pytest.mark.parametrize("T", [16, 40])
def test_memory_set_by_budget_not_length(model, ids, T):
    "An evicting cache holds B tokens per layer and head whatever the length; the full cache holds all T."
    _, ce = forward_with_policy(model, ids[:, :T], H2O(n_recent=3), 12)
    _, cf = forward_with_policy(model, ids[:, :T], Full(), None)
    assert memory_stats(ce)["held_peak"] == kv_bytes(model, 12, batch=2)
    assert memory_stats(cf)["held_peak"] == kv_bytes(model, T, batch=2)

def test_bad_input(model, ids):
    for bad in (0, -3, 2.5, None):
        with pytest.raises(ValueError, match="budget must be a positive integer"): EvictingCache(model, H2O(), bad)
    with pytest.raises(ValueError, match="n_sink"): EvictingCache(model, StreamingLLM(n_sink=4), 3)
    for a in (0, 1.01, -1, float("nan")):
        with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\]"): A2SF(alpha=a)
    with pytest.raises(ValueError, match="unsupported model architecture 'gpt2'"): EvictingCache(tiny_lm("gpt2"), H2O(), 8)
    with pytest.raises(ValueError, match="unsupported model architecture 'gpt2'"): generate_with_policy(tiny_lm("gpt2"), ids, H2O(), 8)
    with pytest.raises(ValueError, match="policy must be one of"): make_policy("lru")
    with pytest.raises(ValueError, match="gates must be"): TrimKV()

@pytest.mark.parametrize("shape", [(1, 0), (0, 5), (5,)])
def test_empty_sequence_one_clear_error(model, shape):
    empty = torch.zeros(shape, dtype=torch.long)
    with pytest.raises(ValueError, match=r"input_ids must be a \(batch, T\) tensor with at least one sequence and one token"):
        forward_with_policy(model, empty, H2O(), 8)

def test_model_restored_after_block(model, ids):
    impl = model.config._attn_implementation
    with pytest.raises(RuntimeError, match="boom"):
        with evicting(model, EvictingCache(model, H2O(), 8)): raise RuntimeError("boom")
    assert model.config._attn_implementation == impl
    assert not any(hasattr(l.self_attn, "_kv_cache") for l in model.model.layers)

@pytest.mark.parametrize("preset", ["smoke", "gpu"])
def test_preset_params_validate(preset):
    assert preset in list_presets("kvcache")
    check_params(resolve_params("kvcache", preset))

@pytest.mark.parametrize("key,bad,msg", [("budgets", [], "parameter 'budgets': got []"), ("budgets", [0, 6], "parameter 'budgets'"),
                                         ("alphas", [0.0], "parameter 'alphas'"), ("gate_steps", -5, "parameter 'gate_steps': got -5"),
                                         ("train_lr", float("inf"), "parameter 'train_lr': got inf"),
                                         ("lm_policies", ["h2o", "h2o"], "without repeats"), ("alpha_claim", 0.7, "one of alphas")])
def test_bad_params_named(key, bad, msg):
    p = resolve_params("kvcache", "smoke")
    with pytest.raises(ParamError, match=msg.replace("[", r"\[").replace("]", r"\]")): check_params({**p, key: bad})
    with pytest.raises(ParamError, match="parameter 'n_steps'"): check_params({**p, "n_steps": 3})   # unknown names are refused

def test_runner_finds_the_check():
    assert paper_module("kvcache").__name__ == "unlearnkit.kvrecall"

# --- the smoke run ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke(repro_result):
    return repro_result("kvcache")

def test_metrics_and_files(smoke):
    m, out = smoke
    assert {"full_cache_accuracy", "recall_accuracy", "accuracy_by_depth", "lm_agreement", "kv_memory"} <= set(m["metrics"])
    for f in ("recall_accuracy_vs_budget.png", "kept_positions.png", "kv_memory.png", "recall_accuracy.csv", "items.csv", "lm_items.csv"):
        assert (out/f).exists(), f
    assert_claims_all_tested(m, CLAIM_IDS)

def test_claims_recomputed_from_items(smoke):
    "The claims in metrics.json are what kvcache_claims gives on the run's own per-item files."
    m, out = smoke
    p = m["params"]
    items, lm = pd.read_csv(out/"items.csv"), pd.read_csv(out/"lm_items.csv")
    again = kvcache_claims(items, lm, p["alpha_claim"], departs=kvcache_departs(p), seed=m["provenance"]["seed"])
    assert [c["id"] for c in again] == [c["id"] for c in m["claims"]]
    for a, b in zip(again, m["claims"]):
        assert a["held"] == b["held"] and a["run"]["n"] == b["run"]["n"] and a["departs"] == b["departs"], a["id"]
        for k in ("effect", "p"):
            if k in b["run"]: assert a["run"][k] == pytest.approx(b["run"][k], rel=1e-9), (a["id"], k)   # same data, same seed

def test_items_are_complete(smoke):
    m, out = smoke
    p = m["params"]
    items = pd.read_csv(out/"items.csv")
    n_pol = 6 + len(p["alphas"])   # random, streaming_llm, h2o, tova, knorm, trimkv + one A2SF per alpha
    assert len(items) == (n_pol*len(p["budgets"]) + 1)*p["n_eval"]*p["n_queries"]
    assert set(items.correct.unique()) <= {0, 1}
    acc = m["metrics"]["recall_accuracy"]
    for (pol, B), g in items.groupby(["policy", "budget"]):   # the aggregate is the mean of the items
        assert acc[f"{pol}@{B}"] == pytest.approx(g.correct.mean(), abs=1e-12)
    assert m["metrics"]["full_cache_accuracy"] > 2/p["n_keys"], "the recall model must beat chance with the full cache"

def test_recall_data_same_in_every_process():
    "The recall task's data depends on the seed only, not on the order a tokenizer's vocabulary dict comes in (it changes per process)."
    import subprocess, sys
    code = ("from unlearnkit.kvrecall import recall_batch, recall_vocab; from unlearnkit.models import word_tokenizer; "
            "X, Y, D = recall_batch(word_tokenizer(recall_vocab(16, 16, 8)), 8, n_pairs=4, ctx_len=32, n_queries=4, seed=3); "
            "print(X.tolist(), Y.tolist())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in range(3)}
    assert len(outs) == 1, "recall_batch gave different data in different processes"
