"""Every reproduction, run on its `smoke` preset through the real command line, keeps the contract: the schema, a
settled claims table with this run's numbers, figures that are real PNGs, per-item scores, and an executed notebook
without errors. Paper-specific checks live in tests/test_<paper>.py and reuse the same run."""
import csv, json
import pytest
from unlearnkit.claims import check_claims
from unlearnkit.repro import METRICS_KEYS, RUNNER_PARAMS, check_metrics, list_reproductions, resolve_params

PNG = b"\x89PNG\r\n\x1a\n"

@pytest.fixture(params=list_reproductions())
def smoke(request, repro_result):
    return request.param, *repro_result(request.param)

def test_schema_and_parameters(smoke):
    name, m, out = smoke
    check_metrics(m, name, "smoke")
    assert tuple(m) == METRICS_KEYS
    want = {k: v for k, v in resolve_params(name, "smoke").items() if k not in (*RUNNER_PARAMS, "seed")}
    assert m["params"] == json.loads(json.dumps(want)), "metrics.json records the parameters the run was given"
    assert m["provenance"]["wall_s"] > 0 and m["provenance"]["seed"] == resolve_params(name, "smoke")["seed"]

def test_claims_are_settled_with_numbers(smoke):
    name, m, _ = smoke
    check_claims(m["claims"])   # keys, unique ids, this run's numbers in every row, a reason for every open verdict
    for c in m["claims"]:
        assert c["held"] in (True, False) or (c["held"] is None and c["reason"]), c["id"]
        assert isinstance(c["run"], dict) and c["run"], f"{name}/{c['id']}: `run` records this run's numbers"
        if c["held"] is not None and "p" in c["run"]:
            assert "n" in c["run"] and "effect" in c["run"], f"{name}/{c['id']}: a tested claim records n, effect and p"

def test_figures_are_real_pngs(smoke):
    name, _, out = smoke
    pngs = sorted(out.glob("*.png"))
    assert pngs, f"{name} saved no figure"
    for p in pngs:
        data = p.read_bytes()
        assert data[:8] == PNG and len(data) > 2000, f"{p.name} is not a real PNG"

def test_per_item_scores(smoke):
    name, _, out = smoke
    items = sorted(out.glob("*items*.csv"))
    assert items, f"{name} writes no per-item scores (run.save_items)"
    for f in items:
        rows = list(csv.DictReader(open(f, encoding="utf-8")))
        assert len(rows) >= 2 and len(rows[0]) >= 2, f"{f.name} holds no scores"

def test_executed_notebook_has_no_error(smoke):
    name, _, out = smoke
    nb = json.loads((out/f"{name}.ipynb").read_text(encoding="utf-8"))
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    shown = json.dumps([c.get("outputs", []) for c in nb["cells"]])
    assert ".partial-" not in shown, f"{name}: a staging path is printed in the notebook's output"
