"""Displacement fields: composition, velocity integration, Jacobians, point transport and label
resampling.

Part of :mod:`course_lib.spatial` (introduced in lesson 01).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import (check_field, check_int, check_labels, check_min_size, check_option, check_spatial_match,
                       check_tensor, promote)
from .grid import ALIGN_CORNERS, _to_grid, _warp, identity_grid, warp



def compose(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Displacement of "warp by ``first``, then warp the result by ``second``".

    ``warp(warp(img, first), second) ≈ warp(img, compose(first, second))``; as maps,
    ``x ↦ x + second(x) + first(x + second(x))`` (the backward map of ``first`` evaluated after
    that of ``second``). Both ``(N, ndim, *spatial)`` in voxels; either batch may be 1 (it is
    repeated), and different floating dtypes give the common dtype.
    """
    check_field("compose", "first", first)
    check_field("compose", "second", second)
    check_spatial_match("compose", "first", first, "second", second)
    return second + warp(first, second)


def integrate_velocity(velocity: torch.Tensor, steps: int = 7) -> torch.Tensor:
    """Scaling and squaring: the displacement of ``exp(v)`` for a stationary velocity field.

    ``u_0 = v / 2**steps``; then ``steps`` times ``u ← compose(u, u)``. For smooth ``v`` the result
    is diffeomorphic (det J > 0) and ``integrate_velocity(-v)`` is its inverse.

    References: Arsigny et al. 2006; Dalca et al. 2018 (MICCAI), 2019 (MedIA).
    """
    check_field("integrate_velocity", "velocity", velocity)
    steps = check_int("integrate_velocity", "steps", steps, minimum=0)
    return _integrate(velocity, steps)


def _integrate(velocity: torch.Tensor, steps: int) -> torch.Tensor:
    """:func:`integrate_velocity` without the input checks (see :func:`_warp`)."""
    u = velocity / (2 ** steps)
    for _ in range(steps):
        u = u + _warp(u, u)
    return u


def jacobian_determinant(displacement: torch.Tensor) -> torch.Tensor:
    """Determinant of the Jacobian of ``x ↦ x + u(x)``: ``(N, *spatial)``.

    Derivatives by central differences inside the image and one-sided differences at the border
    (``torch.gradient``), exact for fields that are quadratic polynomials at interior voxels.
    Values ≤ 0 mark folding.
    """
    return _jacobian_determinant("jacobian_determinant", displacement)


def _jacobian_determinant(fn: str, displacement) -> torch.Tensor:
    check_field(fn, "displacement", displacement)
    check_min_size(fn, "displacement", displacement, 2)
    ndim = displacement.shape[1]
    # grads[i][j] = d u_i / d x_j, each (N, *spatial)
    grads = [torch.gradient(displacement[:, i], dim=tuple(range(1, ndim + 1))) for i in range(ndim)]
    j = [[grads[i][k] + (1.0 if i == k else 0.0) for k in range(ndim)] for i in range(ndim)]
    if ndim == 2:
        return j[0][0] * j[1][1] - j[0][1] * j[1][0]
    return (j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1])
            - j[0][1] * (j[1][0] * j[2][2] - j[1][2] * j[2][0])
            + j[0][2] * (j[1][0] * j[2][1] - j[1][1] * j[2][0]))


def transform_points(points: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Map fixed-image points through the backward map: ``p ↦ p + u(p)`` (linear interpolation).

    Args:
        points: ``(N, P, ndim)`` voxel coordinates in the fixed image.
        displacement: ``(N, ndim, *spatial)`` voxels.

    Returns:
        ``(N, P, ndim)``: the corresponding moving-image coordinates, in the common dtype of
        ``points`` and ``displacement``.
    """
    fn = "transform_points"
    check_field(fn, "displacement", displacement)
    check_tensor(fn, "points", points, ndims=(3,), floating=True, finite=True)
    points, displacement = promote(points, displacement)
    ndim = displacement.shape[1]
    if points.shape[-1] != ndim or points.shape[0] not in (1, displacement.shape[0]):
        raise ValueError(f"{fn}: points must be (N, P, {ndim}) with N = 1 or {displacement.shape[0]} (the batch "
                         f"of displacement {tuple(displacement.shape)}), got {tuple(points.shape)}")
    n = displacement.shape[0]
    pts = points.expand(n, -1, -1).to(displacement.dtype)
    coords = pts.transpose(1, 2).reshape(n, ndim, -1, *([1] * (ndim - 1)))   # (N, ndim, P, 1[, 1])
    grid = _to_grid(coords, displacement.shape[2:])                          # (N, P, 1[, 1], ndim)
    u = F.grid_sample(displacement, grid, mode="bilinear", padding_mode="border", align_corners=ALIGN_CORNERS)
    return pts + u.view(n, ndim, -1).transpose(1, 2)


def warp_labels(labels: torch.Tensor, displacement: torch.Tensor, mode: str = "linear") -> torch.Tensor:
    """Resample an integer label map through a backward displacement: the course's one way.

    ``mode="linear"`` (default) gives each voxel the label of largest total (bi/tri)linear weight
    among the ``2**ndim`` grid voxels around ``x + u(x)``: the argmax of the linearly warped one-hot
    maps, computed without building them (ties go to the smaller label). Thin structures survive
    better than with ``mode="nearest"`` (the label of the closest voxel), which shifts boundaries by
    up to half a voxel each time it is applied. Outside the image the border labels continue
    (``padding="border"``, as :func:`warp`).

    Args:
        labels: ``(N, 1, *spatial)`` integer label map (int or long dtype).
        displacement: ``(N, ndim, *spatial)`` floating field in voxels; either batch may be 1.
        mode: ``"linear"`` or ``"nearest"``.

    Returns:
        ``(max N, 1, *spatial)`` labels of ``labels``' dtype.
    """
    fn = "warp_labels"
    check_labels(fn, "labels", labels)
    check_field(fn, "displacement", displacement)
    check_spatial_match(fn, "labels", labels, "displacement", displacement)
    check_option(fn, "mode", mode, ("linear", "nearest"))
    return _warp_labels(labels, displacement, mode)


def _warp_labels(labels: torch.Tensor, displacement: torch.Tensor, mode: str = "linear") -> torch.Tensor:
    """:func:`warp_labels` without its checks (the simulator's own fields and templates)."""
    if mode == "nearest":
        return _warp(labels, displacement, mode="nearest")
    shape = labels.shape[2:]
    ndim = len(shape)
    n = max(labels.shape[0], displacement.shape[0])
    coords = identity_grid(shape, displacement.device, displacement.dtype) + displacement
    lo, frac = [], []
    for i, size in enumerate(shape):
        c = coords[:, i].clamp(0, size - 1)
        f = c.floor()
        lo.append(f.long().clamp(max=max(size - 2, 0)))
        frac.append(c - lo[-1])
    flat = labels.reshape(labels.shape[0], -1)
    if flat.shape[0] != n:
        flat = flat.expand(n, -1)
    corner_labels, corner_weights = [], []
    for corner in range(2 ** ndim):
        index = torch.zeros_like(lo[0])
        weight = torch.ones_like(frac[0])
        for i, size in enumerate(shape):
            bit = (corner >> (ndim - 1 - i)) & 1
            idx = (lo[i] + bit).clamp(max=size - 1)
            index = index * size + idx
            weight = weight * (frac[i] if bit else 1 - frac[i])
        index = index.expand(n, *index.shape[1:]).reshape(n, -1)
        corner_labels.append(torch.gather(flat, 1, index))
        corner_weights.append(weight.expand(n, *weight.shape[1:]).reshape(n, -1))
    # each corner's label scores the total weight of the corners that carry it; the best score
    # wins, ties (within rounding) to the smaller label; one corner at a time keeps memory at 2^d maps
    out = best = None
    for lab in corner_labels:
        score = sum(w * (other == lab) for other, w in zip(corner_labels, corner_weights))
        if out is None:
            out, best = lab, score
            continue
        better = (score > best + 1e-6) | ((score >= best - 1e-6) & (lab < out))
        out = torch.where(better, lab, out)
        best = torch.where(better, score, best)
    return out.reshape(n, 1, *shape).to(labels.dtype)

