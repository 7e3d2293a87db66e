"""Shared fixtures: run a reproduction's preset once per test session through the real CLI runner."""
import json, os, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent/"fixtures"

def cli(*args, env=None, timeout=3600, cwd=ROOT):
    "Run `unlearnkit-repro ARGS` in a subprocess; returns the CompletedProcess."
    code = "import sys; from unlearnkit.repro import main; sys.exit(main())"
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)

collect_ignore_glob = ["fixtures/*"]   # the demo reproduction is run by test_repro.py through the runner, not by nbval

_runs = {}

@pytest.fixture(scope="session")
def repro_result(tmp_path_factory):
    """`repro_result(name, preset="smoke")` -> (metrics dict, results folder). Runs the reproduction once per
    session with `unlearnkit-repro run NAME --preset PRESET --out TMP` and fails with the notebook's error."""
    def get(name, preset="smoke"):
        if (name, preset) not in _runs:
            out = tmp_path_factory.mktemp(f"{name}-{preset}")/"run"
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
