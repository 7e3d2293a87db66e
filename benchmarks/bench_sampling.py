"""Benchmark: sampling N answers per prompt with one shared prefill (unlearnkit.passn.sample_answers) vs N
independent `generate` calls (unlearnkit.evaluate.generate), on the same model, prompt and token budget.

    .venv/bin/python benchmarks/bench_sampling.py                    # SmolLM2-135M, 256 samples, 8 new tokens
    .venv/bin/python benchmarks/bench_sampling.py --model tiny-llama --n 1024 --out results/bench/sampling.json

Three ways to draw the same kind of samples (temperature 1, stop at EOS, at most --max-new-tokens tokens):
  independent : N calls of `generate(..., do_sample=True)`, one sample each (the baseline);
  shared      : `sample_answers(dedup=False)`: one prefill, its KV cache repeated N times, N rows decoded together;
  shared+dedup: `sample_answers(dedup=True)`: as shared, but samples that drew the same prefix so far share one
                row of the cache (exact: each still draws its own next token).
Prints a table and writes the timings and speed-ups as JSON. The independent baseline dominates the run time
(on a busy 2-core machine it took 17 minutes; use --n 64 or --model tiny-llama for a quick look).
"""
import argparse, json, os, platform, sys, time
from pathlib import Path

import torch

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="offline name (smollm2-135m, tiny-llama, tiny-gpt2), hub id or folder")
    ap.add_argument("--n", type=int, default=256, help="samples per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=8, help="tokens per sample (EOS may end one earlier)")
    ap.add_argument("--prompt", default="Question: Name a colour of the rainbow.\nAnswer:", help="the prompt")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default=None, help="cpu, cuda (default: best available)")
    ap.add_argument("--out", default="results/bench/bench_sampling.json", help="where to write the JSON")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.n < 1 or a.max_new_tokens < 1: ap.error("--n and --max-new-tokens must be >= 1")
    torch.set_num_threads(a.threads)
    from unlearnkit.core import device_name, package_versions, write_json_atomic
    from unlearnkit.models import load_lm, n_params
    from unlearnkit.evaluate import generate
    from unlearnkit.passn import sample_answers
    from unlearnkit.train import use_bos

    model, tok = load_lm(a.model, device=a.device)
    dev = next(model.parameters()).device
    # the same tokens generate() feeds the model: BOS by the suite's one rule (train.use_bos), then the prompt
    pids = [([tok.bos_token_id] if use_bos(tok) else []) + tok(a.prompt, add_special_tokens=False)["input_ids"]]
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)

    # warm-up (first calls allocate and compile kernels)
    generate(model, tok, [a.prompt], max_new_tokens=2, do_sample=True, seed=0)
    sample_answers(model, pids, n=4, max_new_tokens=2, eos_id=tok.eos_token_id)

    res = {}
    sync(); t = time.perf_counter()
    texts = [generate(model, tok, [a.prompt], max_new_tokens=a.max_new_tokens, do_sample=True, seed=a.seed + i)[0] for i in range(a.n)]
    sync(); res["independent"] = time.perf_counter() - t
    for name, dedup in (("shared", False), ("shared+dedup", True)):
        sync(); t = time.perf_counter()
        toks, _ = sample_answers(model, pids, n=a.n, max_new_tokens=a.max_new_tokens, eos_id=tok.eos_token_id,
                                 dedup=dedup, seed=a.seed)
        sync(); res[name] = time.perf_counter() - t
    distinct = {"independent": len(set(texts)),
                "shared+dedup": len({tuple(r) for r in toks[0].tolist()})}

    print(f"model {a.model} ({n_params(model)/1e6:.0f}M) on {device_name(dev)}; {a.n} samples of <= {a.max_new_tokens} tokens")
    print(f"{'method':<14}{'seconds':>10}{'samples/s':>12}{'speed-up':>10}")
    for k, v in res.items():
        print(f"{k:<14}{v:>10.2f}{a.n / v:>12.1f}{res['independent'] / v:>9.1f}x")
    print(f"distinct answers: {distinct}")
    doc = dict(benchmark="bench_sampling", model=a.model, n=a.n, max_new_tokens=a.max_new_tokens, prompt=a.prompt,
               threads=a.threads, device=device_name(dev), seconds=res,
               speedup={k: res["independent"] / v for k, v in res.items() if k != "independent"},
               distinct_answers=distinct, versions=package_versions(), python=platform.python_version())
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, doc)
    print(f"wrote {out}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
