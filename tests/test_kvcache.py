"""kvcache (A2SF, TRIM-KV and heuristics): policy invariants on every registered policy, bad input, the presets'
parameters, and the smoke run's metrics and claims."""
import copy, math
import pytest
from conftest import assert_claims_all_tested
import torch
from unlearnkit.models import tiny_lm
from unlearnkit.repro import resolve_params, list_presets
from unlearnkit.kvcache import (POLICIES, make_policy, EvictingCache, evicting, forward_with_policy, generate_with_policy,
                                RetentionGates, Full, H2O, A2SF, StreamingLLM, TrimKV, kv_bytes, memory_stats,
                                check_kvcache_params)
from transformers import DynamicCache

CLAIM_IDS = {"a2sf_beats_h2o", "a2sf_beats_h2o_lm", "trimkv_best_small_budget", "streaming_loses_middle", "memory_scales_with_budget"}

@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
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
    assert c.stored() == [0, 0] and c.get_seq_length() == 0 and c.layers[0].keys is None and c.held == 0
    with torch.no_grad(), evicting(model, c): model(input_ids=ids[:, :12], cache=c, use_cache=True)   # reusable after reset
    assert c.stored() == [8, 8] and c.get_seq_length() == 12

def test_full_is_plain_cache_bit_for_bit(model, ids):
    full, _ = forward_with_policy(model, ids, Full(), None, chunk=4)
    dc, outs = DynamicCache(), []
    with torch.no_grad():
        for s in range(0, ids.shape[1], 4): outs.append(model(input_ids=ids[:, s:s+4], cache=dc, use_cache=True).logits)
    assert torch.equal(full, torch.cat(outs, 1))   # exact: the same keys and values through the same kernels on the same shapes
    g_full, _ = generate_with_policy(model, ids[:1], Full(), None, max_new_tokens=6)
    with torch.no_grad(): g_ref = model.generate(input_ids=ids[:1], attention_mask=torch.ones_like(ids[:1]), max_new_tokens=6, do_sample=False)
    assert torch.equal(g_full[0], g_ref[0, ids.shape[1]:])   # the same logits bit for bit, so the same greedy tokens

@pytest.mark.parametrize("chunk", [1, 4])
def test_a2sf_alpha_one_is_h2o_exactly(model, ids, chunk):
    a, ca = forward_with_policy(model, ids, A2SF(alpha=1.0, n_recent=3), 9, chunk=chunk)
    h, ch = forward_with_policy(model, ids, H2O(n_recent=3), 9, chunk=chunk)
    assert torch.equal(a, h)   # exact: 1.0·s + row rounds exactly like s + row, so the same tokens are kept
    for la, lh in zip(ca.layers, ch.layers):
        assert torch.equal(la.positions, lh.positions) and torch.equal(la.state["acc"], lh.state["acc"])
    _, c9 = forward_with_policy(model, ids, A2SF(alpha=0.5, n_recent=3), 9, chunk=chunk)
    assert not torch.equal(c9.layers[1].state["acc"], ch.layers[1].state["acc"])

def test_a2sf_scores_are_discounted_sums(model, ids):
    "With a budget above the length nothing is evicted and the score is Σ_q α^(T-1-q) attn[q]."
    from unlearnkit.kvcache import attention_probs
    alpha, T, m = 0.8, 12, copy.deepcopy(model).double()   # float64: the test is about the discounting, not float32 rounding
    _, c = forward_with_policy(m, ids[:1, :T], A2SF(alpha=alpha), 100, chunk=T)
    _, c1 = forward_with_policy(m, ids[:1, :T], A2SF(alpha=alpha), 100, chunk=1)
    for l, l1 in zip(c.layers, c1.layers):   # sums of ≤ 12 discounted probabilities ≤ 0.7: ~1e-16 apart; a wrong power of α moves them by > 1e-3
        torch.testing.assert_close(l.state["acc"], l1.state["acc"], atol=1e-12, rtol=0)

def test_generate_evicts_during_decoding(model, ids):
    g, c = generate_with_policy(model, ids[:1], StreamingLLM(n_sink=2), 8, max_new_tokens=5, prefill_chunk=4, record=True)
    assert g.shape == (1, 5) and c.stored() == [8, 8]
    assert c.layers[0].positions[0, 0].sort().values.tolist() == [0, 1] + list(range(ids.shape[1] + 4 - 6, ids.shape[1] + 4))
    assert max(c.held_bytes) == kv_bytes(model, 8)   # the budget held at every step, prompt included

def test_memory_stats(model, ids):
    _, c = forward_with_policy(model, ids, H2O(), 12, chunk=1)
    m = memory_stats(c)
    assert m["held_peak"] == kv_bytes(model, 12, batch=2) and m["held_mean"] <= m["held_peak"] <= m["peak_in_step"]

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

def test_model_restored_after_block(model, ids):
    impl = model.config._attn_implementation
    with pytest.raises(RuntimeError):
        with evicting(model, EvictingCache(model, H2O(), 8)): raise RuntimeError("boom")
    assert model.config._attn_implementation == impl
    assert not any(hasattr(l.self_attn, "_kv_cache") for l in model.model.layers)

@pytest.mark.parametrize("preset", ["smoke", "gpu"])
def test_preset_params_validate(preset):
    assert preset in list_presets("kvcache")
    check_kvcache_params(resolve_params("kvcache", preset))

def test_bad_params_named():
    p = resolve_params("kvcache", "smoke")
    with pytest.raises(ValueError, match="budgets"): check_kvcache_params({**p, "budgets": []})
    with pytest.raises(ValueError, match="alpha"): check_kvcache_params({**p, "alphas": [0.0]})

# --- the smoke run ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke(repro_result):
    return repro_result("kvcache")

def test_metrics_schema(smoke):
    m, out = smoke
    assert m["name"] == "kvcache" and m["preset"] == "smoke"
    assert {"full_cache_accuracy", "recall_accuracy", "accuracy_by_depth", "lm_agreement", "kv_memory"} <= set(m["metrics"])
    for f in ("recall_accuracy_vs_budget.png", "kept_positions.png", "kv_memory.png", "recall_accuracy.csv"):
        assert (out/f).exists(), f

def test_claims_table(smoke):
    m, _ = smoke
    assert_claims_all_tested(m, CLAIM_IDS)

def test_numbers_are_sane(smoke):
    m, _ = smoke
    mm, p = m["metrics"], m["params"]
    acc = mm["recall_accuracy"]
    assert all(0 <= v <= 1 for v in acc.values())
    assert mm["full_cache_accuracy"] > 2/p["n_keys"], "the recall model must beat chance with the full cache"
    for B in p["budgets"]:   # every policy ran at every budget
        for name in ("random", "streaming_llm", "h2o", "tova", "knorm", "trimkv"): assert f"{name}@{B}" in acc
    for r in mm["lm_agreement"]:
        assert 0 <= r["top1"] <= 1 and math.isfinite(r["nll"])
    ev = [r for r in mm["kv_memory"] if r["policy"] == "h2o"]
    assert len({r["held_peak"] for r in ev}) == 1

def test_held_matches_numbers(smoke):
    m, _ = smoke
    c = {x["id"]: x for x in m["claims"]}
    r = c["a2sf_beats_h2o"]["run"]
    assert c["a2sf_beats_h2o"]["held"] == (r["mean_diff"] > 0)
    r = c["streaming_loses_middle"]["run"]
    assert c["streaming_loses_middle"]["held"] == (r["streaming_llm"] < r["full"] - 0.2)

def test_recall_data_same_in_every_process():
    "The recall task's data depends on the seed only, not on the order a tokenizer's vocabulary dict comes in (it changes per process)."
    import subprocess, sys
    code = ("from unlearnkit.kvcache import recall_batch, recall_vocab; from unlearnkit.models import word_tokenizer; "
            "X, Y, D = recall_batch(word_tokenizer(recall_vocab(16, 16, 8)), 8, n_pairs=4, ctx_len=32, n_queries=4, seed=3); "
            "print(X.tolist(), Y.tolist())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in range(3)}
    assert len(outs) == 1, "recall_batch gave different data in different processes"
