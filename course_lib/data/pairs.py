"""Moving/fixed pairs of simulated subjects with their exact ground-truth displacement.

Part of :mod:`course_lib.data` (introduced in lesson 00): :func:`pair_batch` for fresh batches on
any device, :class:`PairDataset` for the fixed, cached train/val/test splits.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from .._checks import check_flags, check_int, check_number, check_option
from ..spatial import _integrate, _warp, affine_to_displacement, compose
from .simulation import (_check_device, _check_template, _generator, _velocity_options,
                         _warp_anatomy, augment_intensity, random_affine, random_velocity, synthesize_contrast)
from .store import _CACHE_VERSION, _manifest_update, _sha256, cache_dir
from .templates import Anatomy, template_slices

#: Version of the simulation, part of every cached pair file's key: 2 since the velocity fields are
#: cubic B-splines (C²) and labels are resampled with warp_labels (1: bilinear noise, nearest labels).
_SIMULATOR = 2

#: First seed of each split. Held-out seeds never overlap training seeds (a split holds < 1e6).
SPLIT_SEEDS = {"train": 0, "val": 1_000_000, "test": 2_000_000}


def _check_pair_options(fn: str, magnitude, spacing, subject_magnitude, affine, affine_kwargs, augment,
                        contrast) -> None:
    """The simulation options shared by :func:`pair_batch` and :class:`PairDataset`."""
    _velocity_options(fn, magnitude, spacing)
    _velocity_options(fn, subject_magnitude, spacing, "subject_magnitude")
    check_flags(fn, affine=affine, augment=augment)
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
                    contrast: str | None, labels: bool = True) -> dict:
    """``n`` moving/fixed pairs on ``template``'s device, random numbers drawn from ``g`` (CPU);
    without ``labels`` the label maps are neither resampled nor returned (the random numbers drawn
    are the same, so the images are too)."""
    shape, dev = template.shape, template.image.device
    u_m = _integrate(random_velocity(shape, g, subject_magnitude, spacing, n=n, device=dev), 7)
    d = _integrate(random_velocity(shape, g, magnitude, spacing, n=n, device=dev), 7)
    if affine:
        d = compose(affine_to_displacement(random_affine(shape, g, n=n, **affine_kwargs).to(dev), shape), d)
    mov = _warp_anatomy(template, u_m, labels)
    fix = _warp_anatomy(template, d + _warp(u_m, d), labels)              # compose(u_m, d), unchecked
    mov_img, fix_img = mov.image, fix.image
    if contrast is not None:
        mov_img = synthesize_contrast(mov.tissues, contrast, g)
    if augment:
        mov_img = augment_intensity(mov_img, g, mask=mov.mask)
        fix_img = augment_intensity(fix_img, g, mask=fix.mask)
    out = {"moving": mov_img, "fixed": fix_img, "moving_labels": mov.labels,
           "fixed_labels": fix.labels, "moving_mask": mov.mask, "fixed_mask": fix.mask,
           "displacement": d}
    if not labels:
        del out["moving_labels"], out["fixed_labels"]
    return out


def pair_batch(n: int, generator=0, template: Anatomy | None = None, device=None,
               magnitude: float = 4.0, spacing: int = 12, subject_magnitude: float = 2.0,
               affine: bool = False, affine_kwargs: dict | None = None, augment: bool = True,
               contrast: str | None = None, labels: bool = True) -> dict:
    """A fresh batch of ``n`` simulated pairs generated directly on ``device`` (no cache).

    The same simulation as :class:`PairDataset` (same arguments and item keys, with a batch axis:
    ``moving`` ``(n, 1, *spatial)``, …, ``displacement`` ``(n, ndim, *spatial)``), for training
    on unlimited data, e.g. 3D volumes on a GPU where caching hundreds of 1 mm pairs would take
    tens of GB. Coarse random numbers come from ``generator`` (an int seed or a CPU
    ``torch.Generator``, advanced by each call), everything at full resolution runs on ``device``.
    ``labels=False`` skips the label maps (no ``moving_labels``/``fixed_labels`` keys; the images
    are unchanged): training that never reads them saves about a third of the simulation.
    """
    fn = "pair_batch"
    n = check_int(fn, "n", n, minimum=1)
    g = _generator(generator, fn)
    _check_device(fn, device)
    _check_pair_options(fn, magnitude, spacing, subject_magnitude, affine, affine_kwargs, augment, contrast)
    check_flags(fn, labels=labels)
    template = template_slices() if template is None else _check_template(fn, template)
    if device is not None:
        template = template.to(device)
    return _simulate_pairs(template, n, g, magnitude, spacing, subject_magnitude, affine,
                           affine_kwargs or {}, augment, contrast, labels)


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
        check_flags(fn, cache=cache)
        if not isinstance(template_name, str):
            raise TypeError(f"{fn}: template_name must be a str, got {type(template_name).__name__}")
        self.template = template_slices() if template is None else _check_template(fn, template)
        self.n, self.split = n, split
        self.params = dict(n=n, split=split, magnitude=magnitude, spacing=spacing,
                           subject_magnitude=subject_magnitude, affine=affine,
                           affine_kwargs=affine_kwargs or {}, augment=augment, contrast=contrast,
                           shape=list(self.template.shape), template=template_name, version=_CACHE_VERSION,
                           simulator=_SIMULATOR)
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

