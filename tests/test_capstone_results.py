"""benchmarks/capstone_results.py finds lesson 11's table, Pareto front, run line and figure in the committed notebook."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("capstone_results", ROOT / "benchmarks" / "capstone_results.py")
cr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cr)


def test_the_committed_lesson_has_every_part():
    tables, front, machine, png = cr.extract(cr.DEFAULT)
    assert "MONO-MODAL" in tables and "MULTI-MODAL" in tables and "VoxelMorph LNCC" in tables
    assert front.startswith("Pareto front (fastest first): ")
    assert "profile quick" in machine and "networks" in machine
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_notebook_without_outputs_is_refused(tmp_path):
    nb = json.loads(cr.DEFAULT.read_text(encoding="utf-8"))
    for c in nb["cells"]:
        c["outputs"] = [] if c["cell_type"] == "code" else c.get("outputs")
        if c["cell_type"] != "code":
            c.pop("outputs", None)
    bare = tmp_path / "11_bare.ipynb"
    bare.write_text(json.dumps(nb), encoding="utf-8")
    with pytest.raises(SystemExit, match="no stored outputs"):
        cr.extract(bare)


def test_the_readme_holds_the_section_the_script_writes():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = text.index("<!-- capstone:start -->"), text.index("<!-- capstone:end -->")
    section = text[start:end]
    assert "benchmarks/capstone_quick_cpu.png" in section and "Pareto front" in section
    assert (ROOT / "benchmarks" / "capstone_quick_cpu.png").is_file()
