"""The data cache: where generated data lives, its manifest of checksums and its verification.

Part of :mod:`course_lib.data` (introduced in lesson 00). Files are built once, stored under
``data/cache`` (or ``$COURSE_DATA_DIR``) and summarised in a manifest; :func:`verify_cache` compares
them with committed summaries within a floating-point tolerance (see ``data/README.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from .._checks import check_number

#: version of the cache layout, part of every cached file's name
_CACHE_VERSION = 1
#: the repository root (course_lib/data/ is two levels below it)
_ROOT = Path(__file__).resolve().parents[2]


def _require(package: str, pip_name: str):
    try:
        return __import__(package)
    except ImportError as exc:  # pragma: no cover - exercised only on broken installs
        raise ImportError(
            f"course_lib.data needs the '{pip_name}' package for the course data; "
            f"install it with: pip install {pip_name}  (or re-run scripts/setup_env.sh)"
        ) from exc




def cache_dir() -> Path:
    """Where generated data lives: ``$COURSE_DATA_DIR`` or ``<repo>/data/cache``."""
    path = Path(os.environ.get("COURSE_DATA_DIR") or _ROOT / "data" / "cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


#: committed summaries of the course data, made on the machine the course is maintained on
REFERENCE = _ROOT / "data" / "reference_summaries.json"
#: relative tolerance of :func:`verify_cache` (see data/README.md: rebuilt on another CPU, float
#: results differ in the last bits; a different package version or a bug changes far more)
VERIFY_RTOL = 1e-4


def _summary(arrays: dict) -> dict:
    """Per array: shape, dtype and float64 sum, sum of squares, min and max (rounding-tolerant)."""
    out = {}
    for k in sorted(arrays):
        a = np.asarray(arrays[k])
        f = a.astype(np.float64)
        out[k] = {"shape": list(a.shape), "dtype": str(a.dtype), "sum": float(f.sum()),
                  "sumsq": float((f * f).sum()), "min": float(f.min()) if f.size else 0.0,
                  "max": float(f.max()) if f.size else 0.0}
    return out


def _entry_key(name: str, entry: dict) -> str:
    """A machine-independent name of a cached file (pair-set file names hash the template bytes)."""
    if not name.startswith("pairs_"):
        return name
    params = {k: v for k, v in entry.items() if k not in ("sha256", "summary")}
    return "pairs " + json.dumps(params, sort_keys=True)


def _load_cached(path: Path) -> dict:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    return {k: v.numpy() for k, v in torch.load(path, weights_only=True).items()}


def cache_summaries() -> dict:
    """Summaries (see :func:`verify_cache`) of every file of the cache, by machine-independent key."""
    path = cache_dir() / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    return {_entry_key(n, e): _summary(_load_cached(cache_dir() / n))
            for n, e in sorted(manifest.items()) if (cache_dir() / n).exists()}


def verify_cache(reference: Path | str | None = None, rtol: float = VERIFY_RTOL) -> dict:
    """Check the cache against the committed reference summaries, within a tolerance.

    Every cached file that the reference knows must have the same arrays, shapes and dtypes, and
    sums, sums of squares, minima and maxima equal within ``rtol`` (relative to the array's
    magnitude). Files built on another CPU differ from ours only by floating-point rounding in the
    last bits (different vector instructions, summation order), far below the tolerance.

    Returns ``{"checked": [...], "not_cached": [...], "unknown": [...]}``; raises ``ValueError``
    naming the file, the array and the quantity that differs.
    """
    fn = "verify_cache"
    if reference is not None and not isinstance(reference, (str, Path)):
        raise TypeError(f"{fn}: reference must be a str or pathlib.Path (or None), got {type(reference).__name__}")
    check_number(fn, "rtol", rtol, minimum=0, positive=True)
    ref_path = Path(reference) if reference is not None else REFERENCE
    if not ref_path.exists():
        raise FileNotFoundError(f"verify_cache: reference summaries not found at {ref_path}")
    ref = json.loads(ref_path.read_text())
    ours = cache_summaries()
    problems = []
    for key, arrays in ours.items():
        if key not in ref:
            continue
        for name, want in ref[key].items():
            got = arrays.get(name)
            if got is None:
                problems.append(f"{key}: array {name!r} missing")
                continue
            if got["shape"] != want["shape"] or got["dtype"] != want["dtype"]:
                problems.append(f"{key}: {name} is {got['dtype']}{got['shape']}, expected {want['dtype']}{want['shape']}")
                continue
            scale = max(abs(want["min"]), abs(want["max"]), 1e-12)
            n = max(1, int(np.prod(want["shape"])))
            for q, tol in (("sum", rtol * scale * n), ("sumsq", rtol * scale * scale * n),
                           ("min", rtol * scale), ("max", rtol * scale)):
                if abs(got[q] - want[q]) > tol:
                    problems.append(f"{key}: {name} {q} {got[q]:.9g}, expected {want[q]:.9g} (tolerance {tol:.3g})")
    if problems:
        raise ValueError("verify_cache: the course data differs from the reference beyond the tolerance:\n  "
                         + "\n  ".join(problems))
    return {"checked": sorted(k for k in ours if k in ref), "not_cached": sorted(k for k in ref if k not in ours),
            "unknown": sorted(k for k in ours if k not in ref)}


def _manifest_update(name: str, entry: dict) -> None:
    path = cache_dir() / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest[name] = entry
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _cached_npz(name: str, build, meta: dict) -> dict:
    """Load ``name`` from the cache or build it (dict of arrays), store it and record its checksum."""
    path = cache_dir() / f"{name}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    arrays = build()
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    _manifest_update(path.name, {"sha256": _sha256(arrays), **meta})
    return arrays

