"""The committed notebooks open in JupyterLab without being modified.

JupyterLab rewrites a notebook's kernelspec to the installed kernel's; if the committed one differs
(``display_name`` "Python 3" against ipykernel's "Python 3 (ipykernel)"), merely opening a lesson
marks it modified and autosave changes the tracked file.
"""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_lessons():
    assert len(NOTEBOOKS) >= 10


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_kernelspec_is_the_installed_ipykernel_spec(path):
    from jupyter_client.kernelspec import KernelSpecManager
    installed = KernelSpecManager().get_kernel_spec("python3")
    spec = json.loads(path.read_text())["metadata"]["kernelspec"]
    assert spec == {"display_name": installed.display_name, "language": installed.language, "name": "python3"}
