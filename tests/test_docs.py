"""The docs: README generated from nbs/index.ipynb, every notebook listed in _quarto.yml, the offline build."""
from pathlib import Path
from unlearnkit.docs import build_docs, readme_from_index, site_pages, page_html_name

ROOT = Path(__file__).resolve().parent.parent

def test_readme_is_generated_from_index():
    assert (ROOT/"README.md").read_text(encoding="utf-8") == readme_from_index(ROOT), \
        "README.md is out of date: run `unlearnkit-docs --readme`"

def test_every_notebook_is_a_page():
    pages = {p for _, ps in site_pages(ROOT) for p in ps}
    nbs = {str(p.relative_to(ROOT)) for d in ("nbs", "reproductions") for p in (ROOT/d).rglob("*.ipynb")
           if ".ipynb_checkpoints" not in p.parts and not p.name.startswith("_")}
    assert nbs <= pages, f"notebooks missing from _quarto.yml: {sorted(nbs - pages)}"

def test_offline_build(tmp_path):
    "The whole site builds without executing notebooks, as CI's docs step does (nbdev still runs export and import cells)."
    files = build_docs(ROOT, tmp_path/"site", execute=False, verbose=False)
    names = {str(f.relative_to(tmp_path/"site")) for f in files}
    want = {page_html_name(p) for _, ps in site_pages(ROOT) for p in ps}
    assert want <= names, f"pages missing from the build: {sorted(want - names)}"
    core = (tmp_path/"site"/"api"/"00_core.html").read_text()
    assert "set_seed" in core and "id='uk-side'" in core and "Reproductions" in core
    assert "../index.html" in core
    assert page_html_name("reproductions/sort.ipynb") == "reproductions/sort.html"
