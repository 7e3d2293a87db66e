"""Run every reproduction's gpu preset on stand-ins, shrunk, and table its wall time and peak GPU memory.

    python benchmarks/gpu_check.py                  # on CUDA (the language models load in bf16 there), within 8 minutes
    python benchmarks/gpu_check.py --device cpu --only knights   # the same code path on the CPU (a dry check)

It builds the stand-ins (`unlearnkit.standins.make_standins`, only those the shrunk presets load) unless
`--standins` names a folder that has them, then runs `unlearnkit-repro run NAME --preset gpu --device DEVICE` with
`$UNLEARNKIT_STANDINS` set, the hub switched off and `STANDIN_OVERRIDES[NAME]`, one reproduction after another,
and writes `gpu_check.json` and `gpu_check.md` into `--out`: per reproduction its status, wall time, CPU time (the
runner and its kernel) and the peak GPU memory the run recorded in its provenance (`torch.cuda.max_memory_allocated`,
read in the kernel by `Run.finish`; empty on CPU). Reproductions that would start after `--budget` seconds are
skipped and say so. Exit status 1 when any run failed.
"""
import argparse, json, os, platform, resource, subprocess, sys, tempfile, time
from pathlib import Path

NAMES = ["sort", "fewshot", "knights", "passn", "kvcache", "unlearning", "sfd"]


def build_standins(root, names):
    "The stand-ins the shrunk gpu presets of `names` load, in `root`."
    from unlearnkit.standins import make_preset_standins
    return make_preset_standins(root, names)


def run_one(name, device, standins, out):
    "One shrunk gpu preset through the real CLI; returns a row of the table."
    from unlearnkit.standins import standin_args
    env = {**os.environ, "UNLEARNKIT_STANDINS": str(standins), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-c", "import sys; from unlearnkit.repro import main; sys.exit(main())",
           "run", name, "--preset", "gpu", "--device", device, "--out", str(out/name), "--quiet", *standin_args(name)]
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    row = dict(name=name, status="ok" if p.returncode == 0 else "failed", wall_s=round(wall, 1),
               cpu_s=round((r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), 1), peak_gpu_mem_gib=None, device=None, error=None)
    if p.returncode == 0:
        prov = json.loads((out/name/"metrics.json").read_text())["provenance"]
        row.update(peak_gpu_mem_gib=prov.get("peak_gpu_mem_gib"), device=prov.get("device"))
    else: row["error"] = (p.stderr.strip().splitlines() or ["(no message)"])[-1][:300]
    return row


def markdown(rows, device, total):
    lines = [f"# gpu presets on stand-ins ({device}, {platform.node()})", "",
             "| reproduction | status | wall s | CPU s | peak GPU GiB | device |", "|---|---|---:|---:|---:|---|"]
    for r in rows:
        mem = "" if r["peak_gpu_mem_gib"] is None else f"{r['peak_gpu_mem_gib']:.3f}"
        lines.append(f"| {r['name']} | {r['status']}{': ' + r['error'] if r['error'] else ''} | {r['wall_s']} | {r['cpu_s']} | {mem} | {r['device'] or ''} |")
    return "\n".join(lines + ["", f"Total {total:.0f} s, stand-ins included."]) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--only", nargs="+", choices=NAMES, default=NAMES, help="reproductions to run (default: all seven)")
    ap.add_argument("--standins", default=None, help="an existing stand-ins folder (default: build them in a temporary folder)")
    ap.add_argument("--out", default="benchmarks/out/gpu_check", help="where the runs, gpu_check.json and gpu_check.md go")
    ap.add_argument("--budget", type=float, default=480, help="seconds: no reproduction starts after this (default 8 minutes)")
    a = ap.parse_args(argv)
    if a.device == "cuda":
        import torch
        if not torch.cuda.is_available(): ap.error("no CUDA device here: pass --device cpu for a dry check on the CPU")
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    t0, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="unlearnkit-standins-") as tmp:
        standins = Path(a.standins) if a.standins else build_standins(tmp, a.only)
        print(f"stand-ins in {standins} ({time.perf_counter() - t0:.0f} s)", flush=True)
        for n in a.only:
            if time.perf_counter() - t0 > a.budget:
                rows.append(dict(name=n, status=f"skipped: the {a.budget:.0f} s budget was spent", wall_s=0, cpu_s=0,
                                 peak_gpu_mem_gib=None, device=None, error=None)); continue
            rows.append(run_one(n, a.device, standins, out))
            r = rows[-1]
            print(f"{n:11s} {r['status']:7s} {r['wall_s']:6.1f} s wall {r['cpu_s']:6.1f} s CPU  peak GPU {r['peak_gpu_mem_gib']} GiB"
                  + (f"  {r['error']}" if r["error"] else ""), flush=True)
    total = time.perf_counter() - t0
    (out/"gpu_check.json").write_text(json.dumps(dict(device=a.device, host=platform.node(), total_s=round(total, 1), runs=rows), indent=1))
    (out/"gpu_check.md").write_text(markdown(rows, a.device, total))
    print(markdown(rows, a.device, total))
    return 1 if any(r["status"] == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
