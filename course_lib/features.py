"""Feature-based registration: key points, descriptors, matching, RANSAC, thin-plate splines.

Introduced in lesson 03 and reused by lesson 04 (learned descriptors plug into the same matching).
Points are ``(P, ndim)`` float voxel coordinates of one image (no batch axis), in the course's
axis order. Point sets and descriptors of different floating dtypes are promoted to their common
dtype (the dtype policy of :mod:`course_lib._checks`); patches and descriptors sampled from an
image keep the image's dtype, as :func:`course_lib.spatial.warp` does. A match pairs a *fixed*-image point with a *moving*-image point, so the backward map
of the course sends fixed points to moving points: ``ransac_affine(fixed_pts, moving_pts)`` returns
a ``moving_from_fixed`` matrix for ``spatial.warp_affine``, and :func:`tps_displacement` turns
``moving_pts - fixed_pts`` at the fixed points into a dense backward displacement.

References: Harris & Stephens 1988 (corners); Lowe 2004 (ratio test, gradient-orientation
histograms); Fischler & Bolles 1981 (RANSAC); Bookstein 1989 (thin-plate splines);
Rohr et al. 2001 (landmark-based elastic registration).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_image, check_int, check_number, check_size, check_tensor, promote
from .spatial import ALIGN_CORNERS, gaussian_blur, identity_grid, to_normalized_grid

__all__ = ["detect_keypoints", "sample_patches", "patch_descriptor", "gradient_histogram_descriptor",
           "match_descriptors", "fit_affine", "ransac_affine", "tps_displacement"]


def _single(fn: str, image: torch.Tensor) -> torch.Tensor:
    check_image(fn, "image", image)
    if image.shape[0] != 1 or image.shape[1] != 1:
        raise ValueError(f"{fn}: image must be one single-channel image (1, 1, *spatial), got {tuple(image.shape)}")
    return image


def _gradients(img: torch.Tensor) -> list[torch.Tensor]:
    """Central-difference gradient along each spatial axis, same shape as ``img`` (N, C, *spatial)."""
    return list(torch.gradient(img, dim=tuple(range(2, img.dim()))))


def detect_keypoints(image: torch.Tensor, n: int = 100, sigma: float = 1.5, min_distance: int = 4,
                     mask: torch.Tensor | None = None, border: int = 4) -> torch.Tensor:
    """Corner-like key points by the Harris/Förstner structure-tensor response.

    ``R = det(S) - k · trace(S)^ndim`` with ``S`` the Gaussian-smoothed (σ = ``sigma``) outer
    product of the image gradient and ``k = 0.04`` in 2D, ``k = 0.005`` in 3D (``det(S) ≤
    (trace(S)/ndim)^ndim``, so ``R > 0`` needs ``k < 1/4`` in 2D but ``k < 1/27`` in 3D; 0.005 is
    the 2D choice scaled by the same fraction of that bound). Local maxima at least
    ``min_distance`` voxels apart, away from the ``border`` and inside ``mask`` (if given); the
    ``n`` strongest are returned as ``(P, ndim)``.
    """
    fn = "detect_keypoints"
    img = _single(fn, image)
    n = check_int(fn, "n", n, minimum=1)
    sigma = check_number(fn, "sigma", sigma, minimum=0)
    min_distance = check_int(fn, "min_distance", min_distance, minimum=0)
    border = check_int(fn, "border", border, minimum=0)
    if mask is not None:
        check_tensor(fn, "mask", mask, finite=True)
        if mask.shape != img.shape:
            raise ValueError(f"{fn}: mask must have the image's shape {tuple(img.shape)}, got {tuple(mask.shape)}")
    ndim = img.dim() - 2
    g = _gradients(gaussian_blur(img, 1.0))
    S = [[gaussian_blur(g[i] * g[j], sigma) for j in range(ndim)] for i in range(ndim)]
    if ndim == 2:
        det = S[0][0] * S[1][1] - S[0][1] ** 2
    else:
        det = (S[0][0] * (S[1][1] * S[2][2] - S[1][2] ** 2) - S[0][1] * (S[0][1] * S[2][2] - S[1][2] * S[0][2])
               + S[0][2] * (S[0][1] * S[1][2] - S[1][1] * S[0][2]))
    trace = sum(S[i][i] for i in range(ndim))
    resp = det - (0.04 if ndim == 2 else 0.005) * trace ** ndim
    pool = F.max_pool2d if ndim == 2 else F.max_pool3d
    k = 2 * min_distance + 1
    peaks = (resp == pool(resp, k, stride=1, padding=min_distance)) & (resp > 0)
    if border > 0:
        inner = torch.zeros_like(peaks)
        inner[(slice(None), slice(None)) + tuple(slice(border, s - border) for s in img.shape[2:])] = True
        peaks &= inner
    if mask is not None:
        peaks &= mask > 0
    idx = peaks[0, 0].nonzero()
    if len(idx) == 0:
        return torch.zeros(0, ndim, dtype=img.dtype)
    strength = resp[0, 0][tuple(idx.T)]
    order = strength.argsort(descending=True)[:n]
    return idx[order].to(img.dtype)


def sample_patches(image: torch.Tensor, points: torch.Tensor, radius: int) -> torch.Tensor:
    """Patches of side ``2·radius + 1`` centred on ``points`` (sub-voxel, linear interpolation):
    ``(P, C, *[2r+1]*ndim)``. Outside the image, border values are repeated (zero points give
    zero patches)."""
    return _sample_patches("sample_patches", image, points, radius)


def _sample_patches(fn: str, image, points, radius) -> torch.Tensor:
    check_image(fn, "image", image)
    if image.shape[0] != 1:
        raise ValueError(f"{fn}: image must have batch size 1, got {tuple(image.shape)}")
    ndim = image.dim() - 2
    check_tensor(fn, "points", points, ndims=(2,), floating=True, finite=True)
    if points.shape[1] != ndim:
        raise ValueError(f"{fn}: points must be (P, {ndim}), got {tuple(points.shape)}")
    radius = check_int(fn, "radius", radius, minimum=0)
    p = points.shape[0]
    offs = identity_grid([2 * radius + 1] * ndim, image.device, image.dtype) - radius   # (1, ndim, *patch)
    coords = points.to(image.dtype).view(p, ndim, *([1] * ndim)) + offs                # (P, ndim, *patch)
    # all patches as one "image-sized" batch of sample positions on the source image
    grid = to_normalized_grid(coords, sizes=image.shape[2:])                          # (P, *patch, ndim)
    src = image.expand(p, *image.shape[1:])
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=ALIGN_CORNERS)


def patch_descriptor(image: torch.Tensor, points: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """Raw intensity patch, zero mean and unit norm: ``(P, (2r+1)^ndim)``. Comparing two of them by
    dot product is their normalized cross-correlation."""
    fn = "patch_descriptor"
    d = _sample_patches(fn, _single(fn, image), points, radius).flatten(1)
    d = d - d.mean(1, keepdim=True)
    return d / d.norm(dim=1, keepdim=True).clamp_min(1e-8)


def gradient_histogram_descriptor(image: torch.Tensor, points: torch.Tensor, radius: int = 8,
                                  cells: int = 2, bins: int = 8) -> torch.Tensor:
    """A SIFT/HOG-like 2D descriptor: histograms of gradient orientation (``bins``) weighted by
    gradient magnitude, on a ``cells × cells`` grid of the patch, concatenated and normalized:
    ``(P, cells² · bins)``. Not rotation-normalized (fine for small rotations). 2D only."""
    fn = "gradient_histogram_descriptor"
    img = _single(fn, image)
    if img.dim() != 4:
        raise ValueError(f"{fn}: 2D images only (1, 1, H, W), got {tuple(img.shape)}")
    check_tensor(fn, "points", points, ndims=(2,), floating=True, finite=True)
    if points.shape[1] != 2:
        raise ValueError(f"{fn}: points must be (P, 2), got {tuple(points.shape)}")
    radius = check_int(fn, "radius", radius, minimum=0)
    cells = check_int(fn, "cells", cells, minimum=1)
    bins = check_int(fn, "bins", bins, minimum=1)
    g0, g1 = _gradients(gaussian_blur(img, 0.8))
    mag = torch.sqrt(g0 ** 2 + g1 ** 2)
    ang = torch.atan2(g1, g0)                                               # (-π, π]
    # soft-assign each voxel's orientation to bins -> (1, bins, H, W) weighted by magnitude
    centers = torch.arange(bins, dtype=img.dtype, device=img.device) * (2 * math.pi / bins) - math.pi
    diff = torch.remainder(ang - centers.view(1, -1, 1, 1) + math.pi, 2 * math.pi) - math.pi
    w = torch.clamp(1 - diff.abs() / (2 * math.pi / bins), min=0) * mag
    patches = _sample_patches(fn, w, points, radius)                        # (P, bins, s, s)
    s = 2 * radius + 1
    pooled = F.adaptive_avg_pool2d(patches, cells)                           # (P, bins, cells, cells)
    d = pooled.flatten(1) * s * s
    d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-8)
    d = d.clamp(max=0.2)                                                     # Lowe's clipping
    return d / d.norm(dim=1, keepdim=True).clamp_min(1e-8)


def match_descriptors(desc_a: torch.Tensor, desc_b: torch.Tensor, ratio: float = 0.8,
                      cross_check: bool = True) -> torch.Tensor:
    """Nearest-neighbour matches by Euclidean distance, with Lowe's ratio test.

    Returns ``(M, 2)`` index pairs ``(i in a, j in b)``: ``j`` is ``i``'s nearest neighbour, closer
    than ``ratio`` × the second nearest, and (``cross_check``) ``i`` is ``j``'s nearest neighbour.
    """
    fn = "match_descriptors"
    check_tensor(fn, "desc_a", desc_a, ndims=(2,), floating=True, finite=True)
    check_tensor(fn, "desc_b", desc_b, ndims=(2,), floating=True, finite=True)
    if desc_a.shape[1] != desc_b.shape[1]:
        raise ValueError(f"{fn}: descriptors must have the same length (desc_a and desc_b), got {desc_a.shape[1]} and {desc_b.shape[1]}")
    ratio = check_number(fn, "ratio", ratio, minimum=0, positive=True, maximum=1)
    if not isinstance(cross_check, bool):
        raise TypeError(f"{fn}: cross_check must be a bool, got {type(cross_check).__name__}")
    desc_a, desc_b = promote(desc_a, desc_b)
    if len(desc_a) == 0 or len(desc_b) < 2:
        return torch.zeros(0, 2, dtype=torch.long)
    dist = torch.cdist(desc_a, desc_b)
    two = dist.topk(2, dim=1, largest=False)
    keep = two.values[:, 0] < ratio * two.values[:, 1]
    j = two.indices[:, 0]
    if cross_check:
        keep &= dist.argmin(0)[j] == torch.arange(len(desc_a))
    i = keep.nonzero()[:, 0]
    return torch.stack([i, j[i]], dim=1)


def _check_pairs(fn: str, src, dst) -> tuple[int, int]:
    """Corresponding point sets ``(P, ndim)``, ``ndim`` 2 or 3, with at least ``ndim + 1`` pairs;
    returns ``(P, ndim)``."""
    check_tensor(fn, "src", src, ndims=(2,), floating=True, finite=True)
    check_tensor(fn, "dst", dst, ndims=(2,), floating=True, finite=True)
    if src.shape != dst.shape:
        raise ValueError(f"{fn}: src and dst must have the same shape, got {tuple(src.shape)} and {tuple(dst.shape)}")
    p, ndim = src.shape
    if ndim not in (2, 3):
        raise ValueError(f"{fn}: src and dst must be (P, 2) or (P, 3) points, got {tuple(src.shape)}")
    if p < ndim + 1:
        raise ValueError(f"{fn}: need at least {ndim + 1} point pairs (src and dst) in {ndim}D, got {p}")
    return p, ndim


def fit_affine(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares affine ``M`` with ``dst ≈ M src`` (homogeneous ``(ndim+1, ndim+1)``, in the
    common dtype of ``src`` and ``dst``)."""
    p, ndim = _check_pairs("fit_affine", src, dst)
    src, dst = promote(src, dst)
    return _fit_affine(src, dst)


def _fit_affine(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    p, ndim = src.shape
    X = torch.cat([src, torch.ones(p, 1, dtype=src.dtype)], dim=1).double()       # (P, ndim+1)
    sol = torch.linalg.lstsq(X, dst.double()).solution                             # (ndim+1, ndim)
    M = torch.eye(ndim + 1, dtype=torch.float64)
    M[:ndim] = sol.T
    return M.to(src.dtype)


def ransac_affine(src: torch.Tensor, dst: torch.Tensor, iterations: int = 500, threshold: float = 2.0,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust affine fit: ``(matrix, inliers)`` with ``dst ≈ matrix · src`` on the inliers.

    Repeatedly fits an affine to ``ndim + 1`` random pairs, counts the pairs within ``threshold``
    voxels, keeps the largest consensus and refits it by least squares (Fischler & Bolles 1981).
    With ``src`` = fixed points and ``dst`` = moving points the matrix is ``moving_from_fixed``.
    """
    fn = "ransac_affine"
    p, ndim = _check_pairs(fn, src, dst)
    iterations = check_int(fn, "iterations", iterations, minimum=1)
    threshold = check_number(fn, "threshold", threshold, minimum=0, positive=True)
    seed = check_int(fn, "seed", seed)
    src, dst = promote(src, dst)
    k = ndim + 1
    g = torch.Generator().manual_seed(seed)
    X = torch.cat([src, torch.ones(p, 1, dtype=src.dtype)], dim=1).double()
    Y = dst.double()
    # all minimal samples at once: (I, k) indices -> solve (I, k, k) systems
    idx = torch.stack([torch.randperm(p, generator=g)[:k] for _ in range(iterations)])
    A, B = X[idx], Y[idx]                                                          # (I, k, k), (I, k, ndim)
    ok = torch.linalg.matrix_rank(A) == k
    best = torch.zeros(p, dtype=torch.bool)
    if ok.any():
        sols = torch.linalg.solve(A[ok], B[ok])                                      # (I', k, ndim)
        resid = torch.linalg.vector_norm(X @ sols - Y, dim=-1)                       # (I', P)
        counts = (resid < threshold).sum(1)
        best = resid[counts.argmax()] < threshold
    if best.sum() < k:
        best = torch.ones(p, dtype=torch.bool)
    M = _fit_affine(src[best], dst[best])
    inliers = torch.linalg.vector_norm((X @ M.double()[:ndim].T) - Y, dim=-1) < threshold
    if inliers.sum() >= k:
        M = _fit_affine(src[inliers], dst[inliers])
    return M, inliers


def _tps_kernel(r: torch.Tensor, ndim: int) -> torch.Tensor:
    if ndim == 2:
        return torch.where(r > 0, r ** 2 * torch.log(r.clamp_min(1e-12)), torch.zeros_like(r))
    return -r


def tps_displacement(points: torch.Tensor, values: torch.Tensor, shape, smoothing: float = 0.0) -> torch.Tensor:
    """Thin-plate-spline interpolation of vectors at scattered points to a dense field.

    Solves ``[[K + λI, P], [Pᵀ, 0]] [w; a] = [v; 0]`` with the TPS kernel (``r² log r`` in 2D,
    ``-r`` in 3D) and evaluates ``f(x) = Σ w_k φ(|x - p_k|) + a·[x, 1]`` on the grid. With
    ``smoothing`` λ = 0 it passes exactly through the ``values`` at the ``points``.

    Args:
        points: ``(P, ndim)`` voxel coordinates (e.g. fixed-image key points).
        values: ``(P, ndim)`` vectors there (e.g. ``moving_pts - fixed_pts``).
        shape: spatial shape of the output grid.
        smoothing: λ >= 0 (finite).

    Returns:
        ``(1, ndim, *shape)`` dense displacement, in the common dtype of ``points`` and ``values``.
    """
    fn = "tps_displacement"
    check_tensor(fn, "points", points, ndims=(2,), floating=True, finite=True)
    check_tensor(fn, "values", values, ndims=(2,), floating=True, finite=True)
    shape = check_size(fn, "shape", shape, (2, 3))
    smoothing = check_number(fn, "smoothing", smoothing, minimum=0)
    out_dtype = torch.promote_types(points.dtype, values.dtype)
    ndim = len(shape)
    if points.shape[1] != ndim or values.shape != points.shape:
        raise ValueError(f"{fn}: points and values must both be (P, {ndim}), got {tuple(points.shape)} and {tuple(values.shape)}")
    p = points.shape[0]
    if p < ndim + 1:
        raise ValueError(f"{fn}: need at least {ndim + 1} points in {ndim}D, got {p}")
    pts = points.double()
    dev = pts.device
    K = _tps_kernel(torch.cdist(pts, pts), ndim) + smoothing * torch.eye(p, dtype=torch.float64, device=dev)
    P = torch.cat([pts, torch.ones(p, 1, dtype=torch.float64, device=dev)], dim=1)
    top = torch.cat([K, P], dim=1)
    bottom = torch.cat([P.T, torch.zeros(ndim + 1, ndim + 1, dtype=torch.float64, device=dev)], dim=1)
    rhs = torch.cat([values.double().to(dev), torch.zeros(ndim + 1, ndim, dtype=torch.float64, device=dev)])
    coef = torch.linalg.lstsq(torch.cat([top, bottom]), rhs).solution               # (P + ndim + 1, ndim)
    w, a = coef[:p], coef[p:]
    grid = identity_grid(shape, device=dev, dtype=torch.float64).flatten(2)[0].T   # (V, ndim)
    out = []
    for chunk in grid.split(65536):
        phi = _tps_kernel(torch.cdist(chunk, pts), ndim)
        out.append(phi @ w + torch.cat([chunk, torch.ones(len(chunk), 1, dtype=torch.float64, device=dev)], 1) @ a)
    field = torch.cat(out).T.reshape(1, ndim, *shape)
    return field.to(out_dtype)
