"""Sampling grids, warping, resizing and smoothing: the resampling half of :mod:`course_lib.spatial`.

Introduced in lesson 01 (see the convention in :mod:`course_lib.spatial`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._checks import (check_field, check_image, check_number, check_option, check_size,
                       check_spatial_match)

_MODES = ("linear", "nearest")
_PADDINGS = ("border", "zeros")

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
