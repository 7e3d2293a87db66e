"""Foundation benchmarks: SmolLM2 load time (GGUF conversion vs cached) and training-loop throughput
(`unlearnkit.train.train` vs `transformers.Trainer`, same model, data, batch, steps and optimizer: our loop with
torch's unfused AdamW against the Trainer's `adamw_torch`, and with the fused AdamW against `adamw_torch_fused`).

    python benchmarks/bench_foundation.py                      # both parts, default sizes
    python benchmarks/bench_foundation.py --skip-load          # throughput only
    python benchmarks/bench_foundation.py --models tiny-llama  # throughput on the tiny model only

Writes benchmarks/out/foundation.json and prints a table. CPU, fp32, at most 2 torch threads.
"""
from __future__ import annotations
import argparse, contextlib, copy, io, json, os, platform, shutil, statistics, sys, tempfile, time, warnings
from pathlib import Path

import torch

OUT = Path(__file__).parent/"out"/"foundation.json"
# per model: batch size, sequence length, measured steps, warm-up steps (excluded from the timing)
SIZES = {"tiny-llama": dict(batch_size=8, seq_len=128, steps=30, warmup=5),
         "smollm2-135m": dict(batch_size=4, seq_len=64, steps=3, warmup=1)}


def machine()->dict:
    "Where the numbers were measured (the load average says how busy the CPUs were)."
    return dict(python=platform.python_version(), torch=torch.__version__,
                transformers=__import__("transformers").__version__, accelerate=__import__("accelerate").__version__,
                cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                torch_threads=torch.get_num_threads(), loadavg_start=list(os.getloadavg()))


# ---------------------------------------------------------------------------------------- load time
def bench_load(repeats:int=3)->dict:
    "First load (GGUF -> safetensors conversion, in a fresh UNLEARNKIT_CACHE) vs cached loads (median)."
    from unlearnkit.models import load_lm
    old = os.environ.get("UNLEARNKIT_CACHE")
    tmp = tempfile.mkdtemp(prefix="unlearnkit-bench-cache-")
    try:
        os.environ["UNLEARNKIT_CACHE"] = tmp
        t = time.perf_counter(); m, tok = load_lm("smollm2-135m", device="cpu"); first = time.perf_counter() - t
        del m, tok
        cached = []
        for _ in range(repeats):
            t = time.perf_counter(); m, tok = load_lm("smollm2-135m", device="cpu"); cached.append(time.perf_counter() - t)
            del m, tok
    finally:
        if old is None: os.environ.pop("UNLEARNKIT_CACHE", None)
        else: os.environ["UNLEARNKIT_CACHE"] = old
        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median(cached)
    return dict(first_s=first, cached_s=cached, cached_median_s=med, speedup=first / med, target=5.0, ok=first / med >= 5.0)


# ---------------------------------------------------------------------------------- training throughput
def make_model(name:str):
    "The model under test and its tokenizer (fp32, CPU)."
    from unlearnkit.models import load_lm
    model, tok = load_lm(name, device="cpu", dtype=torch.float32)
    return model, tok

def make_examples(tok, n:int, seq_len:int)->list[dict]:
    "n fixed-length examples cut from Shakespeare (no padding, so both loops see the same token count)."
    from unlearnkit.data import load_play
    ids = tok(load_play("hamlet").text + "\n" + load_play("king-lear").text, add_special_tokens=False)["input_ids"]
    if len(ids) < n * seq_len: raise ValueError(f"not enough text for {n} examples of {seq_len} tokens")
    return [dict(input_ids=ids[i*seq_len:(i+1)*seq_len], labels=ids[i*seq_len:(i+1)*seq_len],
                 attention_mask=[1]*seq_len) for i in range(n)]

def _clock()->tuple[float, float]: return time.perf_counter(), time.process_time()

def _rate(times:list[tuple], warmup:int, tokens_per_step:int)->dict:
    """Throughput over the steps after the warm-up (times[k] = (wall, CPU) clocks after optimizer step k+1).
    Per wall second, and per CPU second of this process: with one thread the CPU clock hardly counts the time
    other processes take the core, so it is the steadier number on a shared machine."""
    (w0, c0), (w1, c1) = times[warmup - 1], times[-1]
    tok = (len(times) - warmup) * tokens_per_step
    return dict(tokens_per_s=tok / (w1 - w0), tokens_per_cpu_s=tok / (c1 - c0), timed_s=w1 - w0, timed_cpu_s=c1 - c0)

def run_ours(model, examples, cfg, lr, fused:bool=False)->dict:
    "unlearnkit.train.train with a timing callback (called after every optimizer step), unfused or fused AdamW."
    from unlearnkit.train import train
    times = []
    def clock(state):
        if state.step > 0: times.append(_clock())
    res = train(model, examples, lr=lr, max_steps=cfg["warmup"] + cfg["steps"], batch_size=cfg["batch_size"],
                schedule="constant", weight_decay=0.0, clip_grad=1.0, shuffle=True, seed=0, callbacks=[clock], progress=False,
                fused=fused)
    return dict(**_rate(times, cfg["warmup"], cfg["batch_size"] * cfg["seq_len"]),
                first_loss=res.history[0]["loss"], last_loss=res.history[-1]["loss"])

def run_trainer(model, examples, cfg, lr, optim:str="adamw_torch")->dict:
    "transformers.Trainer with the same batch, steps, optimizer (AdamW, constant lr), clipping and fp32 CPU."
    from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator
    times = []
    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw): times.append(_clock())
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=cfg["batch_size"],
                                 max_steps=cfg["warmup"] + cfg["steps"], learning_rate=lr, lr_scheduler_type="constant",
                                 warmup_steps=0, weight_decay=0.0, optim=optim, max_grad_norm=1.0,
                                 gradient_accumulation_steps=1, use_cpu=True, bf16=False, fp16=False, seed=0,
                                 logging_strategy="steps", logging_steps=1, save_strategy="no", eval_strategy="no",
                                 report_to="none", disable_tqdm=True, dataloader_num_workers=0)
        tr = Trainer(model=model, args=args, train_dataset=examples, data_collator=default_data_collator, callbacks=[Clock()])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()): tr.train()  # the Trainer prints its log dicts
        losses = [h["loss"] for h in tr.state.log_history if "loss" in h]
    return dict(**_rate(times, cfg["warmup"], cfg["batch_size"] * cfg["seq_len"]),
                first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None)

PAIRS = {"unfused": ("unlearnkit.train (AdamW, unfused)", "transformers.Trainer (adamw_torch)"),
         "fused": ("unlearnkit.train (AdamW, fused)", "transformers.Trainer (adamw_torch_fused, its default)")}

def bench_train(name:str, repeats:int, lr:float=1e-4)->dict:
    "Interleaved repeats of both loops with both optimizers from the same initial weights; the median tokens/s of each."
    cfg = SIZES[name]
    base, tok = make_model(name)
    examples = make_examples(tok, n=cfg["batch_size"] * (cfg["warmup"] + cfg["steps"]), seq_len=cfg["seq_len"])
    runs = {label: [] for pair in PAIRS.values() for label in pair}
    for r in range(repeats):
        for kind, (ours, theirs) in PAIRS.items():
            for label in (ours, theirs):
                model = copy.deepcopy(base).train()
                if label == ours: res = run_ours(model, examples, cfg, lr, fused=(kind == "fused"))
                else: res = run_trainer(model, examples, cfg, lr, optim="adamw_torch_fused" if kind == "fused" else "adamw_torch")
                runs[label].append(res); del model
                print(f"  {name} repeat {r+1}/{repeats} {label}: {res['tokens_per_s']:.0f} tokens/s, {res['tokens_per_cpu_s']:.0f} tokens/CPU-s "
                      f"(loss {res['first_loss']:.3f} -> {res['last_loss']:.3f})", flush=True)
    med = {k: statistics.median(x["tokens_per_s"] for x in v) for k, v in runs.items()}
    med_cpu = {k: statistics.median(x["tokens_per_cpu_s"] for x in v) for k, v in runs.items()}
    ratios = {kind: dict(wall=med[o] / med[t], cpu=med_cpu[o] / med_cpu[t], ok=med[o] / med[t] >= 1.0) for kind, (o, t) in PAIRS.items()}
    return dict(model=name, n_params=sum(p.numel() for p in base.parameters()), **cfg, lr=lr, repeats=repeats,
                threads=torch.get_num_threads(), runs=runs, median_tokens_per_s=med, median_tokens_per_cpu_s=med_cpu,
                ratios=ratios, target=1.0, ok=all(r["ok"] for r in ratios.values()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(SIZES), choices=list(SIZES), help="models for the throughput benchmark")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each training loop")
    ap.add_argument("--load-repeats", type=int, default=3, help="cached loads (the median is reported)")
    ap.add_argument("--skip-load", action="store_true", help="skip the load-time benchmark")
    ap.add_argument("--skip-train", action="store_true", help="skip the throughput benchmark")
    ap.add_argument("--threads", type=int, default=2, choices=[1, 2], help="torch threads")
    ap.add_argument("--out", default=str(OUT), help="where the JSON goes")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from unlearnkit.core import write_json_atomic
    res = dict(machine=machine(), started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if not a.skip_load:
        print("load time: first load (GGUF conversion in a fresh cache) vs cached ...", flush=True)
        res["load"] = bench_load(a.load_repeats)
    if not a.skip_train:
        res["train"] = {}
        for name in a.models:
            print(f"training throughput on {name} ...", flush=True)
            res["train"][name] = bench_train(name, a.repeats)
    res["machine"]["loadavg_end"] = list(os.getloadavg())
    write_json_atomic(a.out, res)

    print(f"\n{'benchmark':<58}{'value':>14}{'target':>10}  ok")
    if "load" in res:
        L = res["load"]
        print(f"{'SmolLM2 first load (GGUF conversion), s':<58}{L['first_s']:>14.2f}")
        print(f"{'SmolLM2 cached load, median of %d, s' % len(L['cached_s']):<58}{L['cached_median_s']:>14.2f}")
        print(f"{'load speed-up (first / cached)':<58}{L['speedup']:>13.1f}x{'>= 5x':>10}  {'yes' if L['ok'] else 'NO'}")
    for name, T in res.get("train", {}).items():
        shape = f"{name}, batch {T['batch_size']} x {T['seq_len']}, {T['steps']} steps"
        print(f"  {shape}")
        for k, v in T["median_tokens_per_s"].items():
            print(f"{('  ' + k + ' tokens/s (per CPU-s)'):<58}{v:>14.0f}   ({T['median_tokens_per_cpu_s'][k]:.0f})")
        for kind, r in T["ratios"].items():
            print(f"{f'  ratio unlearnkit / Trainer, both {kind}, wall':<58}{r['wall']:>13.2f}x{'>= 1.0':>10}  {'yes' if r['ok'] else 'NO'}")
            print(f"{f'  ratio unlearnkit / Trainer, both {kind}, CPU time':<58}{r['cpu']:>13.2f}x")
    print(f"\nload average {res['machine']['loadavg_start']} -> {res['machine']['loadavg_end']} "
          f"on {res['machine']['cpu_count']} CPUs (a busy machine inflates and scatters the timings)")
    print(f"wrote {a.out}")
    return res

if __name__ == "__main__":
    main()
