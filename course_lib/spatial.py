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

from ._checks import check_field, check_image, check_spatial_match, check_tensor

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
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"identity_grid: shape must be 2 or 3 positive sizes, got {shape}")
    axes = [torch.arange(s, device=device, dtype=dtype) for s in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)[None]


def to_normalized_grid(coords: torch.Tensor, sizes=None) -> torch.Tensor:
    """Convert voxel coordinates ``(N, ndim, *spatial)`` into ``grid_sample``'s grid.

    The one conversion of the course: the output is ``(N, *spatial, ndim)`` with the last axis in
    ``grid_sample``'s reversed order (x = last spatial axis first) and values
    ``2 * coord / (size - 1) - 1`` for :data:`ALIGN_CORNERS` ``= True``. ``sizes`` is the spatial
    shape of the image to be sampled (default ``coords.shape[2:]``, i.e. a dense grid on that image).
    """
    check_field("to_normalized_grid", "coords", coords, finite=False)
    ndim = coords.shape[1]
    sizes = tuple(coords.shape[2:]) if sizes is None else tuple(int(s) for s in sizes)
    if len(sizes) != ndim:
        raise ValueError(f"to_normalized_grid: sizes must have {ndim} entries, got {sizes}")
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
        displacement: ``(N or 1, ndim, *spatial)`` in voxels (same spatial shape as ``image``).
        mode: ``"linear"`` (bi/trilinear) for intensities, ``"nearest"`` for labels.
        padding: ``"border"`` (repeat edge values) or ``"zeros"``.

    Returns:
        ``(N, C, *spatial)``, same dtype as ``image``.
    """
    fn = "warp"
    if mode not in ("linear", "nearest"):
        raise ValueError(f"{fn}: mode must be 'linear' or 'nearest', got {mode!r}")
    if padding not in ("border", "zeros"):
        raise ValueError(f"{fn}: padding must be 'border' or 'zeros', got {padding!r}")
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
    grid = to_normalized_grid(identity_grid(src.shape[2:], displacement.device, displacement.dtype) + displacement)
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
        self.mode, self.padding = mode, padding

    def forward(self, image: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
        return warp(image, displacement, self.mode, self.padding)

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
    check_tensor("affine_matrix", "params", params, ndims=(2,), floating=True)
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
    check_tensor("rotation_matrix", "angles", angles, ndims=(2,), floating=True)
    n, k = angles.shape
    if k not in (1, 3):
        raise ValueError(f"rotation_matrix: angles must be (N, 1) in 2D or (N, 3) in 3D, got {tuple(angles.shape)}")
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
            ``[(s - 1) / 2 for s in shape]``).
    """
    fn = "rigid_matrix"
    check_tensor(fn, "angles", angles, ndims=(2,), floating=True)
    if angles.shape[1] not in (1, 3):
        raise ValueError(f"{fn}: angles must be (N, 1) in 2D or (N, 3) in 3D, got {tuple(angles.shape)}")
    rot = rotation_matrix(angles)
    ndim = rot.shape[-1]
    check_tensor(fn, "translation", translation, ndims=(2,), floating=True)
    if translation.shape != (angles.shape[0], ndim):
        raise ValueError(f"{fn}: translation must be {(angles.shape[0], ndim)}, got {tuple(translation.shape)}")
    center = torch.as_tensor(center, dtype=rot.dtype, device=rot.device)
    if center.shape[-1] != ndim:
        raise ValueError(f"{fn}: center must have {ndim} coordinates, got shape {tuple(center.shape)}")
    center = center.expand(rot.shape[0], ndim)
    t = translation + center - (rot @ center[..., None])[..., 0]
    top = torch.cat([rot, t[..., None]], dim=-1)
    bottom = torch.zeros(rot.shape[0], 1, ndim + 1, dtype=rot.dtype, device=rot.device)
    bottom[..., -1] = 1
    return torch.cat([top, bottom], dim=1)


def _check_matrix(fn: str, matrix: torch.Tensor, ndim: int | None = None) -> int:
    check_tensor(fn, "matrix", matrix, ndims=(3,), floating=True, finite=True)
    d = matrix.shape[-1] - 1
    if matrix.shape[-2] != d + 1 or d not in (2, 3) or (ndim is not None and d != ndim):
        want = f"(N, {ndim + 1}, {ndim + 1})" if ndim else "(N, 3, 3) or (N, 4, 4)"
        raise ValueError(f"{fn}: matrix must be {want}, got {tuple(matrix.shape)}")
    return d


def affine_to_displacement(matrix: torch.Tensor, shape) -> torch.Tensor:
    """Dense displacement ``u(x) = M x - x`` of a voxel-coordinate affine on a grid of ``shape``.

    Returns ``(N, ndim, *shape)``.
    """
    shape = tuple(int(s) for s in shape)
    ndim = _check_matrix("affine_to_displacement", matrix, len(shape))
    x = identity_grid(shape, matrix.device, matrix.dtype).flatten(2)           # (1, ndim, V)
    mx = matrix[:, :ndim, :ndim] @ x + matrix[:, :ndim, ndim:]                 # (N, ndim, V)
    return (mx - x).view(matrix.shape[0], ndim, *shape)


def warp_affine(image: torch.Tensor, matrix: torch.Tensor, mode: str = "linear",
                padding: str = "border") -> torch.Tensor:
    """Warp ``image`` ``(N, C, *spatial)`` by the voxel affine ``matrix`` (``moving_from_fixed``)."""
    check_image("warp_affine", "image", image, floating=False)
    _check_matrix("warp_affine", matrix, image.dim() - 2)
    disp = affine_to_displacement(matrix.to(torch.float32) if not image.is_floating_point() else matrix.to(image.dtype),
                                  image.shape[2:])
    return warp(image, disp, mode, padding)


def compose(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Displacement of "warp by ``first``, then warp the result by ``second``".

    ``warp(warp(img, first), second) ≈ warp(img, compose(first, second))``; as maps,
    ``x ↦ x + second(x) + first(x + second(x))`` (the backward map of ``first`` evaluated after
    that of ``second``). Both ``(N, ndim, *spatial)`` in voxels.
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
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"integrate_velocity: steps must be a non-negative int, got {steps!r}")
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
    check_field("jacobian_determinant", "displacement", displacement)
    ndim = displacement.shape[1]
    if min(displacement.shape[2:]) < 2:
        raise ValueError(f"jacobian_determinant: every spatial size must be >= 2, got {tuple(displacement.shape[2:])}")
    # grads[i][j] = d u_i / d x_j, each (N, *spatial)
    grads = [torch.gradient(displacement[:, i], dim=tuple(range(1, ndim + 1))) for i in range(ndim)]
    j = [[grads[i][k] + (1.0 if i == k else 0.0) for k in range(ndim)] for i in range(ndim)]
    if ndim == 2:
        return j[0][0] * j[1][1] - j[0][1] * j[1][0]
    return (j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1])
            - j[0][1] * (j[1][0] * j[2][2] - j[1][2] * j[2][0])
            + j[0][2] * (j[1][0] * j[2][1] - j[1][1] * j[2][0]))


def resize_image(image: torch.Tensor, size, mode: str = "linear") -> torch.Tensor:
    """Resize ``(N, C, *spatial)`` to ``size`` with ``align_corners=True`` (corner voxels stay put)."""
    check_image("resize_image", "image", image)
    size = tuple(int(s) for s in size)
    if len(size) != image.dim() - 2:
        raise ValueError(f"resize_image: size must have {image.dim() - 2} entries, got {size}")
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
    size = tuple(int(s) for s in size)
    if len(size) != displacement.dim() - 2:
        raise ValueError(f"resize_displacement: size must have {displacement.dim() - 2} entries, got {size}")
    out = resize_image(displacement, size)
    scale = torch.tensor([(m - 1) / max(n - 1, 1) for m, n in zip(size, displacement.shape[2:])],
                         dtype=out.dtype, device=out.device)
    return out * scale.view(1, -1, *([1] * len(size)))


def gaussian_blur(image: torch.Tensor, sigma: float, truncate: float = 3.0) -> torch.Tensor:
    """Separable Gaussian smoothing of ``(N, C, *spatial)`` with standard deviation ``sigma`` voxels
    (replicate padding). ``sigma = 0`` returns the input."""
    check_image("gaussian_blur", "image", image)
    if sigma < 0:
        raise ValueError(f"gaussian_blur: sigma must be >= 0, got {sigma}")
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
        ``(N, P, ndim)``: the corresponding moving-image coordinates.
    """
    fn = "transform_points"
    check_field(fn, "displacement", displacement)
    check_tensor(fn, "points", points, ndims=(3,), floating=True, finite=True)
    ndim = displacement.shape[1]
    if points.shape[-1] != ndim or points.shape[0] not in (1, displacement.shape[0]):
        raise ValueError(f"{fn}: points must be (N, P, {ndim}) with N = {displacement.shape[0]}, "
                         f"got {tuple(points.shape)}")
    n = displacement.shape[0]
    pts = points.expand(n, -1, -1).to(displacement.dtype)
    coords = pts.transpose(1, 2).reshape(n, ndim, -1, *([1] * (ndim - 1)))   # (N, ndim, P, 1[, 1])
    grid = to_normalized_grid(coords, sizes=displacement.shape[2:])          # (N, P, 1[, 1], ndim)
    u = F.grid_sample(displacement, grid, mode="bilinear", padding_mode="border", align_corners=ALIGN_CORNERS)
    return pts + u.view(n, ndim, -1).transpose(1, 2)
