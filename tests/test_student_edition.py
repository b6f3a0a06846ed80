"""The student edition of the lessons (scripts/student_edition.py): stubs kept, solutions and outputs gone.

Builds the edition of every lesson into a temporary folder and compares it with the instructor
notebook; no notebook is executed.
"""

import builtins
import copy
import importlib.util
import itertools
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _load_script():
    spec = importlib.util.spec_from_file_location("student_edition", ROOT / "scripts" / "student_edition.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


se = _load_script()

# Names each exercise's solution leaves behind for the rest of its lesson (lesson -> one set per
# exercise, in order; lessons not listed: none). Reviewed by hand: if a lesson changes and this
# fails, check that the new lesson-support cell holds lesson code, not the answer, then update.
SUPPORT = {
    "09": [set(), set(), {"base", "LEVEL", "steps_per_seed"}],
    "10": [{"fan_reference"}, {"start"}, {"hu_g_step"}],
}


def _lines(text):
    return {line.strip() for line in text.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def editions(tmp_path_factory):
    """{lesson number: (instructor notebook, student notebook as written, Support records)}."""
    out = tmp_path_factory.mktemp("student")
    written = se.build(NOTEBOOKS, out, verbose=False)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    result = {}
    for path in NOTEBOOKS:
        instructor = se.read_notebook(path)
        _, supports = se.student_edition(instructor)
        result[path.name[:2]] = (instructor, se.read_notebook(out / path.name), supports)
    return result


LESSONS = [p.name[:2] for p in NOTEBOOKS]


def test_there_are_lessons():
    assert len(NOTEBOOKS) >= 10


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_stub_is_kept(editions, lesson):
    instructor, student, _ = editions[lesson]
    stubs = [(c["id"], se.cell_source(c)) for c in instructor["cells"] if se.is_stub(c)]
    kept = [(c["id"], se.cell_source(c)) for c in student["cells"] if se.is_stub(c)]
    assert kept == stubs
    assert all(src.startswith(se.STUB_MARK) and "NotImplementedError" in src for _, src in kept)


@pytest.mark.parametrize("lesson", LESSONS)
def test_no_solution_code_is_left(editions, lesson):
    instructor, student, supports = editions[lesson]
    cells = instructor["cells"]
    public = set().union(*(_lines(se.cell_source(c)) for c in cells if not se.is_solution(c)))
    student_sources = [se.cell_source(c) for c in student["cells"]]
    student_lines = set().union(*(_lines(s) for s in student_sources))
    for sup in supports:
        solution = se.cell_source(cells[sup.exercise.solution])
        carried = _lines(se.support_source(solution, sup.statements)) if sup.statements else set()
        secret = _lines(solution) - public - carried
        assert secret, f"exercise at cell {sup.exercise.stub}: the solution adds nothing to the stub?"
        assert not any(solution.strip() in s for s in student_sources)
        leaked = secret & student_lines
        assert not leaked, f"solution lines of the exercise at cell {sup.exercise.stub} in the student edition: {leaked}"
    for cell in student["cells"]:
        assert not se.is_solution(cell) and not se.is_hidden(cell)
        assert not (cell["cell_type"] == "markdown" and se.cell_source(cell).startswith(se.SOLUTION_NOTE))


def _put_back(student, instructor):
    """The student cells with the support cells dropped and each exercise's solution cells re-inserted."""
    cells = instructor["cells"]
    solutions = iter([(cells[ex.note], cells[ex.solution]) for ex in se.exercises(instructor)])
    out = []
    for cell in student["cells"]:
        if se.SUPPORT_TAG in se.cell_tags(cell):
            assert len(out) >= 3 and se.is_stub(out[-3]) and se.is_solution(out[-1]), \
                "a support cell stands where a solution was, right after its stub"
            continue
        out.append(cell)
        if se.is_stub(cell):
            out.extend(next(solutions))
    assert next(solutions, None) is None, "fewer stubs than exercises"
    return out


@pytest.mark.parametrize("lesson", LESSONS)
def test_putting_the_solutions_back_gives_the_lesson(editions, lesson):
    instructor, student, _ = editions[lesson]
    rebuilt = _put_back(student, instructor)
    assert [(c["cell_type"], c["id"], se.cell_source(c)) for c in rebuilt] == \
           [(c["cell_type"], c["id"], se.cell_source(c)) for c in instructor["cells"]]
    for mine, theirs in zip(rebuilt, instructor["cells"]):      # only the execution metadata differs
        expected = {k: v for k, v in theirs["metadata"].items() if k != "execution"}
        assert {k: v for k, v in mine["metadata"].items() if k != "execution"} == expected


@pytest.mark.parametrize("lesson", LESSONS)
def test_support_cells_follow_their_stub(editions, lesson):
    instructor, student, supports = editions[lesson]
    expected = SUPPORT.get(lesson, [set()] * len(supports))
    assert [sup.names for sup in supports] == expected
    cells = student["cells"]
    support_cells = [i for i, c in enumerate(cells) if se.SUPPORT_TAG in se.cell_tags(c)]
    assert len(support_cells) == sum(1 for names in expected if names)
    with_support = [sup for sup in supports if sup.statements]
    for i, sup in zip(support_cells, with_support):
        assert se.is_stub(cells[i - 1]) and cells[i - 1]["id"] == instructor["cells"][sup.exercise.stub]["id"]
        src = se.cell_source(cells[i])
        assert src.startswith(se.SUPPORT_HEADER + "\n")
        body = src[len(se.SUPPORT_HEADER) + 1:]
        compile(body, f"<support {lesson}>", "exec")
        solution = se.cell_source(instructor["cells"][sup.exercise.solution])
        assert _lines(body) <= _lines(solution), "support code is copied from the solution, not written"
        stub_names = set().union(*(s.binds for s in se.statements(se.cell_source(cells[i - 1]))))
        assert not sup.names & stub_names, "the exercise's own names are the student's to write"


def _unbound_reads(nb):
    """Names a notebook's code cells read that no earlier statement binds (builtins aside), in order.

    A stub counts as defining its names, as it will once the student has filled it in.
    """
    bound, unbound = set(dir(builtins)), {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for st in se.statements(se.cell_source(cell)):
            for name in st.reads - bound:
                unbound.setdefault(name, cell["id"])
            bound |= st.binds
    return unbound


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_name_read_is_still_defined(editions, lesson):
    instructor, student, _ = editions[lesson]
    ipython = set(_unbound_reads(instructor))        # display, get_ipython: the kernel's own names
    missing = {name: cell for name, cell in _unbound_reads(student).items() if name not in ipython}
    assert not missing, f"read in the student edition but defined only in a removed solution: {missing}"


@pytest.mark.parametrize("lesson", LESSONS)
def test_no_outputs_remain(editions, lesson):
    instructor, student, _ = editions[lesson]
    for cell in student["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
            assert "execution" not in cell["metadata"]
        else:
            assert "outputs" not in cell
    assert "widgets" not in student["metadata"]
    assert student["metadata"] == {k: v for k, v in instructor["metadata"].items() if k != "widgets"}
    assert (student["nbformat"], student["nbformat_minor"]) == (instructor["nbformat"], instructor["nbformat_minor"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_written_like_the_lessons(path, tmp_path):
    target = se.build([path], tmp_path, verbose=False)[0]
    text = target.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=1, ensure_ascii=False) + "\n"
    assert len({c["id"] for c in json.loads(text)["cells"]}) == len(json.loads(text)["cells"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_exercises_are_tagged(path):
    nb = se.read_notebook(path)
    found = se.exercises(nb)                         # raises on a broken exercise
    assert len(found) >= 2
    cells = nb["cells"]
    for ex in found:
        stub, note, sol = cells[ex.stub], cells[ex.note], cells[ex.solution]
        assert se.STUB_TAG in se.cell_tags(stub) and se.cell_source(stub).startswith(se.STUB_MARK)
        assert note["cell_type"] == "markdown" and se.cell_source(note).startswith(se.SOLUTION_NOTE)
        assert sol["cell_type"] == "code" and se.is_hidden(sol)
        assert se.SOLUTION_TAG in se.cell_tags(note) and se.SOLUTION_TAG in se.cell_tags(sol)
    tagged = [i for i, c in enumerate(cells) if se.is_solution(c)]
    assert tagged == sorted([ex.note for ex in found] + [ex.solution for ex in found])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_hidden_cell_is_a_tagged_solution(path):
    cells = se.read_notebook(path)["cells"]
    untagged = [c["id"] for c in cells if se.is_hidden(c) and not se.is_solution(c)]
    assert not untagged, f"hidden cells without the tag {se.SOLUTION_TAG!r}: {untagged}"


# ------------------------------------------------------------------ the script on small notebooks

_IDS = itertools.count()


def _code(source, tags=(), hidden=False):
    meta = {}
    if hidden:
        meta["jupyter"] = {"source_hidden": True}
    if tags:
        meta["tags"] = list(tags)
    return {"cell_type": "code", "execution_count": 3, "id": f"c{next(_IDS)}",
            "metadata": meta, "outputs": [{"output_type": "stream", "name": "stdout", "text": ["42\n"]}],
            "source": source}


def _md(source, tags=()):
    return {"cell_type": "markdown", "id": f"m{next(_IDS)}",
            "metadata": {"tags": list(tags)} if tags else {}, "source": source}


def _lesson(solution, *later):
    cells = [
        _code("import math\nK0 = 1\n"),
        _code("# NBVAL_RAISES_EXCEPTION\ndef f(x):\n    raise NotImplementedError('f')\n\n\ny = f(2)\n",
              tags=["raises-exception"]),
        _md("**Solution** (expand the hidden cell below)", tags=["solution"]),
        _code(solution, tags=["solution"], hidden=True),
        *later,
    ]
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}


SOLUTION = """\
# a helper
def helper(x):
    return x * SCALE


SCALE = 3
def f(x):
    return helper(x) + 1


y = f(2)
z = y * 2
w = 5
print(y, z)
"""


def test_support_carries_what_later_cells_read():
    nb = _lesson(SOLUTION, _md("text"), _code("w = 1\nprint(w, helper(4))\n"), _code("z = 0\nprint(z)"))
    student, (sup,) = se.student_edition(nb)
    assert sup.names == {"helper", "SCALE"}          # w and z are bound again before they are read
    support_cell = student["cells"][2]
    assert se.cell_tags(support_cell) == [se.SUPPORT_TAG]
    assert se.cell_source(support_cell) == (se.SUPPORT_HEADER + "\n# a helper\ndef helper(x):\n"
                                            "    return x * SCALE\n\n\nSCALE = 3")
    assert [se.cell_source(c)[:10] for c in student["cells"]] == \
           ["import mat", "# NBVAL_RA", se.SUPPORT_HEADER[:10], "text", "w = 1\nprin", "z = 0\nprin"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in student["cells"] if c["cell_type"] == "code")


def test_reads_inside_functions_and_later_solutions():
    later_solution = [
        _code("# NBVAL_RAISES_EXCEPTION\ndef g():\n    raise NotImplementedError\n", tags=["raises-exception"]),
        _md("**Solution**", tags=["solution"]),
        _code("def g():\n    return z + w\n", tags=["solution"], hidden=True),
    ]
    nb = _lesson(SOLUTION, *later_solution, _code("def h():\n    return SCALE\n"))
    _, (first, second) = se.student_edition(nb)
    assert first.names == {"SCALE"}                  # read by h at call time; z, w only by a removed solution
    assert second.names == set()


def test_nothing_to_carry():
    nb = _lesson(SOLUTION, _code("print(y, K0, math.pi)\n"))
    student, (sup,) = se.student_edition(nb)
    assert sup.statements == [] and len(student["cells"]) == 3


def test_the_answer_is_never_carried():
    # later cells need `helper`, but it is bound together with the stub's own name f
    solution = "def f(x):\n    return x\n\n\nf = helper = f\ny = f(2)\n"
    with pytest.raises(se.StructureError, match="helper"):
        se.student_edition(_lesson(solution, _code("helper(1)\n")))


@pytest.mark.parametrize("breakage", ["untagged hidden", "untagged solution", "no note", "stray tag",
                                      "stub without tag"])
def test_a_broken_exercise_stops_the_build(breakage):
    nb = _lesson(SOLUTION)
    cells = nb["cells"]
    if breakage == "untagged hidden":
        cells.append(_code("secret = 1\n", hidden=True))
    elif breakage == "untagged solution":
        cells[3]["metadata"]["tags"] = []
    elif breakage == "no note":
        del cells[2]
    elif breakage == "stray tag":
        cells.append(_md("more text", tags=["solution"]))
    else:
        cells.append(_code("# NBVAL_RAISES_EXCEPTION\nraise NotImplementedError\n"))
    with pytest.raises(se.StructureError):
        se.student_edition(nb)


def test_instructor_notebook_is_not_modified():
    nb = _lesson(SOLUTION, _code("print(helper(1))\n"))
    before = copy.deepcopy(nb)
    se.student_edition(nb)
    assert nb == before


def test_magics_do_not_stop_the_analysis():
    assert se.python_text("%matplotlib inline\nx = 1\n  !ls\n") == "pass  # matplotlib inline\nx = 1\n  pass  # ls\n"
    nb = _lesson(SOLUTION, _code("%matplotlib inline\nprint(z)\n"), _code("%%bash\necho helper\n"))
    assert se.student_edition(nb)[1][0].names == {"z"}      # the rest of a cell with a line magic counts
    nb = _lesson(SOLUTION, _code("%time print(helper(1))\n"))
    assert se.student_edition(nb)[1][0].names == {"helper", "SCALE"}     # %time runs its expression
    nb = _lesson(SOLUTION, _code("%%capture out\nprint(helper(1))\n"))
    assert se.student_edition(nb)[1][0].names == {"helper", "SCALE"}     # so does %%capture's body
    with pytest.raises(se.StructureError, match="does not parse"):
        se.student_edition(_lesson(SOLUTION, _code("print(helper(1)\n")))


def test_command_line(tmp_path, capsys):
    lesson = NOTEBOOKS[-1]
    assert se.main(["--out", str(tmp_path / "handout"), str(lesson)]) == 0
    assert (tmp_path / "handout" / lesson.name).is_file()
    assert lesson.name in capsys.readouterr().out
    bad = tmp_path / "99_bad.ipynb"
    nb = _lesson(SOLUTION)
    nb["cells"].append(_code("secret = 1\n", hidden=True))
    se.write_notebook(nb, bad)
    assert se.main(["--out", str(tmp_path / "handout"), str(bad)]) == 1
    assert "hidden code cell" in capsys.readouterr().err
    assert not (tmp_path / "handout" / bad.name).exists()
