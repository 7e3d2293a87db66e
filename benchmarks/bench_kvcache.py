"""Benchmark of `unlearnkit.kvcache` on CPU with SmolLM2-135M.

1. Per-token decode cost of every eviction policy at budget B (default 256) vs the ordinary full cache, and the
   peak KV memory each holds.
2. Peer comparison with NVIDIA kvpress: where a kvpress press implements the same rule as one of our policies
   (StreamingLLM, Knorm, TOVA, ObservedAttention ~ H2O), both compress the same prompt to the same budget at
   prefill and then decode greedily; we compare the generated tokens and the wall time. kvpress pins
   transformers < 5.3, so it runs in its own virtual environment (benchmarks/.venv-kvpress, git-ignored), which
   this script creates on first use: `python -m venv benchmarks/.venv-kvpress` and
   `pip install kvpress 'transformers<5.3' torch==2.13.0`.

Usage: python benchmarks/bench_kvcache.py [--budget 256] [--prompt-tokens 512] [--new-tokens 64] [--buffers "0 16"] [--reps 5]
       [--threads 2] [--policies "h2o a2sf"] [--skip-kvpress]
Writes benchmarks/out/kvcache.json and prints Markdown tables. Default run: a few minutes on 2 CPU cores.
"""
from __future__ import annotations
import argparse, contextlib, json, os, statistics, subprocess, sys, textwrap, time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
VENV = HERE/".venv-kvpress"

KVPRESS_SIDE = textwrap.dedent('''
    import json, sys, time, torch
    from transformers import AutoModelForCausalLM, DynamicCache
    import kvpress, transformers
    from kvpress import StreamingLLMPress, KnormPress, TOVAPress, ObservedAttentionPress
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(cfg["threads"])
    from importlib.metadata import version
    out = dict(kvpress=version("kvpress"), transformers=transformers.__version__, runs={})
    ids = torch.tensor([cfg["prompt"]])
    T, N, B = ids.shape[1], cfg["new_tokens"], cfg["budget"]
    ratio = 1 - B / T
    for name, impl in [("streaming_llm", "sdpa"), ("knorm", "sdpa"), ("tova", "sdpa"), ("observed_attention", "eager")]:
        model = AutoModelForCausalLM.from_pretrained(cfg["model_path"], dtype=torch.float32, attn_implementation=impl).eval()
        press = dict(streaming_llm=StreamingLLMPress(compression_ratio=ratio, n_sink=4), knorm=KnormPress(compression_ratio=ratio),
                     tova=TOVAPress(compression_ratio=ratio), observed_attention=ObservedAttentionPress(compression_ratio=ratio))[name]
        cache = DynamicCache()
        t0 = time.perf_counter()
        with torch.no_grad():
            with press(model):
                logits = model(input_ids=ids, past_key_values=cache, output_attentions=(impl == "eager")).logits
            t1 = time.perf_counter()
            gen = [int(logits[0, -1].argmax())]
            kept = cache.layers[0].keys.shape[-2]
            for i in range(N - 1):
                lg = model(input_ids=torch.tensor([[gen[-1]]]), past_key_values=cache, position_ids=torch.tensor([[T + i]])).logits
                gen.append(int(lg[0, -1].argmax()))
        t2 = time.perf_counter()
        out["runs"][name] = dict(generated=gen, prefill_s=t1 - t0, decode_s_per_token=(t2 - t1) / max(N - 1, 1), kept_after_prefill=kept)
    print("KVPRESS_JSON" + json.dumps(out))
''')


def ensure_kvpress_venv(log):
    "Create the kvpress environment if needed; return its python or None with the reason logged."
    py = VENV/"bin"/"python"
    if py.exists() and subprocess.run([str(py), "-c", "import kvpress"], capture_output=True).returncode == 0: return py
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", "kvpress", "transformers<5.3", "torch==2.13.0"], capture_output=True, text=True)
        if r.returncode != 0:
            log["kvpress_error"] = "pip install kvpress 'transformers<5.3' torch==2.13.0 failed: " + r.stderr.strip()[-800:]
            return None
    except Exception as e:
        log["kvpress_error"] = f"could not create {VENV}: {e}"
        return None
    return py


def decode_timing(model, ids, policy, budget, n_new, KV, buffer=0):
    """Prefill, then time greedy decoding token by token under `policy` (None = plain DynamicCache, no hook).
    Returns (wall, CPU) seconds of every decoding step, the memory statistics and the generated ids."""
    from transformers import DynamicCache
    cache = DynamicCache() if policy is None else KV.EvictingCache(model, policy, budget, buffer=buffer)
    ctx = contextlib.nullcontext() if policy is None else KV.evicting(model, cache)
    with torch.no_grad(), ctx:
        lg = model(input_ids=ids, cache=cache, use_cache=True).logits
        nxt, gen, times = lg[:, -1:].argmax(-1), [], []
        for _ in range(n_new):
            t0, c0 = time.perf_counter(), time.process_time()
            lg = model(input_ids=nxt, cache=cache, use_cache=True).logits; nxt = lg[:, -1:].argmax(-1)
            times.append((time.perf_counter() - t0, time.process_time() - c0)); gen.append(int(nxt))
    mem = dict(held_peak=KV.kv_bytes(model, ids.shape[1] + n_new)) if policy is None else KV.memory_stats(cache)
    return times, mem, gen


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=256)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5, help="timing repetitions, interleaved over policies (the median over repetitions of the mean decoding step is reported)")
    ap.add_argument("--buffers", default="0 16", help="eviction buffers to time (0 = evict every step, the strict budget; "
                    "b > 0 = evict down to B once B + b tokens are held, as TRIM-KV's code does)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--policies", default="", help="time only these policies (names as in the table's first words, e.g. 'h2o a2sf'); "
                    "the plain DynamicCache always runs")
    ap.add_argument("--skip-kvpress", action="store_true", help="only the decode-overhead part")
    ap.add_argument("--skip-decode", action="store_true", help="only the kvpress comparison")
    ap.add_argument("--out", default=str(HERE/"out"/"kvcache.json"))
    a = ap.parse_args(argv)
    if a.budget < 8 or a.prompt_tokens <= a.budget or a.new_tokens < 2:
        ap.error("need --budget >= 8, --prompt-tokens > --budget, --new-tokens >= 2")
    if a.skip_kvpress and a.skip_decode: ap.error("--skip-kvpress and --skip-decode together leave nothing to run")
    torch.set_num_threads(a.threads)
    import unlearnkit.kvcache as KV
    try: import unlearnkit.trimkv as TK
    except ModuleNotFoundError: TK = KV   # before the split, TRIM-KV lived in unlearnkit.kvcache
    from unlearnkit.models import load_lm, _smollm2_cached
    from unlearnkit.data import load_play
    model, tok = load_lm("smollm2-135m")
    text = load_play("hamlet").text
    prompt = tok(text, add_special_tokens=False)["input_ids"][5000:5000 + a.prompt_tokens]
    ids = torch.tensor([prompt])
    B, N = a.budget, a.new_tokens
    res = dict(device="cpu", threads=a.threads, budget=B, prompt_tokens=a.prompt_tokens, new_tokens=N, cpus=os.cpu_count(),
               loadavg_start=os.getloadavg(), torch=torch.__version__, transformers=__import__("transformers").__version__,
               unlearnkit=str(Path(KV.__file__).parent))

    # 1. decode overhead and memory
    pols = {"full (plain DynamicCache)": None, "full (under the eviction hook)": KV.Full(),
            "streaming_llm": KV.StreamingLLM(n_sink=4), "h2o": KV.H2O(n_recent=B//2), "a2sf (α=0.9)": KV.A2SF(alpha=0.9, n_recent=B//2),
            "tova": KV.TOVA(), "knorm": KV.Knorm(), "random": KV.Random(), "trimkv (untrained gates)": TK.TrimKV(gates=TK.RetentionGates(model, hidden=512))}
    if a.policies:
        keep = a.policies.split()
        pols = {k: v for k, v in pols.items() if v is None or k.split()[0] in keep}
    buffers = [int(b) for b in a.buffers.split()]
    runs = [(name, pol, 0) for name, pol in pols.items()]
    runs += [(name, pol, b) for b in buffers if b for name, pol in pols.items() if pol is not None and pol.evicts]
    means, cpus, mems = {}, {}, {}
    for rep in ([] if a.skip_decode else range(a.reps)):   # interleaved, so slow phases of the machine hit every policy
        for name, pol, buf in runs:
            t, mem, _ = decode_timing(model, ids, pol, B, N, KV, buffer=buf)
            means.setdefault((name, buf), []).append(sum(w for w, _ in t)/len(t)); mems[name, buf] = mem
            cpus.setdefault((name, buf), []).append(sum(c for _, c in t)/len(t))
        print(f"rep {rep + 1}/{a.reps} done", flush=True)
    # per repetition the mean step (so a buffered policy's periodic evictions count in full), then the median over
    # repetitions: robust to a repetition hit by a burst of other load, which a mean or a minimum is not
    # CPU time (process_time, all threads) is immune to the host taking the CPU away (steal), which wall time is not;
    # with --threads 1 it is the cleanest measure of the work each policy adds
    rows = [dict(policy=name, buffer=buf, ms_per_token=1000*statistics.median(means[name, buf]), ms_per_token_reps=[1000*m for m in means[name, buf]],
                 cpu_ms_per_token=1000*statistics.median(cpus[name, buf]), **mems[name, buf]) for name, _, buf in runs if (name, buf) in means]
    for r in rows:
        r["overhead_vs_full"] = r["ms_per_token"]/rows[0]["ms_per_token"] - 1
        r["cpu_overhead_vs_full"] = r["cpu_ms_per_token"]/rows[0]["cpu_ms_per_token"] - 1
    res["decode"] = rows
    res["loadavg_end"] = os.getloadavg()

    # 2. kvpress comparison
    if not a.skip_kvpress:
        log = {}
        py = ensure_kvpress_venv(log)
        if py is None:
            res["kvpress"] = log; print("kvpress unavailable:", log["kvpress_error"])
        else:
            cfg = dict(model_path=str(_smollm2_cached()), prompt=prompt, new_tokens=N, budget=B, threads=a.threads)
            r = subprocess.run([str(py), "-c", KVPRESS_SIDE, json.dumps(cfg)], capture_output=True, text=True)
            line = [l for l in r.stdout.splitlines() if l.startswith("KVPRESS_JSON")]
            if r.returncode != 0 or not line:
                res["kvpress"] = dict(kvpress_error="the kvpress run failed: " + r.stderr.strip()[-1500:])
                print(res["kvpress"]["kvpress_error"])
            else:
                kp = json.loads(line[0][len("KVPRESS_JSON"):])
                ours = {"streaming_llm": KV.StreamingLLM(n_sink=4), "knorm": KV.Knorm(), "tova": KV.TOVA(), "observed_attention": KV.H2O()}
                comp = []
                for name, pol in ours.items():
                    t0 = time.perf_counter()
                    # kvpress semantics: compress the prompt once to B, then decode without eviction (buffer = N)
                    g, cache = KV.generate_with_policy(model, ids, pol, B, max_new_tokens=N, buffer=N, min_new_tokens=N)
                    t = time.perf_counter() - t0
                    mine, theirs = g[0].tolist(), kp["runs"][name]["generated"]
                    same = sum(x == y for x, y in zip(mine, theirs))
                    first_div = next((i for i, (x, y) in enumerate(zip(mine, theirs)) if x != y), None)
                    comp.append(dict(rule=name, ours_policy=type(pol).__name__, tokens_identical=same, of=N, first_divergence=first_div,
                                     ours_wall_s=t, kvpress_wall_s=kp["runs"][name]["prefill_s"] + kp["runs"][name]["decode_s_per_token"]*(N - 1),
                                     kvpress_kept_after_prefill=kp["runs"][name]["kept_after_prefill"]))
                    print(f"{name:20s} identical tokens {same}/{N}  ours {t:.2f} s  kvpress {comp[-1]['kvpress_wall_s']:.2f} s", flush=True)
                res["kvpress"] = dict(version=kp["kvpress"], transformers=kp["transformers"], comparison=comp)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"\nwrote {a.out}; load average {res['loadavg_start']} at the start, {res.get('loadavg_end')} at the end of the decode part")
    print("\n| policy | buffer | wall ms/token | vs full | CPU ms/token | vs full | held peak (MiB) |\n|---|---|---|---|---|---|---|")
    for r in rows: print(f"| {r['policy']} | {r['buffer']} | {r['ms_per_token']:.1f} | {100*r['overhead_vs_full']:+.0f}% "
                         f"| {r['cpu_ms_per_token']:.1f} | {100*r['cpu_overhead_vs_full']:+.0f}% | {r['held_peak']/2**20:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
