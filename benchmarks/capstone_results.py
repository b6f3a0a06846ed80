"""Copy lesson 11's benchmark table and its Dice-against-time figure out of the executed notebook.

    .venv/bin/python benchmarks/capstone_results.py [notebooks/11_capstone_benchmark.ipynb]

Reads the notebook **as committed** (its stored outputs, nothing is re-run) and writes
``benchmarks/capstone_quick_cpu.md`` (the two tables, the Pareto front and the machine line the
notebook printed) and ``benchmarks/capstone_quick_cpu.png`` (the Dice-against-time figure), and
replaces the README's section between ``<!-- capstone:start -->`` and ``<!-- capstone:end -->`` with
the same. Run it after re-executing lesson 11 at the quick profile.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "notebooks" / "11_capstone_benchmark.ipynb"


def _text(cell) -> str:
    return "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def _png(cell) -> bytes | None:
    for o in cell.get("outputs", []):
        data = o.get("data", {})
        if "image/png" in data:
            return base64.b64decode(data["image/png"])
    return None


def extract(path: Path) -> tuple[str, str, str, bytes]:
    """(tables, Pareto front line, run description, figure PNG) from the executed notebook."""
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]

    def find(marker: str, what: str):
        hits = [c for c in cells if marker in "".join(c["source"])]
        if len(hits) != 1:
            raise SystemExit(f"capstone_results: expected one cell with {marker!r} ({what}) in {path}, found {len(hits)}")
        return hits[0]

    tables = _text(find('table(MONO)', "the tables"))
    front = _text(find('print("Pareto front', "the Pareto front"))
    machine = _text(find('lesson 11 executed in', "the machine line")).strip()
    networks = _text(find('networks (trained or loaded)', "the training line")).strip()
    # "lesson 11 executed in 61 s (profile quick, device cpu, CPU, 2 threads)" -> "61 s; profile quick, ..."
    machine = machine.replace("lesson 11 executed in ", "").replace(" (", "; ", 1).rstrip(")")
    machine = f"{machine}; {networks.split(' in ')[0].rstrip(',')}" if networks else machine
    figure = _png(find('title="Dice against time', "the Dice-against-time figure"))
    if not tables.strip() or not front.strip() or not machine.strip() or figure is None:
        raise SystemExit(f"capstone_results: {path} has no stored outputs; execute it first")
    return tables, front.strip(), machine, figure


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else DEFAULT
    tables, front, machine, figure = extract(path)
    out = ROOT / "benchmarks"
    (out / "capstone_quick_cpu.png").write_bytes(figure)
    (out / "capstone_quick_cpu.md").write_text(
        "# Lesson 11: every method on one benchmark (quick profile, CPU)\n\n"
        f"Copied by `benchmarks/capstone_results.py` from the committed outputs of `{path.relative_to(ROOT)}`: "
        f"{machine}.\n\n"
        "16 held-out pairs per modality, 4 mm axial slices (48 x 64). Learned methods: mean ± sd over three "
        "training seeds; the others: mean ± sd over the pairs. Rank per column in parentheses (1 = best). "
        "HD95, EPE and TRE in mm; time per pair in ms on the CPU. Timings depend on the machine (machines of "
        "this kind differ by up to 2x).\n\n"
        f"```\n{tables.rstrip()}\n```\n\n{front}\n\n![Dice against time](capstone_quick_cpu.png)\n",
        encoding="utf-8")
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = "<!-- capstone:start -->", "<!-- capstone:end -->"
    if text.count(start) != 1 or text.count(end) != 1:
        raise SystemExit(f"capstone_results: README.md needs one {start} and one {end} line")
    section = (f"{start}\nFrom the committed run of lesson 11 ({machine}); learned methods: mean ± sd over three "
               f"training seeds, others over the 16 pairs; rank per column in parentheses. Details and the "
               f"multi-modal table: [benchmarks/capstone_quick_cpu.md](benchmarks/capstone_quick_cpu.md).\n\n"
               f"```\n{tables.split(chr(10) + chr(10))[0].rstrip()}\n```\n\n{front}\n\n"
               f"![Dice against time per pair, lesson 11](benchmarks/capstone_quick_cpu.png)\n{end}")
    head, rest = text.split(start)
    readme.write_text(head + section + rest.split(end, 1)[1], encoding="utf-8")
    print(f"wrote benchmarks/capstone_quick_cpu.md and .png and the README's results from {path.name} ({machine})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
