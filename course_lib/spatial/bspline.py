"""The cubic B-spline: a C² displacement from coefficients on a control grid.

Part of :mod:`course_lib.spatial`. Lesson 03 introduces it as the free-form deformation's transform
model (:func:`course_lib.classical.register_dense` with ``model="bspline"``); the data simulator
draws its random velocity fields with it, so ground-truth deformations are C² too.

The coefficients ``c_k`` are not displacements at the knots: a cubic B-spline approximates, so
``u`` at knot ``k`` is ``Σ_j c_j B(k - j)`` (weights 1/6, 4/6, 1/6 per axis; in 2D a lone
coefficient shows ``(4/6)² ≈ 0.44`` of itself at its own knot).
"""

from __future__ import annotations

import torch

from .._checks import check_int, check_size, check_tensor

__all__ = ["bspline_field", "bspline_grid_size"]


def _bspline_basis(t: torch.Tensor) -> torch.Tensor:
    """Cubic B-spline ``B(t)``, support ``|t| < 2``."""
    a = t.abs()
    return torch.where(a < 1, (4 - 6 * a ** 2 + 3 * a ** 3) / 6,
                       torch.where(a < 2, (2 - a) ** 3 / 6, torch.zeros_like(a)))


def bspline_grid_size(shape, spacing: int) -> tuple[int, ...]:
    """Control-grid size for an image of ``shape`` with control points every ``spacing`` voxels
    (one extra point beyond each border, as a cubic spline needs)."""
    shape = check_size("bspline_grid_size", "shape", shape, (2, 3))
    spacing = check_int("bspline_grid_size", "spacing", spacing, minimum=1)
    return _grid_size(shape, spacing)


def _grid_size(shape, spacing: int) -> tuple[int, ...]:
    return tuple(int(-(-(n - 1) // spacing)) + 3 for n in shape)


def bspline_field(coeffs: torch.Tensor, shape, spacing: int, full_shape=None) -> torch.Tensor:
    """Dense displacement ``(N, ndim, *shape)`` of a cubic B-spline free-form deformation.

    ``u(x) = Σ_k c_k Π_i B((x_i - (k_i - 1) s) / s)`` with control points every ``s = spacing``
    voxels of the full-resolution grid ``full_shape`` (default ``shape``). When ``shape`` is a
    coarser pyramid level, its voxels are placed on the full grid (``align_corners=True``) and the
    field is expressed in that level's voxels. Zero coefficients give the zero field.

    References: Rueckert et al. 1999 (IEEE TMI 18(8)).
    """
    fn = "bspline_field"
    shape = check_size(fn, "shape", shape, (2, 3))
    ndim = len(shape)
    full_shape = shape if full_shape is None else check_size(fn, "full_shape", full_shape, ndim)
    spacing = check_int(fn, "spacing", spacing, minimum=1)
    check_tensor(fn, "coeffs", coeffs, floating=True, finite=True)
    return _bspline_field(fn, coeffs, shape, spacing, full_shape)


def _bspline_field(fn: str, coeffs, shape, spacing: int, full_shape) -> torch.Tensor:
    """:func:`bspline_field` after the checks of its arguments (the shape of ``coeffs`` is checked here)."""
    ndim = len(shape)
    grid = _grid_size(full_shape, spacing)
    if coeffs.dim() != ndim + 2 or coeffs.shape[1] != ndim or tuple(coeffs.shape[2:]) != grid or coeffs.shape[0] < 1:
        raise ValueError(f"{fn}: coeffs must be (N, {ndim}, *{grid}), got {tuple(coeffs.shape)}")
    mats, scales = [], []
    for m, n, k in zip(shape, full_shape, coeffs.shape[2:]):
        x = torch.arange(m, dtype=coeffs.dtype, device=coeffs.device) * ((n - 1) / max(m - 1, 1))
        knots = (torch.arange(k, dtype=coeffs.dtype, device=coeffs.device) - 1) * spacing
        mats.append(_bspline_basis((x[:, None] - knots[None]) / spacing))         # (m, k)
        scales.append((m - 1) / max(n - 1, 1))
    if ndim == 2:
        u = torch.einsum("ncab,ia,jb->ncij", coeffs, *mats)
    else:
        u = torch.einsum("ncabd,ia,jb,kd->ncijk", coeffs, *mats)
    scale = torch.tensor(scales, dtype=u.dtype, device=u.device).view(1, ndim, *([1] * ndim))
    return u * scale
