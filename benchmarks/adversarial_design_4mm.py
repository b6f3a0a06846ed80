"""Design runs for lesson 10 at its own setting: the lesson's cells, one setting changed.

Lesson 10 trains only the recipes it teaches, to stay within its budget. The variants it cites
(other adversarial weights, the discriminator gate, an MI anchor, a faster discriminator) are run by
this script, from the lesson's own code cells: the setup, data and harness cells, and the part of
each recipe cell before its first ``train_recipe(...)`` call. The numbers are written by hand into
``benchmarks/adversarial_design_4mm.md``, with the date, the machine and the thread count.

    OMP_NUM_THREADS=2 COURSE_PROFILE=quick .venv/bin/python benchmarks/adversarial_design_4mm.py hu 0.01 0.03
    ... adversarial_design_4mm.py gate 1.0 1.3          # PD -> T1, Fan's gate at these thresholds
    ... adversarial_design_4mm.py anchor                # PD -> T1, adversarial + MI, and MI alone
    ... adversarial_design_4mm.py fan 1e-2,0,none 1e-2,1,none 1e-2,0,0.5   # lr_D, spectral norm, gate
    ... adversarial_design_4mm.py truthref pd mono     # real sample: the moving image warped by the true field

Seeds are the lesson's (``COURSE_SEED`` offsets them as usual).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import nbformat  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "10_adversarial_registration.ipynb"
# the cells to run, each found by a line it contains; "defs" cells run up to their first training call
WHOLE = ("P = config.profile()", "QUICK = P.name", "def train_recipe(", "def fan_reference(")
DEFS = ("def lncc_step(", "def fan_steps(", "def mi_step(", "def data_term(", "def hu_g_step(")


def lesson_namespace() -> dict:
    """Run the lesson's setup, data, harness and recipe definitions; return the namespace."""
    sys.path.insert(0, str(ROOT))
    cells = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    ns: dict = {}
    for marker in WHOLE + DEFS:
        src = next((s for s in cells if marker in s and "NotImplementedError" not in s), None)
        if src is None:
            raise SystemExit(f"no code cell of {NOTEBOOK.name} contains {marker!r}")
        if marker in DEFS:
            lines = src.splitlines()
            first = next((i for i, line in enumerate(lines) if line.startswith(("train_recipe(", "loss, stats =",
                                                                              "RESULTS["))), len(lines))
            src = "\n".join(lines[:first])
        exec(src.replace("%matplotlib inline", ""), ns)
    return ns


def report(g: dict, name: str) -> None:
    np = g["np"]
    h = g["HIST"][name][0]
    acc = np.round(g["tail"](name, "d_acc"), 2) if "d_acc" in h else "-"
    print(f"{name}: Dice {np.round(g['per_seed'](name), 3)}  EPE {np.round(g['per_seed'](name, 'EPE'), 3)}  "
          f"SDlogJ {np.round(g['per_seed'](name, 'SDlogJ'), 3)}  fold % {np.round(g['per_seed'](name, 'fold %'), 1)}  "
          f"D accuracy (last 50 steps) {acc}", flush=True)
    if "d_lr_factor" in h:
        print("  share of D steps skipped by the gate", np.round([np.mean(np.asarray(x["d_lr_factor"]) == 0)
                                                                for x in g["HIST"][name]], 2))


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("hu", "gate", "anchor", "fan", "truthref"):
        raise SystemExit(__doc__)
    g = lesson_namespace()
    part, args = argv[0], argv[1:]
    if part == "hu":                                    # section 4: the adversarial regulariser's weight
        g["train_recipe"]("no regulariser", g["label_step"]())
        report(g, "no regulariser")
        for w in map(float, args):
            g["REG"]["adversarial"] = w
            g["train_recipe"](f"adversarial {w:g}", g["hu_g_step"], g["hu_d_step"], in_channels=g["NDIM"])
            report(g, f"adversarial {w:g}")
    elif part == "gate":                                # section 2, PD -> T1: Fan et al.'s gate
        for thr in map(float, args):
            g["train_recipe"](f"gate {thr:g}", *g["fan_steps"](), contrast="pd", test=g["TEST_PD"], d_threshold=thr)
            report(g, f"gate {thr:g}")
    elif part == "anchor":                              # section 2, PD -> T1: MI beside the adversarial term
        g["train_recipe"]("adversarial + MI", *g["fan_steps"](g["MI"], lam=g["LAM"]), contrast="pd", test=g["TEST_PD"])
        report(g, "adversarial + MI")
        g["train_recipe"]("MI", g["mi_step"], contrast="pd", test=g["TEST_PD"])
        report(g, "MI")
    elif part == "truthref":                            # section 2: a real sample the generator can reach
        for which in args or ["pd"]:                    # the lesson trains "pd"; "mono" is the same on T1 -> T1
            contrast = "pd" if which == "pd" else None
            name = f"truth-aligned reference ({which})"
            g["train_recipe"](name, *g["fan_steps"](aligned=True), contrast=contrast,
                              test=g["TEST_PD"] if contrast else g["TEST"])
            report(g, name)
    else:                                               # section 2, one modality: lr_D, spectral norm, gate
        for spec in args:
            lr, sn, thr = spec.split(",")
            g["LR_D"] = float(lr)
            options = {} if thr == "none" else {"d_threshold": float(thr)}
            name = f"lr_D {lr}, spectral norm {sn == '1'}, gate {thr}"
            g["train_recipe"](name, *g["fan_steps"](), sn=sn == "1", **options)
            report(g, name)
    print(f"done in {time.time() - g['T_START']:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
