"""Shared fixtures: run a reproduction's preset once per test session through the real CLI runner."""
import json, os, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent/"fixtures"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist's workers share the cores: torch in each worker, and in every kernel and CLI run it starts, gets
    # its share of them. Two processes each running two OpenMP threads on two cores were 10x slower here than one
    # thread each; a notebook that asks for more threads anyway waits passively instead of spinning.
    _share = max(1, (os.cpu_count() or 1)//int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share)); os.environ.setdefault("MKL_NUM_THREADS", str(_share))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

def cli(*args, env=None, timeout=3600, cwd=ROOT):
    "Run `unlearnkit-repro ARGS` in a subprocess; returns the CompletedProcess."
    code = "import sys; from unlearnkit.repro import main; sys.exit(main())"
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)

collect_ignore_glob = ["fixtures/*"]   # the demo reproduction is run by test_repro.py through the runner, not by nbval

def shared_dir(tmp_path_factory)->Path:
    """A folder every process of this test run shares: the run's base temp folder under pytest-xdist (workers
    each get a subfolder of it), the session's own base temp folder without it."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def run_once(tmp_path_factory, key:str, make)->dict:
    """`make(folder) -> dict` (JSON-able), run once per test run under a file lock, whichever process asks first;
    the others wait for it and get the same dict. A failure is recorded and re-raised in every process that asks,
    so a broken reproduction fails its tests without running again."""
    from filelock import FileLock
    from unlearnkit.core import write_json_atomic
    root = shared_dir(tmp_path_factory)/"once"; root.mkdir(exist_ok=True)
    done = root/f"{key}.json"
    with FileLock(str(root/f"{key}.lock")):
        if not done.exists():
            try: info = make(root/key)
            except BaseException as e:   # pytest.fail raises an exception derived from BaseException
                info = {"error": str(e) or repr(e)}
            write_json_atomic(done, info)
    info = json.loads(done.read_text())
    if "error" in info: pytest.fail(info["error"], pytrace=False)
    return info


_runs = {}

@pytest.fixture(scope="session")
def repro_result(tmp_path_factory):
    """`repro_result(name, preset="smoke")` -> (metrics dict, results folder). Runs the reproduction once per
    test run (once in all, with pytest-xdist's workers) with `unlearnkit-repro run NAME --preset PRESET --out TMP`
    and fails with the notebook's error."""
    def make(name, preset, folder):
        out = folder/"run"
        t0 = time.perf_counter()
        r = cli("run", name, "--preset", preset, "--out", out)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            pytest.fail(f"unlearnkit-repro run {name} --preset {preset} failed ({r.returncode}):\n{r.stderr[-4000:]}")
        print(f"\n{name}/{preset}: {wall:.0f} s")
        keep = os.environ.get("UNLEARNKIT_KEEP_RESULTS")   # e.g. results/ : keep the executed runs for the docs
        if keep:
            import shutil
            dest = Path(keep)/name/preset
            shutil.rmtree(dest, ignore_errors=True); shutil.copytree(out, dest)
        return {"out": str(out), "wall": wall}

    def get(name, preset="smoke"):
        if (name, preset) not in _runs:
            info = run_once(tmp_path_factory, f"{name}-{preset}", lambda folder: make(name, preset, folder))
            out = Path(info["out"])
            _runs[(name, preset)] = (json.loads((out/"metrics.json").read_text()), out)
        return _runs[(name, preset)]
    return get

def assert_claims_all_tested(m, ids):
    "Every expected claim id is in `m` (a metrics.json), and every claim is settled: held true/false, or null with a reason."
    from unlearnkit.claims import check_claims
    assert ids <= {c["id"] for c in m["claims"]}, sorted(ids - {c["id"] for c in m["claims"]})
    check_claims(m["claims"])
    for c in m["claims"]:
        assert c["held"] in (True, False) or c["reason"], c["id"]
