"""The runner and the `unlearnkit-repro` command line, on a small demo reproduction (tests/fixtures): bad input,
results folders it did not make, concurrent runs, killed runs, malformed results, and one-line errors."""
import json, os, shutil, signal, stat, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import cli, FIXTURES, ROOT
from unlearnkit.repro import check_metrics, METRICS_KEYS, notebook_params

DEMO = dict(UNLEARNKIT_REPRODUCTIONS=str(FIXTURES/"reproductions"), UNLEARNKIT_SETTINGS=str(FIXTURES/"settings.ini"))
CODE = "import sys; from unlearnkit.repro import main; sys.exit(main())"

def one_line_error(r, code=2):
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]

def demo_copy(tmp_path):
    "A private copy of the demo reproductions folder and settings, to break on purpose."
    d = tmp_path/"fx"; shutil.copytree(FIXTURES, d)
    return d, dict(UNLEARNKIT_REPRODUCTIONS=str(d/"reproductions"), UNLEARNKIT_SETTINGS=str(d/"settings.ini"))

def test_list():
    r = cli("list", env=DEMO)
    assert r.returncode == 0 and "demo" in r.stdout and "gpu" in r.stdout

@pytest.mark.parametrize("args,needle", [
    (["run", "nosuch"], "unknown reproduction 'nosuch'; choose from: demo"),
    (["run", "demo", "--preset", "nosuch"], "unknown preset 'nosuch' for demo; choose from: smoke, gpu"),
    (["run", "demo", "--preset", "../gpu"], "a preset name is a plain name"),
    (["run", "demo", "-p", "nosuchparam", "1"], "unknown parameter 'nosuchparam'"),
    (["run", "demo", "-p", "steps", "abc"], "parameter 'steps': got 'abc'; allowed: an int like 3"),
    (["run", "demo", "-p", "fail", "maybe"], "allowed: true or false"),
    (["run", "demo", "-p", "steps", "2", "-p", "steps", "3"], "parameter 'steps' is given twice"),
    (["run", "demo", "-p", "preset", "gpu"], "parameter 'preset' is set by the runner"),
    (["run", "demo", "-p", "out_dir", "/tmp/x"], "parameter 'out_dir' is set by the runner"),
    (["run", "demo", "-p", "seed", "-1"], "parameter 'seed': got -1; allowed: an int >= 0"),
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

@pytest.mark.parametrize("param,value,needle", [
    ("n_excerpts", "-2", "n_excerpts"), ("excerpt_lengths", "[]", "excerpt_lengths"),
    ("excerpt_lengths", "[250, 'x']", "excerpt_lengths"), ("ft_lr", "float('inf')", "ft_lr"), ("ft_lr", "1e999", "ft_lr"),
])
def test_paper_checks_run_in_the_cli(tmp_path, param, value, needle):
    "The paper module's parameter check rejects bad values in --dry-run, before a kernel starts."
    t0 = time.perf_counter()
    r = cli("run", "sort", "--dry-run", "-p", param, value, "--out", tmp_path/"o")
    assert needle in one_line_error(r) and time.perf_counter() - t0 < 60

def test_run_writes_schema_and_executed_notebook(tmp_path):
    out = tmp_path/"demo"
    r = cli("run", "demo", "--out", out, "-p", "steps", "5", env=DEMO)
    assert r.returncode == 0, r.stderr
    text = (out/"metrics.json").read_text()
    m = check_metrics(json.loads(text), "demo", "smoke")
    assert tuple(m) == METRICS_KEYS
    assert m["params"]["steps"] == 5 and m["metrics"]["total"] == 10
    assert m["claims"][0]["held"] is True and m["claims"][1]["held"] is None and m["claims"][1]["reason"]
    assert "Infinity" not in text and "NaN" not in text and m["metrics"]["not_finite"] is None   # strict JSON
    assert (out/"demo.ipynb").exists() and m["provenance"]["wall_s"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder or lock left behind"
    umask = os.umask(0); os.umask(umask)
    assert stat.S_IMODE((out/"metrics.json").stat().st_mode) == 0o666 & ~umask, "result files get the user's usual mode"
    assert "kernel" not in r.stderr.lower() and "without encryption" not in r.stderr + r.stdout
    assert "demo 00:" in r.stdout, "the run prints the section it is in"

def test_preset_from_settings(tmp_path):
    r = cli("run", "demo", "--preset", "gpu", "--dry-run", "--device", "cpu", env=DEMO)
    p = json.loads(r.stdout)["params"]
    assert p["steps"] == 10 and p["lr"] == 0.01 and p["preset"] == "gpu"

def test_gpu_preset_needs_cuda_or_an_explicit_cpu_opt_in(tmp_path):
    import torch
    if torch.cuda.is_available(): pytest.skip("this machine has CUDA")
    r = cli("run", "demo", "--preset", "gpu", "--out", tmp_path/"o", env=DEMO)
    assert "pass --device cpu" in one_line_error(r) and not (tmp_path/"o").exists()

# --- results folders the runner did not make ------------------------------------------------------------------

def test_out_never_replaces_a_folder_of_user_files(tmp_path):
    thesis = tmp_path/"thesis"; thesis.mkdir(); (thesis/"chapter1.tex").write_text("years of work")
    r = cli("run", "demo", "--out", thesis, env=DEMO)
    assert str(thesis) in one_line_error(r)
    assert sorted(os.listdir(thesis)) == ["chapter1.tex"] and (thesis/"chapter1.tex").read_text() == "years of work"

def test_out_never_replaces_a_file_or_read_only_folder(tmp_path):
    f = tmp_path/"notes.txt"; f.write_text("keep")
    assert "is not a results folder" in one_line_error(cli("run", "demo", "--out", f, env=DEMO))
    assert f.read_text() == "keep"
    ro = tmp_path/"ro"; ro.mkdir(); (ro/"data.csv").write_text("1"); ro.chmod(0o555)
    try:
        assert "did not write" in one_line_error(cli("run", "demo", "--out", ro, env=DEMO))
        assert (ro/"data.csv").read_text() == "1"
    finally: ro.chmod(0o755)

def test_out_at_a_results_root_or_here_is_refused(tmp_path):
    root = tmp_path/"results"
    assert cli("run", "demo", "--out", root/"demo"/"smoke", env=DEMO).returncode == 0
    r = cli("run", "demo", "--out", root, env=DEMO)           # one run pointed at the whole results folder
    assert "did not write" in one_line_error(r) and (root/"demo"/"smoke"/"metrics.json").exists()
    assert "refusing to use the current folder" in one_line_error(cli("run", "demo", "--out", ".", env=DEMO, cwd=tmp_path))
    f = tmp_path/"afile"; f.write_text("x")
    assert "is a file, not a folder" in one_line_error(cli("run", "demo", "--out", f/"sub", env=DEMO))

def test_out_replaces_its_own_or_an_empty_folder(tmp_path):
    out = tmp_path/"demo"; out.mkdir()                           # empty: fine
    assert cli("run", "demo", "--out", out, env=DEMO).returncode == 0
    assert cli("run", "demo", "--out", out, "-p", "steps", "4", env=DEMO).returncode == 0   # its own: replaced
    assert json.loads((out/"metrics.json").read_text())["params"]["steps"] == 4

def test_failed_run_keeps_previous_result(tmp_path):
    out = tmp_path/"demo"
    assert cli("run", "demo", "--out", out, env=DEMO).returncode == 0
    before = (out/"metrics.json").read_text()
    r = cli("run", "demo", "--out", out, "-p", "fail", "true", env=DEMO)
    msg = one_line_error(r, code=1)
    assert "asked to fail" in msg and "cell 4 of demo.ipynb ('time.sleep(sleep_s)')" in msg, msg
    assert (out/"metrics.json").read_text() == before
    kept = tmp_path/"demo.failed.ipynb"
    assert kept.exists() and "asked to fail" in kept.read_text(), "the executed notebook with the traceback is kept"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert cli("run", "demo", "--out", out, env=DEMO).returncode == 0 and not kept.exists()

def _demo_with_cell(tmp_path, code):
    "A private demo with a cell running `code` before its counting cell."
    d, env = demo_copy(tmp_path)
    f = d/"reproductions"/"demo.ipynb"; nb = json.loads(f.read_text())
    i = next(i for i, c in enumerate(nb["cells"]) if "time.sleep(sleep_s)" in "".join(c["source"]))
    nb["cells"].insert(i, {"cell_type": "code", "execution_count": None, "id": "added", "metadata": {}, "outputs": [], "source": [code]})
    f.write_text(json.dumps(nb))
    return env

def test_kernel_process_stderr_stays_out_of_the_message(tmp_path):
    "What the kernel process itself writes to stderr (its log) is not part of the run's one-line error."
    env = _demo_with_cell(tmp_path, "import os; os.write(2, b'[IPKernelApp] ERROR | noise from the kernel process\\n')")
    r = cli("run", "demo", "--out", tmp_path/"o", "-p", "fail", "true", env=env)
    msg = one_line_error(r, code=1)
    assert "asked to fail" in msg and "noise" not in r.stderr + r.stdout

def test_log_output_streams_the_notebooks_output(tmp_path):
    "--log-output shows what the notebook prints, on stdout (and its stderr on stderr), as it runs."
    env = _demo_with_cell(tmp_path, "import sys; print('printed by the notebook'); print('warned by the notebook', file=sys.stderr)")
    r = cli("run", "demo", "--out", tmp_path/"o", "--log-output", env=env)
    assert r.returncode == 0, r.stderr
    assert "printed by the notebook" in r.stdout and "warned by the notebook" in r.stderr
    quiet = cli("run", "demo", "--out", tmp_path/"q", env=env)
    assert "printed by the notebook" not in quiet.stdout + quiet.stderr

def test_killed_kernel_is_one_line(tmp_path):
    "A kernel that dies (here: SIGKILL, as the out-of-memory killer sends) is one line naming it, and nothing is kept as a result."
    env = _demo_with_cell(tmp_path, "import os, signal, sys; os.write(2, b'last words of the kernel\\n'); os.kill(os.getpid(), signal.SIGKILL)")
    r = cli("run", "demo", "--out", tmp_path/"o", env=env)
    msg = one_line_error(r, code=1)
    assert "demo/smoke: the kernel died before the notebook finished" in msg and "its log ends: last words of the kernel" in msg, msg
    assert not (tmp_path/"o").exists()


# --- concurrent and killed runs ---------------------------------------------------------------------------------

def _start(out, *extra):
    return subprocess.Popen([sys.executable, "-c", CODE, "run", "demo", "--out", str(out), *extra], cwd=ROOT,
                            env={**os.environ, **DEMO}, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def _wait_for(pred, timeout=120):
    t = time.time() + timeout
    while time.time() < t and not pred(): time.sleep(0.2)
    assert pred(), "timed out"

def test_second_run_into_a_locked_target_fails_and_the_first_completes(tmp_path):
    out = tmp_path/"demo"
    a = _start(out, "-p", "sleep_s", "8", "-p", "steps", "7")
    _wait_for(lambda: list(tmp_path.glob(".demo.partial-*/partial.txt")) or list(tmp_path.glob(".demo.partial-*/demo.ipynb")))
    r = cli("run", "demo", "--out", out, env=DEMO)
    assert f"another run (pid {a.pid})" in one_line_error(r)
    assert list(tmp_path.glob(".demo.partial-*")), "the live run's staging folder is left alone"
    a.wait(timeout=300)
    assert a.returncode == 0, a.stderr
    m = json.loads((out/"metrics.json").read_text())
    assert m["params"]["steps"] == 7 and m["metrics"]["total"] == 21 and (out/"demo.ipynb").exists()

def test_killed_run_leaves_nothing_complete_and_its_lock_is_taken_over(tmp_path):
    out = tmp_path/"demo"
    p = _start(out, "-p", "sleep_s", "60")
    _wait_for(lambda: list(tmp_path.glob(".demo.partial-*")))
    time.sleep(3)
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    assert not out.exists(), "a killed run must not leave a results folder"
    assert not list(tmp_path.rglob("metrics.json"))
    assert (tmp_path/".demo.lock").exists() and (tmp_path/".demo.lock").read_text().split()[0] == str(p.pid)
    # the stale lock (its process is gone) is taken over, and the stale staging folder removed
    r = cli("run", "demo", "--out", out, env=DEMO)
    assert r.returncode == 0, r.stderr
    assert (out/"metrics.json").exists() and not [q for q in tmp_path.iterdir() if q.name.startswith(".")]

# --- run --all and report --------------------------------------------------------------------------------------

def test_run_all_and_report(tmp_path):
    r = cli("run", "--all", "--out", tmp_path, env=DEMO)
    assert r.returncode == 0, r.stderr
    assert (tmp_path/"demo"/"smoke"/"metrics.json").exists()
    r = cli("report", "--results", tmp_path, env=DEMO)
    assert r.returncode == 0 and "| claim | source | paper | this run | verdict |" in r.stdout
    assert "1 claims held, 0 did not hold, 1 were not settled" in r.stdout and (tmp_path/"REPORT.md").exists()

def test_run_all_ends_with_a_summary(tmp_path):
    d, env = demo_copy(tmp_path)
    shutil.copy(d/"reproductions"/"demo.ipynb", d/"reproductions"/"demo2.ipynb")
    nb = json.loads((d/"reproductions"/"demo2.ipynb").read_text())
    for c in nb["cells"]:
        c["source"] = [s.replace('start_run("demo"', 'start_run("demo2"') for s in c["source"]]
    (d/"reproductions"/"demo2.ipynb").write_text(json.dumps(nb))
    r = cli("run", "--all", "--out", tmp_path/"res", "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    i = next(i for i, l in enumerate(lines) if l.startswith("reproduction"))
    assert "held" in lines[i] and lines[i + 1].startswith("demo ") and lines[i + 2].startswith("demo2") and lines[i + 3].startswith("total")

def test_report_skips_bad_files_with_one_warning_each(tmp_path):
    res = tmp_path/"res"
    assert cli("run", "demo", "--out", res/"demo"/"smoke", env=DEMO).returncode == 0
    bad = {"num": "3", "str": '"x"', "provnull": None, "claimstr": None, "trunc": '{"name": "demo", "pres'}
    good = json.loads((res/"demo"/"smoke"/"metrics.json").read_text())
    bad["provnull"] = json.dumps(dict(good, provenance=None)); bad["claimstr"] = json.dumps(dict(good, claims=["held"]))
    for k, v in bad.items():
        (res/k/"smoke").mkdir(parents=True); (res/k/"smoke"/"metrics.json").write_text(v)
    (res/"bin"/"smoke").mkdir(parents=True); (res/"bin"/"smoke"/"metrics.json").write_bytes(b"\x00\xff\xfe")
    (res/"dir"/"smoke"/"metrics.json").mkdir(parents=True)
    (res/"demo"/".smoke.old-1"/"x").mkdir(parents=True); shutil.copy(res/"demo"/"smoke"/"metrics.json", res/"demo"/".smoke.old-1")
    r = cli("report", "--results", res, env=DEMO)
    assert r.returncode == 0, r.stderr
    warns = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(warns) == 7 and all(l.startswith("unlearnkit-repro: warning: skipped ") for l in warns), r.stderr
    assert r.stdout.count("## demo · smoke") == 1

def test_report_into_a_read_only_folder_is_one_line(tmp_path):
    res = tmp_path/"res"
    assert cli("run", "demo", "--out", res/"demo"/"smoke", env=DEMO).returncode == 0
    res.chmod(0o555)
    try:
        if os.access(res, os.W_OK): pytest.skip("running as a user who can write anywhere")
        assert "REPORT.md: cannot be written" in one_line_error(cli("report", "--results", res, env=DEMO))
    finally: res.chmod(0o755)

# --- files that do not parse -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,needle", [
    ("[demo.smoke]\nsteps = 3\nthis is junk\n", "line 5: not a 'key = value' line: 'this is junk'"),   # 2 lines of [suite] come first
    ("[demo.smoke]\n[demo.smoke]\n", "line 4: section 'demo.smoke' already exists"),
    ("[demo.smoke]\nsteps = 3\nsteps = 4\n", "line 5: option 'steps'"),
    ("[demo.a/b]\nsteps = 3\n", "preset name must be a plain name"),
])
def test_bad_settings_file_is_one_line(tmp_path, text, needle):
    d, env = demo_copy(tmp_path)
    (d/"settings.ini").write_text("[suite]\norder = demo\n" + text)
    r = cli("run", "demo", "--dry-run", env=env)
    assert needle in one_line_error(r) and "settings.ini" in one_line_error(r)
    assert "--debug" not in r.stderr
    rd = cli("--debug", "run", "demo", "--dry-run", env=env)
    assert rd.returncode != 0 and "Traceback" in rd.stderr          # --debug shows the traceback

def test_bad_utf8_settings_is_one_line(tmp_path):
    d, env = demo_copy(tmp_path)
    (d/"settings.ini").write_bytes(b"[suite]\norder = demo\n[demo.gpu]\nlabel = \xff\xfe\n")
    assert "line 4: not UTF-8" in one_line_error(cli("run", "demo", "--dry-run", env=env))

def test_bad_parameters_cell_is_one_line(tmp_path):
    d, env = demo_copy(tmp_path)
    nbp = d/"reproductions"/"demo.ipynb"; nb = json.loads(nbp.read_text())
    nb["cells"][1]["source"] = ["steps = 3\n", "lr = compute_lr()\n"]
    nbp.write_text(json.dumps(nb))
    assert "parameters cell line 2: lr is not a literal" in one_line_error(cli("run", "demo", "--dry-run", env=env))
    nb["cells"][1]["source"] = ["steps = (3\n"]; nbp.write_text(json.dumps(nb))
    assert "does not parse" in one_line_error(cli("run", "demo", "--dry-run", env=env))

def test_stray_non_notebook_is_one_line(tmp_path):
    d, env = demo_copy(tmp_path)
    (d/"reproductions"/"notes.ipynb").write_text("these are my notes, not JSON")
    msg = one_line_error(cli("run", "--all", "--dry-run", env=env))
    assert "notes.ipynb" in msg and "not a notebook" in msg

def test_every_reproduction_follows_the_contract():
    "Each reproduction notebook has the parameters the runner relies on, and settings.ini names only real ones."
    from unlearnkit.repro import list_reproductions, resolve_params, list_presets
    for name in list_reproductions():
        params = notebook_params(ROOT/"reproductions"/f"{name}.ipynb")
        for k in ("preset", "out_dir", "seed"): assert k in params, f"{name} lacks parameter {k!r}"
        assert params["preset"] == "smoke" and params["out_dir"] == ""
        for preset in list_presets(name): resolve_params(name, preset)   # raises on unknown keys, bad types or values
