"""The docs site: README generated from nbs/index.ipynb, every notebook a page, and a small executed build read in a
real browser (headless Chromium): a tutorial's static widget views, a reproduction page opened by its introduction
and summary box, no staging paths, no console errors, images loaded, search, and a phone-width layout."""
import re
from pathlib import Path
import pytest
from unlearnkit.docs import build_docs, check_site, readme_from_index, site_pages, page_html_name, _chromium

ROOT = Path(__file__).resolve().parent.parent

def test_readme_is_generated_from_index():
    assert (ROOT/"README.md").read_text(encoding="utf-8") == readme_from_index(ROOT), \
        "README.md is out of date: run `unlearnkit-docs --readme`"

def test_every_notebook_is_a_page():
    pages = {p for _, ps in site_pages(ROOT) for p in ps}
    nbs = {str(p.relative_to(ROOT)) for d in ("nbs", "reproductions") for p in (ROOT/d).rglob("*.ipynb")
           if ".ipynb_checkpoints" not in p.parts and not p.name.startswith("_")}
    assert nbs <= pages, f"notebooks missing from _quarto.yml: {sorted(nbs - pages)}"

@pytest.fixture(scope="module")
def site(tmp_path_factory, repro_result):
    "index, the plots API page (executed: its explorer test shows static views) and the unlearning reproduction."
    m, out = repro_result("unlearning")
    tmp = tmp_path_factory.mktemp("docs")
    (tmp/"results"/"unlearning").mkdir(parents=True)
    (tmp/"results"/"unlearning"/"smoke").symlink_to(out)
    mp = pytest.MonkeyPatch(); mp.setenv("UNLEARNKIT_RESULTS", str(tmp/"results"))
    try: res = build_docs(ROOT, tmp/"site", only=["nbs/index", "api/05_plots", "reproductions/unlearning"], verbose=False)
    finally: mp.undo()
    return res, tmp/"site", m

def test_small_build_has_every_page_and_no_error(site):
    res, out, _ = site
    assert res["errors"] == []
    for p in ("nbs/index.ipynb", "nbs/api/05_plots.ipynb", "reproductions/unlearning.ipynb"):
        assert (out/page_html_name(p)).exists(), p
    assert (out/"report.html").exists() and (out/"search"/"search_index.json").exists()
    assert (out/"assets"/"mathjax"/"MathJax.js").exists()                     # math offline, no CDN
    assert "cdn.jsdelivr" not in (out/"index.html").read_text()

def test_reproduction_page_reads_as_a_result_page(site):
    _, out, m = site
    h = (out/"reproductions"/"unlearning.html").read_text()
    intro, box, params = h.index("TOFU"), h.index('class="uk-summary"'), h.index("Parameters of this run")
    assert intro < box < params                     # the paper's introduction, then the summary, then the folded parameters
    assert "<details" in h[params - 200:params]     # folded
    assert ".partial-" not in h                     # no staging paths
    n_held = sum(c["held"] is True for c in m["claims"])
    assert re.search(rf"<b>{n_held}</b> claims held", h)
    assert (out/"report.html").read_text().count("uk-claims") >= 1

def test_static_widget_views(site):
    _, out, _ = site
    assert "Static view 2 of 3" in (out/"api"/"05_plots.html").read_text()

def test_docs_render_the_copy_the_tests_executed(tmp_path, monkeypatch):
    """With $UNLEARNKIT_EXECUTED, nbval keeps a notebook that passed as it ran it (nbs/conftest.py), and the docs build
    renders that copy instead of executing the notebook: the same page, text and figures."""
    import os, subprocess, sys, nbformat
    from unlearnkit.docs import kept_page
    page, kept = "nbs/api/05_plots.ipynb", tmp_path/"kept"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", page], cwd=ROOT,
                       env={**os.environ, "UNLEARNKIT_EXECUTED": str(kept)}, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]
    k = kept_page(ROOT, page, kept)
    assert [p.name for p in kept.iterdir()] == [k.name]
    nb = nbformat.read(str(k), as_version=4)
    assert sum(bool(c.outputs) for c in nb.cells if c.cell_type == "code") >= 2
    assert any("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    monkeypatch.setenv("UNLEARNKIT_EXECUTED", str(kept))
    a = build_docs(ROOT, tmp_path/"a", only=[page], verbose=False)
    monkeypatch.setenv("UNLEARNKIT_EXECUTED", str(tmp_path/"none"))   # nothing kept: executed here
    b = build_docs(ROOT, tmp_path/"b", only=[page], verbose=False)
    assert a["errors"] == b["errors"] == [] and a["pages"][0]["kept"] and not b["pages"][0]["kept"]
    text = lambda d: re.sub(r"<[^>]*>", "", (d/page_html_name(page)).read_text(encoding="utf-8"))
    assert text(tmp_path/"a") == text(tmp_path/"b")
    figs = lambda d: sorted(p.name for p in (d/"api").glob("*_files/*.png"))
    assert figs(tmp_path/"a") == figs(tmp_path/"b") != []


def test_failing_notebook_is_named_and_the_rest_builds(tmp_path):
    "A notebook that raises: its page shows the error, the build names notebook and cell, the other pages are built."
    import shutil, nbformat
    root = tmp_path/"repo"; (root/"nbs").mkdir(parents=True)
    (root/"_quarto.yml").write_text("website:\n  title: t\n  sidebar:\n    contents:\n      - nbs/good.ipynb\n      - nbs/bad.ipynb\n")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Good"), nbformat.v4.new_code_cell("print(1 + 1)")]), root/"nbs"/"good.ipynb")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Bad"), nbformat.v4.new_code_cell("x = 1"),
                                                   nbformat.v4.new_code_cell("raise ValueError('broken on purpose')")]), root/"nbs"/"bad.ipynb")
    res = build_docs(root, "site", verbose=False, jobs=1)
    assert len(res["errors"]) == 1 and "nbs/bad.ipynb: cell 3" in res["errors"][0] and "ValueError" in res["errors"][0]
    assert "2" in (root/"site"/"good.html").read_text()
    assert "broken on purpose" in (root/"site"/"bad.html").read_text()

def test_site_in_a_browser(site):
    if not _chromium(): pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium)")
    _, out, _ = site
    assert check_site(out, pages=["index.html", "api/05_plots.html", "reproductions/unlearning.html", "report.html"]) == []
