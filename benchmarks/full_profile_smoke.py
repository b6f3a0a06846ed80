"""Run the full-profile code path of lessons on a CPU, at a toy size.

The full profile (3D volumes, long training) is meant for a GPU, and CI only runs the quick
profile. Its branches (3D templates, 3D figures, 3D metrics) would otherwise go untested on a
machine without a GPU. This script executes each notebook with ``COURSE_PROFILE=full`` after
shrinking the full profile in the kernel (3D crop at 2 mm, a few training steps, two test
pairs), so that every line of the full-profile path runs in a minute or two. It checks that the
only cells that raise are the exercise stubs (``# NBVAL_RAISES_EXCEPTION``) and checkpoints
whose assertion fails (expected at this size; they are listed, not counted).

It measures nothing and asserts no result of a lesson: the numbers at this size mean nothing.
The lessons' claims are checked by the quick profile under nbval (CI) and, on a GPU, by running
the lessons in the full profile.

Usage::

    .venv/bin/python benchmarks/full_profile_smoke.py notebooks/08_voxelmorph.ipynb ...
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor

# A tiny stand-in for the full profile: the same code path, a fraction of the work.
SHRINK = """
import dataclasses
from course_lib import config as _config
_config.PROFILES["full"] = dataclasses.replace(
    _config.PROFILES["full"], resolution_3d=2, size_3d=(32, 40, 32), n_train=8, n_test=2,
    train_steps={steps}, batch_size=1, reg_steps=6, n_starts=2)
"""


def smoke(path: Path, steps: int, timeout: int) -> tuple[list[str], list[str]]:
    """Execute one notebook in the shrunken full profile; return (problems, notes).

    A checkpoint cell (``# NBVAL_CHECK_OUTPUT``) that fails its assertion is a note, not a
    problem: a lesson's claims need the real budget. Any other error is a problem.
    """
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(SHRINK.format(steps=steps)))
    os.environ["COURSE_PROFILE"] = "full"
    ExecutePreprocessor(timeout=timeout, allow_errors=True).preprocess(nb, {"metadata": {"path": str(path.parent)}})
    problems, notes = [], []
    for i, cell in enumerate(nb.cells[1:], start=1):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        expected = "NBVAL_RAISES_EXCEPTION" in cell.source
        checkpoint = "NBVAL_CHECK_OUTPUT" in cell.source
        if errors and checkpoint and errors[0].ename == "AssertionError":
            notes.append(f"cell {i}: checkpoint not met at toy size (expected): {errors[0].evalue[:100]}")
        elif errors and not expected:
            e = errors[0]
            problems.append(f"cell {i}: {e.ename}: {e.evalue}\n    {cell.source.splitlines()[0][:80]}")
        if expected and not errors:
            problems.append(f"cell {i}: an exercise stub did not raise")
    return problems, notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=320,
                        help="train_steps of the shrunken profile (lessons divide it; default 320)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()
    failed = 0
    for path in args.notebooks:
        t0 = time.time()
        problems, notes = smoke(path, args.steps, args.timeout)
        status = "ok" if not problems else f"{len(problems)} problem(s)"
        print(f"{path.name}: full-profile path at toy size, {time.time() - t0:.0f} s: {status}")
        for line in problems + notes:
            print("  " + line)
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
