"""Measure the course against its budgets (SYLLABUS S6) and write the results file.

    .venv/bin/python benchmarks/run.py                 # unit tests + every notebook, quick profile
    .venv/bin/python benchmarks/run.py notebooks/02_*.ipynb --no-unit

Each notebook runs in a fresh kernel, one after another (never in parallel: on a 2-core machine
two kernels slow each other down). For each we record the wall time of the execution and the
peak resident memory of its kernel process. Results go to ``benchmarks/results_<profile>_<device>.md``
(a table, linked from the README) and a ``.json`` twin.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = {n: 300 if n.startswith(("08", "09", "10", "11", "12")) else 150 for n in
            [f"{i:02d}" for i in range(12)]}
BUDGET_MB = 4096

_CHILD = r"""
import resource, sys, time, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
t = time.perf_counter()
NotebookClient(nb, timeout=1200, kernel_name="python3",
               resources={"metadata": {"path": sys.argv[2]}}).execute()
wall = time.perf_counter() - t
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"RESULT {wall:.2f} {peak_kb / 1024:.1f}")
"""


def run_notebook(path: Path) -> dict:
    """Execute one notebook in a child process; its kernel is that child's child, so the child's
    RUSAGE_CHILDREN peak is the kernel's peak memory."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(path.parent)],
                         capture_output=True, text=True, env=os.environ.copy())
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not line:
        return {"notebook": path.name, "ok": False, "error": (out.stderr or out.stdout)[-2000:]}
    wall, peak = map(float, line[0].split()[1:])
    budget = BUDGET_S.get(path.name[:2], 150)
    return {"notebook": path.name, "ok": True, "seconds": wall, "peak_mb": peak,
            "budget_s": budget, "within_budget": wall <= budget and peak <= BUDGET_MB}


def run_unit_tests() -> dict:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests"], cwd=ROOT,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    return {"ok": out.returncode == 0, "seconds": wall, "peak_mb": peak, "summary": summary,
            "budget_s": 180, "within_budget": out.returncode == 0 and wall <= 180}


def device_name() -> str:
    import torch
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def cpu_model() -> str:
    """The processor's model name (machines of one kind differ by about 2x in speed: say which)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("notebooks", nargs="*", help="default: notebooks/*.ipynb")
    ap.add_argument("--no-unit", action="store_true", help="skip the unit-test timing")
    ap.add_argument("--out", default=None, help="results file stem (default benchmarks/results_<profile>_<cpu|gpu>)")
    args = ap.parse_args(argv)

    from course_lib import config
    prof = config.profile()
    os.environ["COURSE_PROFILE"] = prof.name
    os.environ.setdefault("MPLBACKEND", "Agg")
    paths = [Path(p).resolve() for p in args.notebooks] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    results = {"profile": prof.name, "device": device_name(), "cpu": cpu_model(), "python": platform.python_version(),
               "date": time.strftime("%Y-%m-%d %H:%M"), "notebooks": []}
    import torch
    results["torch"] = torch.__version__
    if not args.no_unit:
        results["unit_tests"] = run_unit_tests()
        print(f"unit tests: {results['unit_tests']['seconds']:.1f} s  {results['unit_tests']['summary']}", flush=True)
    for p in paths:
        r = run_notebook(p)
        results["notebooks"].append(r)
        if r["ok"]:
            print(f"{p.name}: {r['seconds']:.1f} s, peak {r['peak_mb']:.0f} MB", flush=True)
        else:
            print(f"{p.name}: FAILED\n{r['error']}", flush=True)
    ok = [r for r in results["notebooks"] if r["ok"]]
    results["total_seconds"] = sum(r["seconds"] for r in ok)

    stem = Path(args.out) if args.out else ROOT / "benchmarks" / f"results_{prof.name}_{'gpu' if torch.cuda.is_available() else 'cpu'}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1))
    lines = [f"# Benchmark: {prof.name} profile on {results['device']}", "",
             f"Measured {results['date']} on {results['cpu']} with Python {results['python']}, torch {results['torch']}, "
             "by `benchmarks/run.py` (each notebook in a fresh kernel, one at a time).", "",
             "| notebook | time (s) | budget (s) | peak kernel memory (MB) | within budget |",
             "|---|---:|---:|---:|---|"]
    for r in results["notebooks"]:
        if r["ok"]:
            lines.append(f"| {r['notebook']} | {r['seconds']:.1f} | {r['budget_s']} | {r['peak_mb']:.0f} | "
                         f"{'yes' if r['within_budget'] else '**no**'} |")
        else:
            lines.append(f"| {r['notebook']} | failed | | | **no** |")
    lines.append(f"| **all notebooks** | {results['total_seconds']:.1f} | 1800 | | "
                 f"{'yes' if results['total_seconds'] <= 1800 else '**no**'} |")
    if "unit_tests" in results:
        u = results["unit_tests"]
        lines += ["", f"Unit tests: {u['seconds']:.1f} s (budget 180 s), {u['summary']}."]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem.with_suffix('.md')}")
    return 0 if all(r["ok"] for r in results["notebooks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
