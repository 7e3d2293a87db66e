"""The numerically sensitive notebooks once more, under other arithmetic: one thread and the generic kernels.

Float32 results depend on the matrix kernels and the thread count. The main run covers the default kernels (AVX2 on
x86) with each pytest-xdist worker's share of the cores (one thread on two cores; up to two with `pytest -n 0`); this
test re-runs the notebooks whose checks compare float32 model outputs with
`OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2`, so a tolerance
that is sized by one machine's rounding rather than by the computation fails here.

Left out, as measured: the other notebooks compare only float64 values, integer results, or float32 values with
at least 50x headroom (`16_unlearn`, `17_audit`), and the reproductions, which the suite runs once already.
"""
import os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["nbs/api/03_train.ipynb", "nbs/api/04_evaluate.ipynb", "nbs/api/10_sort.ipynb", "nbs/api/11_fewshot.ipynb",
             "nbs/api/13_passn.ipynb", "nbs/api/14_kvcache.ipynb", "nbs/tutorials/01_what_does_a_model_remember.ipynb"]
LOW = dict(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", ATEN_CPU_CAPABILITY="default", MKL_ENABLE_INSTRUCTIONS="SSE4_2")

def test_sensitive_notebooks_with_one_thread_and_generic_kernels():
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", "-n", "0", *NOTEBOOKS],
                       cwd=ROOT, env={**os.environ, **LOW}, capture_output=True, text=True, timeout=1200)
    wall = time.perf_counter() - t0
    print(f"{len(NOTEBOOKS)} notebooks with {' '.join(f'{k}={v}' for k, v in LOW.items())}: {wall:.0f} s")
    assert r.returncode == 0, f"failed with {LOW} ({wall:.0f} s):\n{r.stdout[-8000:]}\n{r.stderr[-2000:]}"
