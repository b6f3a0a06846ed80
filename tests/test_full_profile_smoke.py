"""benchmarks/full_profile_smoke.py: the full-profile code path of the lessons at toy size on the CPU.

The harness's verdicts are tested on a small synthetic notebook (an ordinary cell, a failing
checkpoint, an exercise stub, a broken cell), and the real full-profile path of the fastest lesson
runs end to end, as every lesson's does in ``benchmarks/full_profile_smoke_cpu.md``.
"""

import importlib.util
import json
import sys
from pathlib import Path

import os

import nbformat
import pytest

ORIGINAL_ENV = dict(os.environ)

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("full_profile_smoke", ROOT / "benchmarks" / "full_profile_smoke.py")
fps = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fps)

CELLS = [
    "from course_lib import config\nP = config.profile()\n"
    "assert (P.name, P.size_3d, P.train_steps) == ('full', (32, 40, 32), 7), P",
    "# NBVAL_CHECK_OUTPUT\nassert P.train_steps > 10**6, 'not met at toy size'\nprint('checkpoint')",
    "# NBVAL_RAISES_EXCEPTION\nraise NotImplementedError('exercise')",
    "# NBVAL_RAISES_EXCEPTION\nx = 1",
    "undefined_name + 1",
]


@pytest.fixture(scope="module")
def verdict(tmp_path_factory):
    path = tmp_path_factory.mktemp("smoke") / "toy.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    problems, notes, slowest = fps.smoke(path, steps=7, timeout=60)
    return path, problems, notes, slowest


def test_the_kernel_runs_the_shrunken_full_profile_and_the_caller_keeps_its_own(verdict):
    _, problems, _, _ = verdict
    assert not any(p.startswith("cell 0") for p in problems), problems      # cell 0 asserts the shrunken profile
    assert os.environ.get("COURSE_PROFILE") == ORIGINAL_ENV.get("COURSE_PROFILE")


def test_a_failing_checkpoint_is_a_note_and_other_errors_are_problems(verdict):
    _, problems, notes, slowest = verdict
    assert len(notes) == 1 and notes[0].startswith("cell 1: checkpoint not met"), notes
    assert any(p.startswith("cell 3: an exercise stub did not raise") for p in problems), problems
    assert any(p.startswith("cell 4: NameError") for p in problems), problems
    assert len(problems) == 2, problems            # the ordinary cell and the raising stub are fine
    assert len(slowest) == 3 and all(t >= 0 for _, t in slowest)


def test_the_report_has_one_row_per_lesson(tmp_path):
    rows = [{"notebook": "00_x.ipynb", "seconds": 12.0, "problems": [], "notes": ["cell 1: not met"],
             "slowest": [[1, 5.0]]},
            {"notebook": "01_y.ipynb", "seconds": 400.0, "problems": ["cell 4: NameError: x"], "notes": [],
             "slowest": [[4, 300.0]]}]
    fps.write_report(rows, tmp_path / "report", steps=100)
    data = json.loads((tmp_path / "report.json").read_text())
    assert [r["notebook"] for r in data["lessons"]] == ["00_x.ipynb", "01_y.ipynb"]
    assert data["meta"]["steps"] == 100 and data["meta"]["budget_s"] == fps.BUDGET_S
    md = (tmp_path / "report.md").read_text()
    assert "| 00_x.ipynb | 12 | yes | 0 | 1 |" in md and "| 01_y.ipynb | 400 | no | 1 | 0 |" in md
    assert "- 01_y.ipynb: cell 4: NameError: x" in md


def test_the_fastest_lesson_runs_its_full_profile_path(tmp_path, monkeypatch):
    # lesson 01 (transforms and resampling) is the fastest in benchmarks/full_profile_smoke_cpu.md
    monkeypatch.setattr(sys, "argv", ["full_profile_smoke.py", str(ROOT / "notebooks" / "01_transforms_and_resampling.ipynb"),
                                      "--max-seconds", str(fps.BUDGET_S), "--out", str(tmp_path / "r")])
    assert fps.main() == 0, (tmp_path / "r.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["x.ipynb"], "no such notebook: x.ipynb"),
    ([__file__, "--steps", "3"], "--steps must be at least 10"),
    ([__file__, "--merge"], "--merge needs --out"),
])
def test_bad_arguments_are_named(argv, message, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["full_profile_smoke.py", *argv])
    with pytest.raises(SystemExit):
        fps.main()
    assert message in capsys.readouterr().err
