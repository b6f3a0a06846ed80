"""Simulated subjects: random smooth deformations, affines, intensity changes and contrasts.

Part of :mod:`course_lib.data` (introduced in lesson 00). A subject is the template warped by a
random diffeomorphism (the exponential of a random smooth velocity field), with intensity
augmentation; tissues, mask and labels move with it, so the ground truth is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .._checks import (check_flags, check_image, check_int, check_labels, check_number, check_option,
                       check_size, check_tensor)
from ..spatial import (_bspline_field, _grid_size, _warp, _warp_labels, affine_to_displacement, compose,
                       gaussian_blur, integrate_velocity, rigid_matrix)
from .templates import Anatomy, template_slices


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
    """A random C² stationary velocity field ``(n, ndim, *shape)`` in voxels (float32).

    A cubic B-spline (:func:`course_lib.spatial.bspline_field`) with control points every
    ``spacing`` voxels. Its coefficients are white noise (drawn on the CPU from ``generator``, so
    the field does not depend on ``device``) smoothed over neighbouring control points (Gaussian,
    σ = 0.7 control points); the field is evaluated at full resolution on ``device`` and scaled so
    that its largest component is ``magnitude`` voxels. Being a cubic spline, it has continuous
    second derivatives: no kinks on the control grid. Integrate it with
    :func:`course_lib.spatial.integrate_velocity` for a diffeomorphism.
    """
    fn = "random_velocity"
    shape = check_size(fn, "shape", shape, (2, 3))
    spacing, magnitude = _velocity_options(fn, magnitude, spacing)
    n = check_int(fn, "n", n, minimum=1)
    _check_device(fn, device)
    g = _generator(generator, fn)
    coeffs = torch.randn(n, len(shape), *_grid_size(shape, spacing), generator=g).to(device)
    coeffs = gaussian_blur(coeffs, 0.7)
    v = _bspline_field(fn, coeffs, shape, spacing, shape)
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


def _warp_anatomy(a: Anatomy, disp: torch.Tensor, labels: bool = True) -> Anatomy:
    # the simulator's own fields and a checked template: the unchecked warps (same arithmetic as
    # spatial.warp and spatial.warp_labels, without their NaN scans, which cost about a fifth of a
    # simulated batch); labels are resampled the course's one way (warp_labels, linear mode)
    return Anatomy(image=_warp(a.image, disp), tissues=_warp(a.tissues, disp),
                   mask=(_warp(a.mask, disp) > 0.5).float(),
                   labels=_warp_labels(a.labels, disp) if labels else None)


def synthesize_subject(seed: int, template: Anatomy | None = None, magnitude: float = 3.0,
                       spacing: int = 12, affine: bool = False, augment: bool = True) -> Subject:
    """Simulate a subject from ``template`` (default: the 2D axial slice) and an int ``seed``.

    The template is warped by ``exp(v)`` for a random C² velocity (:func:`random_velocity`:
    ``magnitude`` voxels, a cubic B-spline with control points every ``spacing`` voxels), optionally after a small random affine; the image then
    gets intensity augmentation; tissues, mask and labels move with it.
    """
    fn = "synthesize_subject"
    g = _generator(seed, fn, "seed")
    spacing, magnitude = _velocity_options(fn, magnitude, spacing)
    check_flags(fn, affine=affine, augment=augment)
    template = template_slices() if template is None else _check_template(fn, template)
    disp = integrate_velocity(random_velocity(template.shape, g, magnitude, spacing))
    if affine:
        disp = compose(affine_to_displacement(random_affine(template.shape, g), template.shape), disp)
    a = _warp_anatomy(template, disp)
    if augment:
        a = replace(a, image=augment_intensity(a.image, g, mask=a.mask))
    return Subject(anatomy=a, displacement=disp, seed=int(seed))

