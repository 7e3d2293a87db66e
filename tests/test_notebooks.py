"""House rules for every notebook: both test runners skip the same cells, and notebooks are stored clean."""
import json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for d in ("nbs", "reproductions") for p in (ROOT/d).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
_skip_directive = re.compile(r"^#\|\s*(eval:\s*false|slow)\s*$", re.M)

@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_runners_agree_on_skipped_cells(nb):
    "A cell nbdev-test skips (`#| eval: false` or `#| slow`) is skipped by nbval too (tag `nbval-skip`), and vice versa."
    for i, c in enumerate(json.loads(nb.read_text(encoding="utf-8"))["cells"]):
        if c["cell_type"] != "code": continue
        src = "".join(c["source"]); tags = c.get("metadata", {}).get("tags", [])
        assert bool(_skip_directive.search(src)) == ("nbval-skip" in tags), \
            f"{nb.name} cell {i}: use both `#| eval: false` and the `nbval-skip` tag, or neither"

@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_stored_without_outputs_or_stray_metadata(nb):
    "Notebooks are stored as nbdev-clean leaves them: no execution counts, only `tags` in cell metadata."
    for i, c in enumerate(json.loads(nb.read_text(encoding="utf-8"))["cells"]):
        assert set(c.get("metadata", {})) <= {"tags"}, f"{nb.name} cell {i} has metadata {set(c['metadata'])}"
        if c["cell_type"] == "code": assert c.get("execution_count") is None, f"{nb.name} cell {i} was saved executed"
