"""nbval runs every notebook here; with `$UNLEARNKIT_EXECUTED` naming a folder, each notebook whose cells all
passed is also kept there with nbval's outputs, for `unlearnkit-docs` to render instead of executing it again
(`unlearnkit.docs.kept_page`). The kernels then get `UNLEARNKIT_STATIC_WIDGETS=1`, as the docs build's own do, so a
kept page is what the docs build would have produced. Without the variable nothing is kept or changed."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEEP = os.environ.get("UNLEARNKIT_EXECUTED")
if KEEP: os.environ["UNLEARNKIT_STATIC_WIDGETS"] = "1"   # before nbval starts any kernel: they inherit it

_failed = set()   # notebooks (their nbval collectors) with a failed cell: not kept


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    rep = (yield).get_result()
    if not KEEP or not hasattr(item, "test_outputs"): return   # an nbval cell item has `test_outputs`
    if rep.failed: _failed.add(item.parent)
    if rep.when == "call" and item.test_outputs is not None: item.cell["outputs"] = list(item.test_outputs)


def pytest_runtest_teardown(item, nextitem):
    "After a notebook's last cell: write the notebook with its outputs, atomically, unless a cell failed."
    if not KEEP or not hasattr(item, "test_outputs"): return
    if nextitem is not None and nextitem.parent is item.parent: return
    nb_file = item.parent
    if nb_file in _failed: return
    import nbformat
    from unlearnkit.core import write_text_atomic
    from unlearnkit.docs import kept_page
    path = Path(str(nb_file.fspath)).resolve().relative_to(ROOT).as_posix()
    write_text_atomic(kept_page(ROOT, path, KEEP), nbformat.writes(nb_file.nb))
