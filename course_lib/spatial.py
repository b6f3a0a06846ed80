"""Grids, warps, affine matrices, composition, velocity integration, Jacobians.

Introduced in lesson 01. Convention (see :mod:`course_lib`): displacements are
``(N, ndim, *spatial)`` in voxels, channel *i* along spatial axis *i*; transforms are backward
maps ``x ↦ x + u(x)`` from fixed to moving voxel coordinates; affine matrices are homogeneous
``(N, ndim+1, ndim+1)`` voxel-coordinate maps ``moving_from_fixed``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import (check_field, check_image, check_int, check_min_size, check_number, check_option, check_size,
                      check_spatial_match, check_tensor, promote)

_MODES = ("linear", "nearest")
_PADDINGS = ("border", "zeros")

__all__ = [
    "ALIGN_CORNERS", "identity_grid", "to_normalized_grid", "warp", "Warp", "affine_matrix",
    "rigid_matrix", "rotation_matrix", "warp_affine", "affine_to_displacement", "compose",
    "integrate_velocity", "jacobian_determinant", "resize_displacement", "gaussian_blur",
    "resize_image", "transform_points",
]

#: ``grid_sample`` is always called with ``align_corners=True``: voxel centre 0 maps to -1 and
#: voxel centre ``n - 1`` maps to +1, so voxel coordinates and normalized coordinates are related
#: by ``x_norm = 2 * x / (n - 1) - 1`` independently of the resolution.
ALIGN_CORNERS = True


def identity_grid(shape, device=None, dtype=torch.float32) -> torch.Tensor:
    """Voxel coordinates of every voxel: ``(1, ndim, *shape)``, channel *i* = index along axis *i*.

    >>> identity_grid((2, 3))[0, 1]
    tensor([[0., 1., 2.],
            [0., 1., 2.]])
    """
    shape = check_size("identity_grid", "shape", shape, (2, 3))
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"identity_grid: dtype must be a torch.dtype, got {type(dtype).__name__}")
    axes = [torch.arange(s, device=device, dtype=dtype) for s in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)[None]


def to_normalized_grid(coords: torch.Tensor, sizes=None) -> torch.Tensor:
    """Convert voxel coordinates ``(N, ndim, *spatial)`` into ``grid_sample``'s grid.

    The one conversion of the course: the output is ``(N, *spatial, ndim)`` with the last axis in
    ``grid_sample``'s reversed order (x = last spatial axis first) and values
    ``2 * coord / (size - 1) - 1`` for :data:`ALIGN_CORNERS` ``= True``. ``sizes`` is the spatial
    shape of the image to be sampled (default ``coords.shape[2:]``, i.e. a dense grid on that image).
    """
    fn = "to_normalized_grid"
    check_field(fn, "coords", coords)
    ndim = coords.shape[1]
    sizes = tuple(coords.shape[2:]) if sizes is None else check_size(fn, "sizes", sizes, ndim)
    return _to_grid(coords, sizes)


def _to_grid(coords: torch.Tensor, sizes) -> torch.Tensor:
    """:func:`to_normalized_grid` without the input checks, for inner loops (see :func:`_warp`)."""
    ndim = coords.shape[1]
    chans = []
    for i in range(ndim):
        n = sizes[i]
        scale = 2.0 / (n - 1) if n > 1 else 0.0
        chans.append(coords[:, i] * scale - 1.0 if n > 1 else torch.zeros_like(coords[:, i]))
    # grid_sample wants (x, y[, z]) = (W, H[, D]) order: reverse the channels.
    return torch.stack(chans[::-1], dim=-1)


def warp(image: torch.Tensor, displacement: torch.Tensor, mode: str = "linear",
         padding: str = "border") -> torch.Tensor:
    """Resample ``image`` at ``x + displacement(x)``: ``out(x) = image(x + u(x))``.

    Args:
        image: ``(N, C, *spatial)``; integer (label) images need ``mode="nearest"`` and keep
            their dtype.
        displacement: ``(N, ndim, *spatial)`` in voxels (same spatial shape as ``image``).
            Documented broadcasting: either batch may be 1 and is then repeated (one image
            warped by ``N`` fields, or ``N`` images by one field).
        mode: ``"linear"`` (bi/trilinear) for intensities, ``"nearest"`` for labels.
        padding: ``"border"`` (repeat edge values) or ``"zeros"``.

    Returns:
        ``(N, C, *spatial)``, same dtype as ``image`` (the one exception to the promotion rule of
        the dtype policy: the field's dtype only sets the precision of the sampling).
    """
    return _checked_warp("warp", image, displacement, mode, padding)


def _checked_warp(fn: str, image, displacement, mode: str, padding: str) -> torch.Tensor:
    """:func:`warp` with its checks, errors named after the public function ``fn``."""
    check_option(fn, "mode", mode, _MODES)
    check_option(fn, "padding", padding, _PADDINGS)
    check_image(fn, "image", image, floating=False)
    check_field(fn, "displacement", displacement)
    if displacement.shape[1] != image.dim() - 2:
        raise ValueError(
            f"{fn}: displacement must have {image.dim() - 2} channels for a {image.dim() - 2}D image, "
            f"got shape {tuple(displacement.shape)} for image shape {tuple(image.shape)}"
        )
    check_spatial_match(fn, "image", image, "displacement", displacement)
    is_int = not image.is_floating_point()
    if is_int and mode != "nearest":
        raise TypeError(f"{fn}: integer image (dtype {image.dtype}) needs mode='nearest', got {mode!r}")
    return _warp(image, displacement, mode, padding)


def _warp(image: torch.Tensor, displacement: torch.Tensor, mode: str = "linear",
          padding: str = "border") -> torch.Tensor:
    """:func:`warp` without the input checks, for inner loops (scaling and squaring, networks)
    whose inputs were validated once: no host-device synchronisation, friendly to ``torch.compile``."""
    is_int = not image.is_floating_point()
    src = image.to(displacement.dtype) if is_int or image.dtype != displacement.dtype else image
    n = max(src.shape[0], displacement.shape[0])
    coords = identity_grid(src.shape[2:], displacement.device, displacement.dtype) + displacement
    grid = _to_grid(coords, coords.shape[2:])
    if grid.shape[0] != n:
        grid = grid.expand(n, *grid.shape[1:])
    if src.shape[0] != n:
        src = src.expand(n, *src.shape[1:])
    out = F.grid_sample(src, grid, mode="bilinear" if mode == "linear" else "nearest",
                        padding_mode=padding, align_corners=ALIGN_CORNERS)
    return out.round().to(image.dtype) if is_int else out.to(image.dtype)


class Warp(torch.nn.Module):
    """Module twin of :func:`warp` (the spatial transformer of VoxelMorph)."""

    def __init__(self, mode: str = "linear", padding: str = "border"):
        super().__init__()
        self.mode = check_option("Warp", "mode", mode, _MODES)
        self.padding = check_option("Warp", "padding", padding, _PADDINGS)

    def forward(self, image: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
        return _checked_warp("Warp.forward", image, displacement, self.mode, self.padding)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, padding={self.padding!r}"


def affine_matrix(params: torch.Tensor) -> torch.Tensor:
    """Homogeneous affine matrices from parameters that are **offsets from the identity**.

    Args:
        params: ``(N, 6)`` in 2D or ``(N, 12)`` in 3D: the top ``ndim`` rows of ``M - I`` read
            row by row, i.e. ``[a00, a01, t0, a10, a11, t1]`` in 2D. Zero parameters give the
            identity.

    Returns:
        ``(N, ndim+1, ndim+1)`` voxel-coordinate matrices.
    """
    check_tensor("affine_matrix", "params", params, ndims=(2,), floating=True, finite=True, nonempty=True)
    k = params.shape[1]
    if k not in (6, 12):
        raise ValueError(f"affine_matrix: params must be (N, 6) for 2D or (N, 12) for 3D, got {tuple(params.shape)}")
    ndim = 2 if k == 6 else 3
    n = params.shape[0]
    top = params.view(n, ndim, ndim + 1)
    eye = torch.eye(ndim + 1, dtype=params.dtype, device=params.device).expand(n, -1, -1)
    bottom = torch.zeros(n, 1, ndim + 1, dtype=params.dtype, device=params.device)
    return eye + torch.cat([top, bottom], dim=1)


def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from angles in radians.

    2D: ``angles`` ``(N, 1)`` rotates axis 0 towards axis 1. 3D: ``(N, 3)`` are rotations about
    spatial axes 0, 1 and 2, applied in that order (``R = R2 @ R1 @ R0``).
    """
    return _rotation_matrix("rotation_matrix", angles)


def _rotation_matrix(fn: str, angles, check: bool = True) -> torch.Tensor:
    if check:
        check_tensor(fn, "angles", angles, ndims=(2,), floating=True, finite=True, nonempty=True)
    n, k = angles.shape
    if check and k not in (1, 3):
        raise ValueError(f"{fn}: angles must be (N, 1) in 2D or (N, 3) in 3D, got {tuple(angles.shape)}")
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    if k == 1:
        return torch.stack([torch.stack([c[:, 0], -s[:, 0]], -1), torch.stack([s[:, 0], c[:, 0]], -1)], -2)

    def rot(i, j, a):  # rotation in the (i, j) plane, i.e. about the remaining axis
        m = [[one, zero, zero], [zero, one, zero], [zero, zero, one]]
        m[i][i], m[i][j], m[j][i], m[j][j] = c[:, a], -s[:, a], s[:, a], c[:, a]
        return torch.stack([torch.stack(row, -1) for row in m], -2)

    return rot(0, 1, 2) @ rot(2, 0, 1) @ rot(1, 2, 0)


def rigid_matrix(angles: torch.Tensor, translation: torch.Tensor, center) -> torch.Tensor:
    """Rigid voxel-coordinate map ``x ↦ R (x - c) + c + t`` as ``(N, ndim+1, ndim+1)``.

    Args:
        angles: ``(N, 1)`` (2D) or ``(N, 3)`` (3D) radians, see :func:`rotation_matrix`.
        translation: ``(N, ndim)`` in voxels.
        center: ``(ndim,)`` or ``(N, ndim)`` rotation centre in voxels (e.g. the image centre
            ``[(s - 1) / 2 for s in shape]``), a sequence of numbers or a tensor.

    ``angles`` and ``translation`` of different floating dtypes give the common dtype.
    """
    fn = "rigid_matrix"
    rot = _rotation_matrix(fn, angles)
    ndim = rot.shape[-1]
    check_tensor(fn, "translation", translation, ndims=(2,), floating=True, finite=True)
    if translation.shape != (angles.shape[0], ndim):
        raise ValueError(f"{fn}: translation must be {(angles.shape[0], ndim)}, got {tuple(translation.shape)}")
    rot, translation = promote(rot, translation)
    if isinstance(center, torch.Tensor):
        if not center.is_floating_point() and (center.is_complex() or center.dtype == torch.bool):
            raise TypeError(f"{fn}: center must hold real numbers, got dtype {center.dtype}")
    elif center is None or isinstance(center, (str, bytes)) or not hasattr(center, "__len__"):
        raise TypeError(f"{fn}: center must be a sequence of {ndim} numbers or a tensor, got "
                        f"{type(center).__name__}")
    try:
        center = torch.as_tensor(center, dtype=rot.dtype, device=rot.device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{fn}: center must be a sequence of {ndim} numbers or a tensor, got {center!r}") from err
    if center.dim() not in (1, 2) or center.shape[-1] != ndim or (center.dim() == 2 and center.shape[0] not in (1, rot.shape[0])):
        raise ValueError(f"{fn}: center must have {ndim} coordinates, shape ({ndim},) or ({rot.shape[0]}, {ndim}), "
                         f"got shape {tuple(center.shape)}")
    if not bool(torch.isfinite(center).all()):
        raise ValueError(f"{fn}: center contains NaN or Inf values")
    center = center.expand(rot.shape[0], ndim)
    t = translation + center - (rot @ center[..., None])[..., 0]
    top = torch.cat([rot, t[..., None]], dim=-1)
    bottom = torch.zeros(rot.shape[0], 1, ndim + 1, dtype=rot.dtype, device=rot.device)
    bottom[..., -1] = 1
    return torch.cat([top, bottom], dim=1)


def _check_matrix(fn: str, matrix: torch.Tensor, ndim: int | None = None, of: str = "") -> int:
    """A batch of homogeneous matrices ``(N, d+1, d+1)``, ``d`` 2 or 3 (= ``ndim`` if given, the
    number of spatial axes of ``of``, e.g. ``"image (1, 1, 5, 6, 7)"``, named in the message)."""
    check_tensor(fn, "matrix", matrix, ndims=(3,), floating=True, finite=True, nonempty=True)
    d = matrix.shape[-1] - 1
    if matrix.shape[-2] != d + 1 or d not in (2, 3) or (ndim is not None and d != ndim):
        want = f"(N, {ndim + 1}, {ndim + 1})" if ndim else "(N, 3, 3) or (N, 4, 4)"
        raise ValueError(f"{fn}: matrix must be {want}{' for ' + of if of else ''}, got {tuple(matrix.shape)}")
    return d


def affine_to_displacement(matrix: torch.Tensor, shape) -> torch.Tensor:
    """Dense displacement ``u(x) = M x - x`` of a voxel-coordinate affine on a grid of ``shape``.

    Returns ``(N, ndim, *shape)``.
    """
    shape = check_size("affine_to_displacement", "shape", shape, (2, 3))
    ndim = _check_matrix("affine_to_displacement", matrix, len(shape))
    x = identity_grid(shape, matrix.device, matrix.dtype).flatten(2)           # (1, ndim, V)
    mx = matrix[:, :ndim, :ndim] @ x + matrix[:, :ndim, ndim:]                 # (N, ndim, V)
    return (mx - x).view(matrix.shape[0], ndim, *shape)


def warp_affine(image: torch.Tensor, matrix: torch.Tensor, mode: str = "linear",
                padding: str = "border") -> torch.Tensor:
    """Warp ``image`` ``(N, C, *spatial)`` by the voxel affine ``matrix`` (``moving_from_fixed``).

    ``matrix`` is ``(N or 1, ndim+1, ndim+1)`` (either batch may be 1, as in :func:`warp`); the
    result has the image's dtype (the matrix is cast to it; float32 for integer label images).
    """
    fn = "warp_affine"
    check_option(fn, "mode", mode, _MODES)
    check_option(fn, "padding", padding, _PADDINGS)
    check_image(fn, "image", image, floating=False)
    _check_matrix(fn, matrix, image.dim() - 2, f"image {tuple(image.shape)}")
    if matrix.shape[0] != image.shape[0] and 1 not in (matrix.shape[0], image.shape[0]):
        raise ValueError(f"{fn}: image and matrix must have the same batch size (or one of them 1), "
                         f"got {image.shape[0]} and {matrix.shape[0]}")
    disp = affine_to_displacement(matrix.to(torch.float32) if not image.is_floating_point() else matrix.to(image.dtype),
                                  image.shape[2:])
    return _checked_warp(fn, image, disp, mode, padding)


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


def resize_image(image: torch.Tensor, size, mode: str = "linear") -> torch.Tensor:
    """Resize ``(N, C, *spatial)`` to ``size`` with ``align_corners=True`` (corner voxels stay put).

    ``mode``: ``"linear"`` (bi/trilinear) or ``"nearest"``.
    """
    fn = "resize_image"
    check_image(fn, "image", image)
    size = check_size(fn, "size", size, image.dim() - 2)
    check_option(fn, "mode", mode, _MODES)
    return _resize(image, size, mode)


def _resize(image: torch.Tensor, size, mode: str = "linear") -> torch.Tensor:
    """:func:`resize_image` without the input checks."""
    if mode == "nearest":
        return F.interpolate(image, size=size, mode="nearest")
    interp = "bilinear" if image.dim() == 4 else "trilinear"
    return F.interpolate(image, size=size, mode=interp, align_corners=ALIGN_CORNERS)


def resize_displacement(displacement: torch.Tensor, size) -> torch.Tensor:
    """Resample a voxel displacement field to ``size`` and rescale its values to the new voxels.

    With ``align_corners=True`` voxel ``i`` of an axis of ``n`` voxels sits at ``i * (m-1)/(n-1)``
    on the resized axis of ``m`` voxels, so channel *i* is multiplied by ``(m_i - 1)/(n_i - 1)``.
    """
    check_field("resize_displacement", "displacement", displacement)
    size = check_size("resize_displacement", "size", size, displacement.dim() - 2)
    return _resize_displacement(displacement, size)


def _resize_displacement(displacement: torch.Tensor, size) -> torch.Tensor:
    """:func:`resize_displacement` without the input checks (see :func:`_warp`)."""
    out = _resize(displacement, size)
    scale = torch.tensor([(m - 1) / max(n - 1, 1) for m, n in zip(size, displacement.shape[2:])],
                         dtype=out.dtype, device=out.device)
    return out * scale.view(1, -1, *([1] * len(size)))


def gaussian_blur(image: torch.Tensor, sigma: float, truncate: float = 3.0) -> torch.Tensor:
    """Separable Gaussian smoothing of ``(N, C, *spatial)`` with standard deviation ``sigma`` voxels
    (replicate padding). ``sigma = 0`` returns the input."""
    check_image("gaussian_blur", "image", image)
    sigma = check_number("gaussian_blur", "sigma", sigma, minimum=0)
    truncate = check_number("gaussian_blur", "truncate", truncate, minimum=0, positive=True)
    if sigma == 0:
        return image
    r = max(1, int(math.ceil(truncate * sigma)))
    x = torch.arange(-r, r + 1, dtype=image.dtype, device=image.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    ndim = image.dim() - 2
    n, c = image.shape[:2]
    out = image.reshape(n * c, 1, *image.shape[2:])
    conv = F.conv2d if ndim == 2 else F.conv3d
    for axis in range(ndim):
        shape = [1, 1] + [1] * ndim
        shape[2 + axis] = 2 * r + 1
        pad = [0, 0] * ndim
        pad[2 * (ndim - 1 - axis)] = pad[2 * (ndim - 1 - axis) + 1] = r
        out = conv(F.pad(out, pad, mode="replicate"), k.view(shape))
    return out.reshape(n, c, *image.shape[2:])


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
