from pathlib import Path
HERE = Path(__file__).resolve().parent
# concatenates the code cells into a runnable script for a quick test (Agg backend, no magics)
import sys
ns = {}
for part in ("code_part1.py", "code_part2.py", "code_part3.py", "code_part4.py"):
    exec(open(HERE / part).read(), ns)
order = ["SETUP", "DATA", "AFFINE", "HARNESS", "LNCC", "EX1_SOL", "FAN", "TABLE1", "FIG1", "PRE1", "CP1", "VERDICT", "CP2",
         "MULTI", "FIG_MULTI", "CP3", "YAN_DATA", "EX2_SOL", "YAN", "YAN_SCORE", "FIG_YAN", "CP4",
         "HU_SETUP", "EX3_SOL", "HU", "FIG_HU", "PRE5", "CP5", "STATS", "CP6", "TIMING"]
only = sys.argv[1].split(",") if len(sys.argv) > 1 else order
out = ["import matplotlib; matplotlib.use('Agg')"]
for k in order:
    if k not in only and k not in ("SETUP", "DATA", "HARNESS"):
        continue
    src = ns[k].replace("%matplotlib inline", "")
    out.append(f"print('=== {k}', flush=True)\n" + (
        "try:\n" + "\n".join("    " + l for l in src.strip().splitlines()) + "\nexcept AssertionError as e:\n    print('ASSERTION', e)"
        if k.startswith("CP") else src))
open(HERE / "test10.py", "w").write("\n".join(out))
