"""The runner and the `unlearnkit-repro` command line, on a small demo reproduction (tests/fixtures)."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import cli, FIXTURES, ROOT
from unlearnkit.repro import check_metrics, METRICS_KEYS, notebook_params

DEMO = dict(UNLEARNKIT_REPRODUCTIONS=str(FIXTURES/"reproductions"), UNLEARNKIT_SETTINGS=str(FIXTURES/"settings.ini"))

def one_line_error(r):
    assert r.returncode != 0
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]

def test_list():
    r = cli("list", env=DEMO)
    assert r.returncode == 0 and "demo" in r.stdout and "gpu" in r.stdout

@pytest.mark.parametrize("args,needle", [
    (["run", "nosuch"], "unknown reproduction 'nosuch'; choose from: demo"),
    (["run", "demo", "--preset", "nosuch"], "unknown preset 'nosuch' for demo; choose from: smoke, gpu"),
    (["run", "demo", "-p", "nosuchparam", "1"], "unknown parameter 'nosuchparam'"),
    (["run", "demo", "-p", "steps", "abc"], "parameter 'steps' must be int"),
    (["run", "demo", "-p", "fail", "maybe"], "must be a bool"),
    (["run"], "give a reproduction name or --all"),
])
def test_bad_input(tmp_path, args, needle):
    out = tmp_path/"out"
    r = cli(*args, "--out", out, env=DEMO)
    assert needle in one_line_error(r)
    assert not out.exists(), "bad input must not create a results folder"

def test_bad_input_real_reproductions(tmp_path):
    r = cli("run", "nosuch", "--out", tmp_path/"x")
    assert "unknown reproduction" in one_line_error(r) and not (tmp_path/"x").exists()

def test_run_writes_schema_and_executed_notebook(tmp_path):
    out = tmp_path/"demo"
    r = cli("run", "demo", "--out", out, "-p", "steps", "5", env=DEMO)
    assert r.returncode == 0, r.stderr
    m = check_metrics(json.loads((out/"metrics.json").read_text()), "demo", "smoke")
    assert tuple(m) == METRICS_KEYS
    assert m["params"]["steps"] == 5 and m["metrics"]["total"] == 10
    assert m["claims"][0]["held"] is True and m["claims"][1]["held"] is None
    assert (out/"demo.ipynb").exists() and m["provenance"]["wall_s"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder left behind"

def test_preset_from_settings(tmp_path):
    r = cli("run", "demo", "--preset", "gpu", "--dry-run", env=DEMO)
    p = json.loads(r.stdout)["params"]
    assert p["steps"] == 10 and p["lr"] == 0.01 and p["preset"] == "gpu"

def test_failed_run_keeps_previous_result(tmp_path):
    out = tmp_path/"demo"
    assert cli("run", "demo", "--out", out, env=DEMO).returncode == 0
    before = (out/"metrics.json").read_text()
    r = cli("run", "demo", "--out", out, "-p", "fail", "true", env=DEMO)
    assert r.returncode != 0 and "asked to fail" in r.stderr
    assert (out/"metrics.json").read_text() == before
    assert not (out/"partial.txt").read_text() == "" and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

def test_killed_run_leaves_nothing_complete(tmp_path):
    out = tmp_path/"demo"
    code = "import sys; from unlearnkit.repro import main; sys.exit(main())"
    p = subprocess.Popen([sys.executable, "-c", code, "run", "demo", "--out", str(out), "-p", "sleep_s", "60"],
                         cwd=ROOT, env={**os.environ, **DEMO}, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".demo.partial-*/partial.txt")) and not list(tmp_path.glob(".demo.partial-*")):
        time.sleep(0.5)
    time.sleep(3)
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    assert not out.exists(), "a killed run must not leave a results folder"
    assert not list(tmp_path.rglob("metrics.json"))
    # a re-run starts clean and removes the stale staging folder
    assert cli("run", "demo", "--out", out, env=DEMO).returncode == 0
    assert (out/"metrics.json").exists() and not list(tmp_path.glob(".demo.partial-*"))

def test_run_all_and_report(tmp_path):
    r = cli("run", "--all", "--out", tmp_path, env=DEMO)
    assert r.returncode == 0, r.stderr
    assert (tmp_path/"demo"/"smoke"/"metrics.json").exists()
    r = cli("report", "--results", tmp_path, env=DEMO)
    assert r.returncode == 0 and "| claim | source | paper | this run | held? |" in r.stdout
    assert "1 of 1 tested claims held" in r.stdout and (tmp_path/"REPORT.md").exists()

def test_every_reproduction_follows_the_contract():
    "Each reproduction notebook has the parameters the runner relies on, and settings.ini names only real ones."
    from unlearnkit.repro import list_reproductions, resolve_params, list_presets
    for name in list_reproductions():
        params = notebook_params(ROOT/"reproductions"/f"{name}.ipynb")
        for k in ("preset", "out_dir", "seed"): assert k in params, f"{name} lacks parameter {k!r}"
        assert params["preset"] == "smoke" and params["out_dir"] == ""
        for preset in list_presets(name): resolve_params(name, preset)   # raises on unknown keys or bad types
