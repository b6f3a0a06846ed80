"""Run the full-profile code path of lessons on a CPU, at a toy size.

The full profile (3D volumes, long training) is meant for a GPU, and CI only runs the quick
profile. Its branches (3D templates, 3D figures, 3D metrics) would otherwise go untested on a
machine without a GPU. This script executes each notebook with ``COURSE_PROFILE=full`` after
shrinking the full profile in the kernel (3D crop at 2 mm, a few training steps, two test
pairs), so that every line of the full-profile path runs in a minute or two. It checks that the
only cells that raise are the exercise stubs (``# NBVAL_RAISES_EXCEPTION``) and checkpoints
whose assertion fails (expected at this size; they are listed, not counted). Models that a lesson
saves with ``train.cached_model`` go to a temporary folder: every run trains them afresh, and the
course's model cache is left alone.

It measures nothing and asserts no result of a lesson: the numbers at this size mean nothing.
The lessons' claims are checked by the quick profile under nbval (CI) and, on a GPU, by running
the lessons in the full profile.

Usage::

    .venv/bin/python benchmarks/full_profile_smoke.py notebooks/08_voxelmorph.ipynb ...
    .venv/bin/python benchmarks/full_profile_smoke.py notebooks/*.ipynb --out benchmarks/full_profile_smoke_cpu
    .venv/bin/python benchmarks/full_profile_smoke.py notebooks/11_*.ipynb --merge --out benchmarks/full_profile_smoke_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import nbformat
from dateutil.parser import isoparse
from nbconvert.preprocessors import ExecutePreprocessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import cpu_model  # noqa: E402  (benchmarks/run.py: the processor's name, as every benchmark records it)

BUDGET_S = 180                     # per lesson on a 2-core CPU (issue 15)

# A tiny stand-in for the full profile: the same code path, a fraction of the work.
SHRINK = """
import dataclasses
from course_lib import config as _config
_config.PROFILES["full"] = dataclasses.replace(
    _config.PROFILES["full"], resolution_3d=2, size_3d=(32, 40, 32), n_train=8, n_test=2,
    train_steps={steps}, batch_size=1, reg_steps=6, n_starts=2)
# toy-size models are trained afresh every time and never reach the course's model cache (data/cache/models)
import functools as _functools, tempfile as _tempfile
from course_lib import train as _train
_train.cached_model = _functools.partial(_train.cached_model, directory=_tempfile.mkdtemp(prefix="smoke_models_"))
"""


def _cell_seconds(cell) -> float:
    t = cell.get("metadata", {}).get("execution", {})
    try:
        return (isoparse(t["shell.execute_reply"]) - isoparse(t["iopub.execute_input"])).total_seconds()
    except (KeyError, ValueError):
        return 0.0


def smoke(path: Path, steps: int, timeout: int) -> tuple[list[str], list[str], list[tuple[int, float]]]:
    """Execute one notebook in the shrunken full profile; return (problems, notes, slowest cells).

    A checkpoint cell (``# NBVAL_CHECK_OUTPUT``) that fails its assertion is a note, not a
    problem: a lesson's claims need the real budget. Any other error is a problem.
    """
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(SHRINK.format(steps=steps)))
    before = os.environ.get("COURSE_PROFILE")
    os.environ["COURSE_PROFILE"] = "full"                    # the kernel inherits it; the caller's is restored
    try:
        ExecutePreprocessor(timeout=timeout, allow_errors=True).preprocess(nb, {"metadata": {"path": str(path.parent)}})
    finally:
        if before is None:
            os.environ.pop("COURSE_PROFILE", None)
        else:
            os.environ["COURSE_PROFILE"] = before
    problems, notes, seconds = [], [], []
    for i, cell in enumerate(nb.cells[1:]):            # i: the index in the lesson itself
        if cell.cell_type != "code":
            continue
        seconds.append((i, _cell_seconds(cell)))
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
    return problems, notes, sorted(seconds, key=lambda x: -x[1])[:3]


def write_report(rows: list[dict], stem: Path, steps: int) -> None:
    """Write ``stem.json`` and a table ``stem.md`` (one row per lesson)."""
    meta = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "threads": os.environ.get("OMP_NUM_THREADS", "default"),
            "steps": steps, "budget_s": BUDGET_S}
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "lessons": rows}, indent=1) + "\n")
    lines = [f"# Full-profile code path at toy size on the CPU ({meta['date']})", "",
             f"`benchmarks/full_profile_smoke.py --steps {steps}` on {meta['cpu']} ({os.cpu_count()} cores, threads: "
             f"{meta['threads']}). Each lesson runs with `COURSE_PROFILE=full` shrunk to a 32×40×32 crop at 2 mm, "
             f"`train_steps={steps}`, two test pairs. The numbers at this size mean nothing; this shows that every "
             f"cell of the 3D path runs. Budget: {BUDGET_S} s per lesson.", "",
             "| lesson | seconds | within budget | problems | checkpoints not met at toy size (expected) | slowest cells (index: s) | run on |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        slow = ", ".join(f"{i}: {t:.0f}" for i, t in r["slowest"])
        lines.append(f"| {r['notebook']} | {r['seconds']:.0f} | {'yes' if r['seconds'] <= BUDGET_S else 'no'} | "
                     f"{len(r['problems'])} | {len(r['notes'])} | {slow} | {r.get('date', '')} |")
    problems = [(r["notebook"], p) for r in rows for p in r["problems"]]
    if problems:
        lines += ["", "## Problems", ""] + [f"- {n}: {p.splitlines()[0]}" for n, p in problems]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=100,
                        help="train_steps of the shrunken profile (lessons divide it; default 100)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=None,
                        help="write a report to OUT.md and OUT.json (e.g. benchmarks/full_profile_smoke_cpu)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other lessons' rows of an existing OUT.json (re-run some lessons only)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="also fail a lesson that takes longer than this")
    args = parser.parse_args()
    if args.steps < 10:
        parser.error(f"--steps must be at least 10 (lessons divide it by up to 10), got {args.steps}")
    if args.timeout < 1:
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.merge and args.out is None:
        parser.error("--merge needs --out (the report to merge into)")
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    failed, rows, kept = 0, [], []
    if args.merge and args.out and args.out.with_suffix(".json").exists():
        names = {p.name for p in args.notebooks}
        kept = [r for r in json.loads(args.out.with_suffix(".json").read_text())["lessons"] if r["notebook"] not in names]
    for path in args.notebooks:
        t0 = time.time()
        problems, notes, slowest = smoke(path, args.steps, args.timeout)
        wall = time.time() - t0
        if args.max_seconds is not None and wall > args.max_seconds:
            problems.append(f"took {wall:.0f} s, more than --max-seconds {args.max_seconds:g}")
        status = "ok" if not problems else f"{len(problems)} problem(s)"
        print(f"{path.name}: full-profile path at toy size, {wall:.0f} s: {status}; slowest cells "
              + ", ".join(f"{i} ({t:.0f} s)" for i, t in slowest), flush=True)
        for line in problems + notes:
            print("  " + line)
        failed += bool(problems)
        rows.append({"notebook": path.name, "date": time.strftime("%Y-%m-%d"), "seconds": round(wall, 1),
                     "problems": problems, "notes": notes, "slowest": [[i, round(t, 1)] for i, t in slowest]})
        if args.out:
            write_report(sorted(kept + rows, key=lambda r: r["notebook"]), args.out, args.steps)          # after every lesson: a stopped run leaves a report
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
