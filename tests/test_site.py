"""scripts/build_site.sh: every lesson as a static HTML page, stored outputs and figures included.

The whole site is built once (about 13 s for the eleven lessons on one core), into a temporary
directory and from another working directory; nothing is executed. A second, one-lesson build
checks --only.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "build_site.sh"
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MATHJAX = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/"   # the one thing a page may load
PNG_IMG = re.compile(r'<img\b[^>]*\bsrc="data:image/png;base64,')
REMOTE = re.compile(r'<(?:script|link|img|iframe|embed|object|source|audio|video)\b[^>]*?\b(?:src|href|data)='
                    r'"((?:https?:)?//[^"]*)"', re.I)
HREF = re.compile(r'<a\b[^>]*\bhref="([^"]+)"')

pytestmark = pytest.mark.skipif(
    not ((ROOT / ".venv" / "bin" / "jupyter").exists() or shutil.which("jupyter")),
    reason="jupyter (nbconvert) is not installed")


def build(out: Path, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    run_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(["bash", str(SCRIPT), "--out", str(out), *args], cwd=cwd, env=run_env,
                          capture_output=True, text=True, timeout=600)


def notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def title(nb: dict) -> str:
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                m = re.match(r" {0,3}#{1,6}\s+(.+?)\s*$", line)
                if m:
                    return m.group(1)
    raise AssertionError("a lesson without a markdown heading")


def png_outputs(nb: dict) -> int:
    return sum("image/png" in out.get("data", {})
               for cell in nb["cells"] if cell["cell_type"] == "code" for out in cell["outputs"])


def hidden_code_cells(nb: dict) -> int:
    return sum(cell["cell_type"] == "code" and cell["metadata"].get("jupyter", {}).get("source_hidden", False)
               for cell in nb["cells"])


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    elsewhere = tmp_path_factory.mktemp("cwd")   # the script must not depend on the caller's directory
    result = build(out, cwd=elsewhere)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_lessons_found():
    assert len(LESSONS) >= 11, LESSONS


def test_index_links_every_lesson_in_order(site):
    index = (site / "index.html").read_text(encoding="utf-8")
    assert HREF.findall(index) == [nb.stem + ".html" for nb in LESSONS]
    for nb in LESSONS:
        assert html.escape(title(notebook(nb))) in index
    assert "scripts/lab.sh" in index and "quick" in index


def test_site_holds_the_pages_and_nothing_else(site):
    assert sorted(p.name for p in site.iterdir()) == sorted([nb.stem + ".html" for nb in LESSONS] + ["index.html"])


@pytest.mark.parametrize("path", LESSONS, ids=[nb.stem[:2] for nb in LESSONS])
def test_lesson_page(site, path):
    nb = notebook(path)
    page = site / (path.stem + ".html")
    text = page.read_text(encoding="utf-8")
    assert page.stat().st_size > 100_000, "a page without its figures?"
    assert f"<title>{html.escape(title(nb))}</title>" in text
    assert len(PNG_IMG.findall(text)) >= png_outputs(nb) > 0
    # solutions are kept but collapsed
    assert text.count('<details class="site-solution">') == hidden_code_cells(nb) > 0
    # ipywidgets are drawn from their stored state, not left for a widget manager to fetch
    assert WIDGET_VIEW not in text
    assert 'href="index.html"' in text


@pytest.mark.parametrize("path", LESSONS, ids=[nb.stem[:2] for nb in LESSONS])
def test_lesson_page_loads_nothing_but_mathjax(site, path):
    text = (site / (path.stem + ".html")).read_text(encoding="utf-8")
    remote = [url for url in REMOTE.findall(text) if not url.startswith(MATHJAX)]
    assert remote == []
    cdn = re.findall(r"""(?:https?:)?//(?:cdn|unpkg)[^"' )]*""", text)   # also those in scripts' code
    assert [url for url in cdn if not url.startswith(MATHJAX)] == []
    assert "require.js" not in text


def test_stored_widget_figures_are_shown(site):
    """Lesson 00's two viewers: their stored figures are in the page, beside the cells' figures."""
    nb_path = next(nb for nb in LESSONS if nb.name.startswith("00_"))
    nb = notebook(nb_path)
    state = nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    widget_pngs = sum("image/png" in out.get("data", {}) for model in state.values()
                      if model["model_name"] == "OutputModel" for out in model["state"].get("outputs", []))
    text = (site / (nb_path.stem + ".html")).read_text(encoding="utf-8")
    assert widget_pngs >= 2
    assert len(PNG_IMG.findall(text)) >= png_outputs(nb) + widget_pngs


def test_only_builds_the_lessons_named(tmp_path):
    nb_path = next(nb for nb in LESSONS if nb.name.startswith("06_"))   # the smallest notebook
    result = build(tmp_path, "--only", "06", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["06_supervised_regression.html", "index.html"]
    assert HREF.findall((tmp_path / "index.html").read_text(encoding="utf-8")) == [nb_path.stem + ".html"]


@pytest.mark.parametrize("args, message", [
    (["--only", "99"], "no lesson notebooks/99_*.ipynb"),
    (["--only", "1"], "two-digit lesson numbers"),
    (["--bogus"], "unknown argument '--bogus'"),
])
def test_bad_arguments_fail_with_one_line(tmp_path, args, message):
    result = build(tmp_path / "out", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_no_jupyter_fails_with_one_line(tmp_path):
    if shutil.which("jupyter", path="/usr/bin:/bin"):
        pytest.skip("jupyter is installed system-wide here")
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "build_site.sh")   # a checkout without .venv
    result = subprocess.run(["bash", str(tmp_path / "scripts" / "build_site.sh")], cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "jupyter not found" in result.stderr
