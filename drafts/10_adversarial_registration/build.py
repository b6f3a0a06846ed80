from pathlib import Path
HERE = Path(__file__).resolve().parent
# builds notebooks/10_adversarial_registration.ipynb from the cell list below
import nbformat, sys
from nbformat.v4 import new_notebook, new_markdown_cell, new_code_cell
CELLS = []
def md(s): CELLS.append(new_markdown_cell(s.strip("\n")))
def code(s, hidden=False, raises=False):
    c = new_code_cell(s.strip("\n"))
    if hidden: c.metadata["jupyter"] = {"source_hidden": True}
    if raises: c.metadata["tags"] = ["raises-exception"]
    CELLS.append(c)
exec(open(sys.argv[1]).read())
import json
meta = json.load(open(HERE.parents[1] / "notebooks" / "09_weak_and_dual_supervision.ipynb"))["metadata"]
nb = new_notebook(cells=CELLS, metadata={k: meta[k] for k in ("kernelspec", "language_info")})
nbformat.write(nb, sys.argv[2])
print(len(CELLS), "cells")
