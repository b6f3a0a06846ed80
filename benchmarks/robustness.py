"""Run lessons over training seeds and thread counts; record every checkpoint (SYLLABUS S7).

    .venv/bin/python benchmarks/robustness.py                    # every lesson, the standard runs
    .venv/bin/python benchmarks/robustness.py 06 09              # some lessons (results are merged)
    .venv/bin/python benchmarks/robustness.py 06 --under-load    # once more with a busy CPU
    .venv/bin/python benchmarks/robustness.py 07 --one-thread-seeds 0 1   # more one-thread runs
    .venv/bin/python benchmarks/robustness.py 08 --resume        # reuse the runs an interrupted call finished

The standard runs of a lesson are ``COURSE_SEED`` 0-4 with 2 threads plus seed 0 with one thread
(``OMP_NUM_THREADS=1``: another reduction order); for a lesson whose first run takes more than
120 s, seeds 0-2 only. Each run executes the notebook in a fresh kernel, one at a time (never in
parallel), with every cell run even after an error. A checkpoint is a cell marked
``# NBVAL_CHECK_OUTPUT``; it passed when it raised nothing. Its measured quantities are those it
gave ``config.record_checkpoint`` before asserting. We also record whether its printed line equals
the committed output (what nbval compares).

``--under-load`` runs seed 0 once more while a second process keeps two torch threads busy with
matrix products, the situation of a learner's laptop with something else running; it is stored
under ``"under_load"``. With ``--load-from TEXT`` the load starts only at the first code cell that
contains TEXT: lesson 08's training under load takes far longer than the cell limit, and its timing
checkpoint (08.4) is measured in one cell near the end::

    .venv/bin/python benchmarks/robustness.py 08 --under-load --load-from "ITER_BUDGETS = ["

Results: ``benchmarks/robustness_quick_cpu.json`` (shape below) and a readable ``.md`` twin::

    {"machine": "...", "date": "...",
     "lessons": {"09": {"seconds": [...], "runs": [{"seed": 0, "threads": 2}, ...], "machine": "...", "date": "...",
                        "checkpoints": {"09.1": {"passed": 4, "runs": 4, "values": [{...}, ...],
                                                 "output_matches": 4}}}},
     "under_load": {"06": {...same shape...}}}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "robustness_quick_cpu.json"
LONG_S = 120.0
RUN_TIMEOUT_S = 2400                 # one notebook run; the slowest (08, one thread) takes 7 min on a fast machine, 15+ on a slow one
CELL_TIMEOUT_S = 600                 # one cell; the slowest (08's supervised training, one thread) takes about 2 minutes

_CHILD = r"""
import json, sys, time, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
probe = nbformat.v4.new_code_cell(
    "import json as _j\nfrom course_lib import config as _c\nprint('ROBUSTNESS ' + _j.dumps(_c.CHECKPOINT_VALUES))")
nb.cells.append(probe)
if len(sys.argv) > 5:
    # --load-from: the kernel starts the competing process just before the first cell that contains the
    # marker, and stops it at the end; the cells before run on a quiet machine
    first = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and sys.argv[5] in c.source), None)
    if first is None:
        sys.exit(f"--load-from: no code cell of {sys.argv[1]} contains {sys.argv[5]!r}")
    nb.cells.insert(first, nbformat.v4.new_code_cell(
        "import subprocess as _sp, sys as _sys, time as _t\n"
        f"_load = _sp.Popen([_sys.executable, '-c', {sys.argv[6]!r}, '3600'])\n_t.sleep(2)"))
    nb.cells.append(nbformat.v4.new_code_cell("_load.kill()"))
t = time.perf_counter()
NotebookClient(nb, timeout=int(sys.argv[4]), kernel_name="python3", allow_errors=True,
               resources={"metadata": {"path": sys.argv[2]}}).execute()
wall = time.perf_counter() - t
cells = []
for c in nb.cells:
    if c.cell_type != "code":
        continue
    text = "".join(o.get("text", "") for o in c.outputs if o.get("output_type") == "stream")
    err = [f"{o.get('ename')}: {o.get('evalue')}" for o in c.outputs if o.get("output_type") == "error"]
    cells.append({"source": c.source, "text": text, "error": err[0] if err else None})
json.dump({"seconds": wall, "cells": cells}, open(sys.argv[3], "w"))
"""

_LOAD = r"""
import os, sys, time, torch
torch.set_num_threads(2)
a = torch.randn(768, 768)
end = time.time() + float(sys.argv[1])
parent = os.getppid()
while time.time() < end and os.getppid() == parent:        # stops when its parent ends
    a = torch.tanh(a @ a / 768.0)
"""


def checkpoint_id(source: str) -> str | None:
    m = re.search(r"checkpoint (\d\d\.\d+)", source)
    return m.group(1) if m else None


def stored_outputs(path: Path) -> dict:
    nb = json.loads(path.read_text())
    out = {}
    for c in nb["cells"]:
        src = "".join(c["source"])
        if c["cell_type"] == "code" and "NBVAL_CHECK_OUTPUT" in src:
            out[checkpoint_id(src)] = "".join(
                "".join(o.get("text", "")) for o in c.get("outputs", []) if o.get("output_type") == "stream")
    return out


def run_once(path: Path, seed: int, threads: int, load_from: str | None = None) -> dict:
    env = os.environ.copy()
    env.update(COURSE_SEED=str(seed), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               COURSE_PROFILE="quick", MPLBACKEND="Agg", PYTHONHASHSEED="0")
    result_file = ROOT / "benchmarks" / f".robustness_{path.stem}_{seed}_{threads}.json"
    # a run can hang: twice, the kernel and the client both sat idle (no CPU) in the middle of lesson 08, as if
    # a kernel message had been lost. A cell gets CELL_TIMEOUT_S and a whole run RUN_TIMEOUT_S; a run that
    # exceeds either, or dies, is killed with its kernel and started once more.
    for attempt in (1, 2):
        # its own process group, so that a hung run is killed with its kernel
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(path.parent), str(result_file),
                                 str(CELL_TIMEOUT_S)] + ([load_from, _LOAD] if load_from else []),
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            _, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
            problem = None if proc.returncode == 0 and result_file.exists() else f"exit status {proc.returncode}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, stderr = proc.communicate()
            problem = f"exceeded {RUN_TIMEOUT_S} s"
        if problem is None:
            break
        try:
            os.killpg(proc.pid, signal.SIGKILL)          # the kernel may outlive a client that died
        except ProcessLookupError:
            pass
        print(f"robustness: {path.name} seed {seed} threads {threads}: {problem} (attempt {attempt}); "
              + ("retrying" if attempt == 1 else "giving up"), flush=True)
        # keep the cause: the child's last words, on screen and in a log beside the results
        tail = (stderr or "")[-3000:]
        print(tail, flush=True)
        log = ROOT / "benchmarks" / f".robustness_{path.stem}_{seed}_{threads}_attempt{attempt}.log"
        log.write_text(f"{problem}\n{stderr or ''}")
        if attempt == 2:
            raise RuntimeError(f"{path.name} seed {seed} threads {threads} did not run:\n{(stderr or '')[-3000:]}")
    res = json.loads(result_file.read_text())
    result_file.unlink()
    values = {}
    for cell in res["cells"]:
        if cell["text"].startswith("ROBUSTNESS "):
            values = json.loads(cell["text"][len("ROBUSTNESS "):])
    stored = stored_outputs(path)
    checks = {}
    for cell in res["cells"]:
        if "NBVAL_CHECK_OUTPUT" not in cell["source"]:
            continue
        cid = checkpoint_id(cell["source"])
        checks[cid] = {"passed": cell["error"] is None, "error": cell["error"],
                       "values": values.get(cid, {}),
                       "output_matches": cell["error"] is None and cell["text"] == stored.get(cid)}
    return {"seconds": round(res["seconds"], 1), "checks": checks}


def partial_file(nn: str, under_load: bool) -> Path:
    # the finished runs of a lesson, saved after each run so that an interrupted call loses at most one
    return ROOT / "benchmarks" / f".robustness_partial_{nn}{'_load' if under_load else ''}.json"


def saved_run(nn: str, cfg: dict, under_load: bool) -> dict | None:
    # the saved result of one configuration of an interrupted call, if there is one
    store = partial_file(nn, under_load)
    for c, r in (json.loads(store.read_text()) if store.exists() else []):
        if c == cfg:
            print(f"robustness: {nn} {cfg}: reusing the saved run ({r['seconds']} s)", flush=True)
            return r
    return None


def new_run(nn: str, cfg: dict, path: Path, under_load: bool) -> dict:
    # run_once for one configuration, saved at once with the lesson's other finished runs
    r = run_once(path, cfg["seed"], cfg["threads"], cfg.get("load_from"))
    store = partial_file(nn, under_load)
    saved = [(c, x) for c, x in (json.loads(store.read_text()) if store.exists() else []) if c != cfg]
    store.write_text(json.dumps(saved + [(cfg, r)]) + "\n")
    return r


def cached_run(nn: str, cfg: dict, path: Path, under_load: bool, resume: bool) -> dict:
    # the saved result when resuming and there is one, else a new run
    return (resume and saved_run(nn, cfg, under_load)) or new_run(nn, cfg, path, under_load)


def summarize(runs: list[tuple[dict, dict]]) -> dict:
    lesson = {"seconds": [r["seconds"] for _, r in runs], "runs": [cfg for cfg, _ in runs], "checkpoints": {}}
    for cfg, r in runs:
        for cid, c in r["checks"].items():
            entry = lesson["checkpoints"].setdefault(
                cid, {"passed": 0, "runs": 0, "values": [], "output_matches": 0, "errors": []})
            entry["runs"] += 1
            entry["passed"] += int(c["passed"])
            entry["output_matches"] += int(c["output_matches"])
            entry["values"].append(c["values"])
            if c["error"]:
                entry["errors"].append({**cfg, "error": c["error"][:300]})
    return lesson


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def fmt_values(values: list[dict]) -> str:
    keys = sorted({k for v in values for k in v})
    parts = []
    for k in keys:
        xs = [v[k] for v in values if k in v]
        parts.append(f"{k} {min(xs):.4g}…{max(xs):.4g}" if len(set(xs)) > 1 else f"{k} {xs[0]:.4g}")
    return "; ".join(parts)


def write_md(res: dict, path: Path) -> None:
    lines = ["# Robustness: every checkpoint over training seeds and thread counts (quick profile, CPU)", "",
             f"Last updated {res['date']} by `benchmarks/robustness.py` on {res['machine']}. Each lesson's row names "
             "the machine it ran on (machines of this kind differ in speed by up to 2x; compare seconds only "
             "within a row).", "",
             "Runs per lesson: `COURSE_SEED` 0-4 with 2 threads and seed 0 with 1 thread (seeds 0-2 for "
             "lessons over 120 s). *Values*: the range over runs of what each checkpoint measured.", ""]
    for section, title in (("lessons", "Standard runs"), ("under_load", "Under load (a second 2-thread process)")):
        if not res.get(section):
            continue
        lines += [f"## {title}", "", "| checkpoint | passed / runs | printed line = committed | values (min…max) |",
                  "|---|---:|---:|---|"]
        for nn in sorted(res[section]):
            lesson = res[section][nn]
            runs = ", ".join(f"s{c['seed']}/t{c['threads']}" + (f", load from the cell with `{c['load_from']}`"
                                                                 if c.get("load_from") else "")
                             for c in lesson["runs"])
            secs = ", ".join(f"{s:.0f}" for s in lesson["seconds"])
            where = f"; {lesson['machine'].split(',')[0]}, {lesson['date'][:10]}" if "machine" in lesson else ""
            lines.append(f"| **{nn}** ({runs}; seconds {secs}{where}) | | | |")
            if lesson.get("note"):
                lines.append(f"| *note* | | | {lesson['note']} |")
            for cid in sorted(lesson["checkpoints"], key=lambda c: [int(x) for x in c.split(".")]):
                c = lesson["checkpoints"][cid]
                lines.append(f"| {cid} | {c['passed']} / {c['runs']} | {c['output_matches']} / {c['runs']} | "
                             f"{fmt_values(c['values'])} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lessons", nargs="*", help="lesson numbers (00 … 11); default: every notebook")
    ap.add_argument("--seeds", type=int, default=5, help="training seeds 0..N-1 with 2 threads (default 5)")
    ap.add_argument("--long-seeds", type=int, default=3, help="seeds for a lesson over 120 s (default 3)")
    ap.add_argument("--one-thread-seeds", type=int, nargs="*", default=[0],
                    help="seeds run with OMP_NUM_THREADS=1 (default: 0; none when the option is given without a value)")
    ap.add_argument("--under-load", action="store_true", help="run seed 0 once with a competing process")
    ap.add_argument("--load-from", metavar="TEXT",
                    help="with --under-load: start the competing process only at the first code cell that contains "
                         "TEXT (the cells before run on a quiet machine): for a timing section late in a long lesson")
    ap.add_argument("--resume", action="store_true",
                    help="reuse the runs of an interrupted call (saved after each run) instead of running them again")
    args = ap.parse_args()

    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.lessons:
        notebooks = [p for p in notebooks if p.name[:2] in args.lessons]
    if not notebooks:
        print("robustness: no notebook matches", args.lessons, file=sys.stderr)
        return 2
    res = json.loads(OUT.read_text()) if OUT.exists() else {"lessons": {}}
    res.setdefault("lessons", {})
    failed = 0
    for path in notebooks:
        nn = path.name[:2]
        if args.under_load:
            cfg = {"seed": 0, "threads": 2, "load": "second 2-thread torch process"}
            if args.load_from:
                cfg["load_from"] = args.load_from
            r = saved_run(nn, cfg, True) if args.resume else None
            if r is None and args.load_from:
                r = new_run(nn, cfg, path, True)            # the kernel starts and stops the load itself
            elif r is None:
                load = subprocess.Popen([sys.executable, "-c", _LOAD, "3600"])
                try:
                    time.sleep(2)
                    r = new_run(nn, cfg, path, True)
                finally:
                    load.kill()
            runs = [(cfg, r)]
            res.setdefault("under_load", {})[nn] = summarize(runs)
            lesson = res["under_load"][nn]
        else:
            first_cfg = {"seed": 0, "threads": 2}
            first = cached_run(nn, first_cfg, path, False, args.resume)
            n_seeds = args.long_seeds if first["seconds"] > LONG_S else args.seeds
            runs = [(first_cfg, first)]
            for cfg in [{"seed": s, "threads": 2} for s in range(1, n_seeds)] + [{"seed": s, "threads": 1} for s in args.one_thread_seeds]:
                runs.append((cfg, cached_run(nn, cfg, path, False, args.resume)))
            res["lessons"][nn] = summarize(runs)           # a fresh run replaces the lesson's entry (and any note)
            lesson = res["lessons"][nn]
        partial_file(nn, args.under_load).unlink(missing_ok=True)
        lesson["machine"], lesson["date"] = machine(), time.strftime("%Y-%m-%d %H:%M")
        for cid, c in lesson["checkpoints"].items():
            print(f"{nn} {cid}: {c['passed']}/{c['runs']} passed, printed line matches {c['output_matches']}/{c['runs']}"
                  + ("" if not c["errors"] else f"  FAILED: {c['errors'][0]}"))
            failed += c["passed"] < c["runs"]
        print(f"{nn}: seconds {lesson['seconds']}", flush=True)
        res["machine"], res["date"] = machine(), time.strftime("%Y-%m-%d %H:%M")
        OUT.write_text(json.dumps(res, indent=1) + "\n")
        write_md(res, OUT.with_suffix(".md"))
    print(f"robustness: {failed} checkpoint(s) failed at least one run; results in {OUT.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
