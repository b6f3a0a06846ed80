"""Build the student edition of the lessons: the notebooks without their solutions or outputs.

    .venv/bin/python scripts/student_edition.py                  # every lesson -> student/NN_*.ipynb
    .venv/bin/python scripts/student_edition.py --out handout     # another folder
    .venv/bin/python scripts/student_edition.py notebooks/08_voxelmorph.ipynb

Every exercise of a lesson is three cells in a row (see notebooks/LESSON_TEMPLATE.md):

1. the stub, a code cell tagged ``raises-exception`` whose source starts with
   ``# NBVAL_RAISES_EXCEPTION``: the instructions and ``raise NotImplementedError(...)``;
2. a markdown cell ``**Solution** (expand the hidden cell below)``, tagged ``solution``;
3. the solution, a code cell with ``jupyter.source_hidden`` set, tagged ``solution``.

The student edition drops every cell tagged ``solution`` (the tag decides, nothing is guessed),
keeps the stubs, and clears the outputs, execution counts and execution times of every code cell
together with the saved widget state (progress bars): the figures and numbers printed after an
exercise show what its solution computes. The notebook metadata (kernelspec, language_info) is kept.

Some solution cells also define names that the exercise does not ask for and that later cells of
the lesson use (a helper function, a number the next section builds on). Those top-level statements
are found by reading the code (which names later cells read before a cell of their own binds them
again) and are carried into the student edition as a visible code cell, tagged ``lesson-support``,
placed where the solution was. A statement that would carry a name the stub itself defines (the
answer) is refused with an error: the lesson has to be changed so that the two separate.

The structure is checked first; a hidden code cell without the ``solution`` tag, a solution cell
out of place or a stub without a solution stops the build with a message naming the cell.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import symtable
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LESSONS = "[0-9][0-9]_*.ipynb"

STUB_TAG = "raises-exception"
SOLUTION_TAG = "solution"
SUPPORT_TAG = "lesson-support"
STUB_MARK = "# NBVAL_RAISES_EXCEPTION"
SOLUTION_NOTE = "**Solution**"
SUPPORT_HEADER = "# lesson code the rest of the notebook uses (not part of the exercise)"

_MAGIC = re.compile(r"^(\s*)[%!]")
_TIME_MAGIC = re.compile(r"^(\s*)%%?time\b[ \t]*(?=\S)")      # %time EXPR and %%time EXPR run EXPR
_MARKER_COMMENT = re.compile(r"^#\s*NBVAL_")
_CELL_MAGIC = re.compile(r"%%(\w+)")
_PYTHON_CELL_MAGICS = ("time", "timeit", "capture", "prun")      # cell magics whose body is Python


class StructureError(ValueError):
    """A lesson's exercises do not follow the stub / Solution note / hidden solution pattern."""


# -------------------------------------------------------------------------------------- cells

def cell_source(cell: dict) -> str:
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def cell_tags(cell: dict) -> list:
    return list(cell.get("metadata", {}).get("tags", []))


def is_hidden(cell: dict) -> bool:
    return bool(cell.get("metadata", {}).get("jupyter", {}).get("source_hidden", False))


def is_stub(cell: dict) -> bool:
    return cell["cell_type"] == "code" and STUB_TAG in cell_tags(cell)


def is_solution(cell: dict) -> bool:
    return SOLUTION_TAG in cell_tags(cell)


def _split_lines(text: str) -> list:
    """Notebook style: every line but the last keeps its newline."""
    return text.splitlines(keepends=True)


@dataclass(frozen=True)
class Exercise:
    """Cell indices of one exercise in the instructor notebook."""

    stub: int
    note: int
    solution: int


def _name(cell: dict, index: int) -> str:
    first = cell_source(cell).strip().splitlines()[:1]
    return f"cell {index} ({cell['cell_type']}, id {cell.get('id', '?')}: {first[0][:60] if first else ''!r})"


def exercises(nb: dict) -> list:
    """The exercises of a lesson, after checking that every one has the expected three cells."""
    cells = nb["cells"]
    found, claimed = [], set()
    for i, cell in enumerate(cells):
        if not is_stub(cell):
            if cell["cell_type"] == "code" and cell_source(cell).lstrip().startswith(STUB_MARK):
                raise StructureError(f"{_name(cell, i)} starts with {STUB_MARK} but lacks the tag {STUB_TAG!r}")
            continue
        if not cell_source(cell).startswith(STUB_MARK):
            raise StructureError(f"{_name(cell, i)} is tagged {STUB_TAG!r} but does not start with {STUB_MARK}")
        if i + 2 >= len(cells):
            raise StructureError(f"{_name(cell, i)}: a stub needs a Solution note and a solution cell after it")
        note, sol = cells[i + 1], cells[i + 2]
        if not (note["cell_type"] == "markdown" and cell_source(note).startswith(SOLUTION_NOTE)
                and is_solution(note)):
            raise StructureError(f"{_name(note, i + 1)} after the stub {_name(cell, i)} should be a markdown "
                                 f"cell starting with {SOLUTION_NOTE!r}, tagged {SOLUTION_TAG!r}")
        if not (sol["cell_type"] == "code" and is_hidden(sol) and is_solution(sol) and not is_stub(sol)):
            raise StructureError(f"{_name(sol, i + 2)} after the stub {_name(cell, i)} should be the hidden "
                                 f"solution code cell (jupyter.source_hidden), tagged {SOLUTION_TAG!r}")
        found.append(Exercise(i, i + 1, i + 2))
        claimed.update((i + 1, i + 2))
    for i, cell in enumerate(cells):
        if i in claimed:
            continue
        if is_solution(cell):
            raise StructureError(f"{_name(cell, i)} is tagged {SOLUTION_TAG!r} but does not follow a stub")
        if cell["cell_type"] == "code" and is_hidden(cell):
            raise StructureError(f"{_name(cell, i)} is a hidden code cell without the tag {SOLUTION_TAG!r}: "
                                 "tag it (it is a solution) or show it")
        if cell["cell_type"] == "markdown" and cell_source(cell).startswith(SOLUTION_NOTE):
            raise StructureError(f"{_name(cell, i)} is a Solution note that does not follow a stub")
    return found


# ----------------------------------------------------------------------------- name analysis

def python_text(source: str) -> str:
    """Cell source as plain Python, line for line: ``%time EXPR`` becomes ``EXPR``, every other
    IPython magic or shell line ``pass`` (a cell magic such as ``%%bash`` then fails to parse)."""
    out = []
    for line in _split_lines(source):
        if _TIME_MAGIC.match(line):
            line = _TIME_MAGIC.sub(r"\1", line)
        elif _MAGIC.match(line):
            line = _MAGIC.sub(r"\1pass  # ", line)
        out.append(line)
    return "".join(out)


def _symbols(code: str) -> tuple:
    """(names read from the module scope, names bound in it) by the module-level code ``code``."""
    top = symtable.symtable(code, "<cell>", "exec")
    reads, binds = set(), set()
    for sym in top.get_symbols():
        if sym.is_referenced():
            reads.add(sym.get_name())
        if sym.is_assigned() or sym.is_imported() or sym.is_namespace():
            binds.add(sym.get_name())
    todo = list(top.get_children())
    while todo:                                   # functions, classes, lambdas, comprehensions
        table = todo.pop()
        todo.extend(table.get_children())
        for sym in table.get_symbols():
            if sym.is_global() and sym.is_referenced():
                reads.add(sym.get_name())
            if sym.is_declared_global() and sym.is_assigned():
                binds.add(sym.get_name())
    return reads, binds


def _reads_of(nodes) -> set:
    reads = set()
    for node in nodes:
        reads |= _symbols(ast.unparse(node))[0]
    return reads


@dataclass
class Statement:
    """One top-level statement of a cell: its lines (1-based, inclusive) and the names involved."""

    node: ast.stmt
    first: int                     # first line, leading comment lines included
    last: int
    binds: set = field(default_factory=set)
    reads: set = field(default_factory=set)   # read from outside the statement (before it binds them)

    @property
    def is_definition(self) -> bool:
        return isinstance(self.node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))


def _outside_reads(node: ast.stmt, reads: set, binds: set) -> set:
    """Of the names a statement both reads and binds, keep those it reads before binding them."""
    both = reads & binds
    if not both:
        return reads
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        early = _reads_of([*node.decorator_list, *getattr(node, "bases", []), *getattr(node, "keywords", [])])
        if not isinstance(node, ast.ClassDef):
            early |= _reads_of([*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)])
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        early = _reads_of([node.iter])
    elif isinstance(node, (ast.Assign, ast.AnnAssign)):
        early = _reads_of([node.value]) if node.value is not None else set()
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        early = _reads_of([item.context_expr for item in node.items])
    else:                                         # AugAssign, if/while/try blocks: assume read first
        return reads
    return (reads - both) | (both & early)


def statements(source: str) -> list:
    """The top-level statements of a code cell's source."""
    text = python_text(source)
    lines = text.splitlines()
    out = []
    for node in ast.parse(text).body:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        while first > 1 and lines[first - 2].startswith("#") and not _MARKER_COMMENT.match(lines[first - 2]):
            first -= 1                            # top-level comment lines directly above belong to it
        reads, binds = _symbols(ast.unparse(node))
        out.append(Statement(node, first, node.end_lineno, binds, _outside_reads(node, reads, binds)))
    return out


def _cell_statements(cell: dict) -> list:
    source = cell_source(cell)
    magic = _CELL_MAGIC.match(source)
    if magic and magic.group(1) not in _PYTHON_CELL_MAGICS:
        return []                                 # another language (%%bash, %%html, %%writefile ...)
    try:
        return statements(source)
    except SyntaxError as err:
        raise StructureError(f"cell id {cell.get('id', '?')} does not parse as Python, so the names it "
                             f"reads are unknown: {err}") from None


@dataclass
class Support:
    """What one solution cell must leave behind for the rest of the lesson."""

    exercise: Exercise
    statements: list               # the solution's top-level statements to carry, in source order
    needed: dict                   # name -> index of the first later cell that reads it

    @property
    def names(self) -> set:
        return set().union(*(s.binds for s in self.statements)) if self.statements else set()


def support(nb: dict, exercise: Exercise) -> Support:
    """The top-level statements of a solution cell that later cells depend on.

    A name bound by the solution is needed when a later code cell that is not a solution reads it
    before any later cell binds it again (later solution cells are removed, so their reads do not
    count, but their bindings shadow this one in the instructor notebook). Names the stub binds are
    the student's. The statements binding needed names are carried, with the statements of the
    solution they in turn read from (but not the stub's names).
    """
    cells = nb["cells"]
    sol = _cell_statements(cells[exercise.solution])
    provided = set().union(*(s.binds for s in _cell_statements(cells[exercise.stub])))
    live = set().union(*(s.binds for s in sol)) - provided if sol else set()
    needed = {}
    for index in range(exercise.solution + 1, len(cells)):
        cell = cells[index]
        if cell["cell_type"] != "code" or not live:
            continue
        for st in _cell_statements(cell):
            if not is_solution(cell):
                for name in st.reads & live:
                    needed.setdefault(name, index)
            live -= st.binds
    carry = set()
    todo = [(name, len(sol)) for name in needed]          # (name, read by the statement at this position)
    while todo:
        name, pos = todo.pop()
        reader_defines = pos < len(sol) and sol[pos].is_definition
        for k, st in enumerate(sol):
            if k == pos or name not in st.binds or k in carry or (k > pos and not reader_defines):
                continue
            carry.add(k)
            todo.extend((r, k) for r in st.reads if r not in provided)
    carried = [sol[k] for k in sorted(carry)]
    answer = [s for s in carried if s.binds & provided]
    if answer:
        lines = ", ".join(f"lines {s.first}-{s.last}" for s in answer)
        raise StructureError(
            f"solution cell {exercise.solution} (id {cells[exercise.solution].get('id', '?')}): later cells need "
            f"{sorted(needed)}, but the statements that define them ({lines}) also define the exercise's own "
            f"names {sorted(set().union(*(s.binds for s in answer)) & provided)}; separate them in the lesson")
    return Support(exercise, carried, needed)


def support_source(solution_source: str, carried: list) -> str:
    """The text of the support cell: a header comment and the carried statements, as written."""
    lines = _split_lines(solution_source)
    chunks = []
    previous = None
    for st in carried:
        text = "".join(lines[st.first - 1:st.last]).rstrip("\n")
        if previous is not None:
            if previous.is_definition or st.is_definition:
                gap = "\n\n\n"
            else:
                gap = "\n" if previous.last + 1 == st.first else "\n\n"
            chunks.append(gap)
        chunks.append(text)
        previous = st
    return SUPPORT_HEADER + "\n" + "".join(chunks)


# ------------------------------------------------------------------------------ the edition

def cleared(cell: dict) -> dict:
    """A copy of a cell without outputs, execution count and execution timing metadata."""
    cell = copy.deepcopy(cell)
    if cell["cell_type"] == "code":
        cell["outputs"] = []
        cell["execution_count"] = None
        cell["metadata"].pop("execution", None)
    return cell


def _support_cell(solution: dict, source: str) -> dict:
    cell_id = f"{solution.get('id', 'solution')}-support"[:64]
    return {"cell_type": "code", "execution_count": None, "id": cell_id,
            "metadata": {"tags": [SUPPORT_TAG]}, "outputs": [], "source": _split_lines(source)}


def student_edition(nb: dict) -> tuple:
    """(the student notebook, the list of Support records) for an instructor notebook."""
    found = exercises(nb)
    supports = {ex.solution: support(nb, ex) for ex in found}
    cells = []
    for index, cell in enumerate(nb["cells"]):
        if index in supports and supports[index].statements:
            cells.append(_support_cell(cell, support_source(cell_source(cell), supports[index].statements)))
        if is_solution(cell):
            continue
        cells.append(cleared(cell))
    student = {key: copy.deepcopy(value) for key, value in nb.items() if key != "cells"}
    student["metadata"].pop("widgets", None)          # saved widget views belong to the cleared outputs
    student["cells"] = cells
    return student, [supports[ex.solution] for ex in found]


def read_notebook(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_notebook(nb: dict, path: Path) -> None:
    """Written as the repository stores notebooks: one-space indent, UTF-8, a final newline."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")


def build(lessons, out: Path, verbose: bool = True) -> list:
    """Write the student edition of each lesson into ``out``; return the paths written.

    Every lesson is checked and converted before anything is written.
    """
    editions = [(Path(path), *student_edition(read_notebook(path))) for path in lessons]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, student, supports in editions:
        target = out / path.name
        write_notebook(student, target)
        written.append(target)
        if verbose:
            carried = [f"{sorted(s.names)} after cell {s.exercise.stub}" for s in supports if s.statements]
            print(f"{target}: {len(supports)} exercises, solutions removed"
                  + (f"; lesson code kept: {'; '.join(carried)}" if carried else ""))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", type=Path,
                        help="instructor notebooks (default: every notebooks/NN_*.ipynb)")
    parser.add_argument("--out", type=Path, default=ROOT / "student",
                        help="output folder (default: student/ at the repository root)")
    args = parser.parse_args(argv)
    lessons = args.lessons or sorted((ROOT / "notebooks").glob(LESSONS))
    if not lessons:
        parser.error("no lesson notebooks found")
    try:
        build(lessons, args.out)
    except StructureError as err:
        print(f"student_edition.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
