"""Images: slices of 2D/3D arrays, upright display, overlays, checkerboards, orientation markers.

Part of :mod:`course_lib.viz` (introduced in lesson 00).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .._checks import check_flags, check_int, check_number


def _numpy(x, fn: str = "viz", name: str = "x") -> np.ndarray:
    """A real-valued, non-empty NumPy array from a tensor, an array or a nested list."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.float() if x.is_floating_point() else x
        x = x.numpy()
    elif x is None or isinstance(x, (str, bytes, dict)) or not isinstance(x, (np.ndarray, list, tuple)):
        raise TypeError(f"{fn}: {name} must be a tensor, a NumPy array or a nested list of numbers, "
                        f"got {type(x).__name__}")
    try:
        a = np.asarray(x)
    except ValueError as err:                       # ragged nested lists
        raise TypeError(f"{fn}: {name} must be a rectangular array of numbers: {err}") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{fn}: {name} must hold real numbers, got dtype {a.dtype}")
    if a.size == 0:
        raise ValueError(f"{fn}: {name} must not be empty, got shape {a.shape}")
    return a


def to_slice(x, axis: int = 2, index: int | None = None, channel: int = 0) -> np.ndarray:
    """A 2D NumPy array from a 2D/4D/3D/5D input; for volumes, slice ``index`` (default middle)
    along spatial ``axis`` (0, 1 or 2; 2 = axial for the course's volumes)."""
    return _slice("to_slice", "x", x, axis, index, channel)


def _slice(fn: str, name: str, x, axis: int = 2, index: int | None = None, channel: int = 0) -> np.ndarray:
    """:func:`to_slice`, errors named after the public function ``fn`` and its argument ``name``."""
    axis = check_int(fn, "axis", axis)
    if axis not in (0, 1, 2):
        raise ValueError(f"{fn}: axis must be 0, 1 or 2, got {axis}")
    index = check_int(fn, "index", index, minimum=0, optional=True)
    channel = check_int(fn, "channel", channel, minimum=0)
    a = _numpy(x, fn, name)
    if a.ndim not in (2, 3, 4, 5):
        raise ValueError(f"{fn}: {name} must be a 2D/3D image or an (N, C, ...) batch, got shape {a.shape}")
    if a.ndim in (4, 5):
        channel = check_int(fn, "channel", channel, minimum=0, maximum=a.shape[1] - 1)
        a = a[0, channel]
    if a.ndim == 3:
        index = a.shape[axis] // 2 if index is None else check_int(fn, "index", index, minimum=0,
                                                                   maximum=a.shape[axis] - 1)
        a = np.take(a, index, axis=axis)
    return a


def show(x, ax=None, title: str | None = None, cmap: str = "gray", vmin=None, vmax=None,
         colorbar: bool | str = False, axis: int = 2, index: int | None = None, orientation: bool = False,
         **kwargs):
    """Show one image upright; returns the ``AxesImage``.

    ``colorbar``: ``True`` for a colour bar, or a string to label it (what the colours measure, with
    units). ``orientation=True`` marks the subject's directions on a brain slice
    (:func:`mark_orientation`) viewed along ``axis``; for a 2D slice, ``axis`` only says which view
    it is (default 2, axial, as the course's 2D slices; 1 for ``template_slices("coronal")``).
    """
    return _show("show", "x", x, ax, title, cmap, vmin, vmax, colorbar, axis, index, orientation, **kwargs)


def _colorbar(fn: str, colorbar) -> bool | str:
    if not isinstance(colorbar, (bool, str)):
        raise TypeError(f"{fn}: colorbar must be a bool or a label string, got {type(colorbar).__name__}")
    return colorbar


def _show(fn: str, name: str, x, ax=None, title=None, cmap="gray", vmin=None, vmax=None, colorbar=False,
          axis: int = 2, index=None, orientation: bool = False, **kwargs):
    _colorbar(fn, colorbar)
    check_flags(fn, orientation=orientation)
    a = _slice(fn, name, x, axis, index)
    ax = ax or plt.gca()
    im = ax.imshow(a.T, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax,
                   interpolation="nearest", **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar is not False:
        cb = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if isinstance(colorbar, str):
            cb.set_label(colorbar, fontsize=8)
    if orientation:
        mark_orientation(ax, axis)
    return im


#: The subject's direction at the low and high end of each voxel axis of the course's arrays
#: (the MNI template's RAS voxel order: axis 0 left→right, 1 posterior→anterior, 2 inferior→superior).
_ENDS = {0: ("L", "R"), 1: ("P", "A"), 2: ("I", "S")}


def mark_orientation(ax=None, axis: int = 2, color: str = "yellow"):
    """Letter the subject's directions on the edges of an upright brain slice.

    ``axis`` is the volume axis the slice was taken along (2 = axial, also the course's 2D slices:
    L/R across, P/A up; 1 = coronal: L/R across, I/S up; 0 = sagittal: P/A across, I/S up). The
    viewer's left is the subject's left (see the module docstring). Returns ``ax``.
    """
    fn = "mark_orientation"
    axis = check_int(fn, "axis", axis)
    if axis not in (0, 1, 2):
        raise ValueError(f"{fn}: axis must be 0, 1 or 2, got {axis}")
    if not isinstance(color, str):
        raise TypeError(f"{fn}: color must be a matplotlib colour name, got {type(color).__name__}")
    ax = ax or plt.gca()
    across, up = (_ENDS[k] for k in range(3) if k != axis)
    style = dict(transform=ax.transAxes, color=color, fontsize=8, fontweight="bold")
    ax.text(0.02, 0.5, across[0], ha="left", va="center", **style)
    ax.text(0.98, 0.5, across[1], ha="right", va="center", **style)
    ax.text(0.5, 0.02, up[0], ha="center", va="bottom", **style)
    ax.text(0.5, 0.98, up[1], ha="center", va="top", **style)
    return ax


def show_row(images: dict, axis: int = 2, index: int | None = None, size: float = 2.4,
             colorbar: bool = False, suptitle: str | None = None, **kwargs):
    """Show ``{title: image}`` side by side; returns the figure."""
    if not isinstance(images, dict) or not images:
        raise TypeError(f"show_row: images must be a non-empty dict {{title: image}}, got {type(images).__name__}"
                        + (" (empty)" if isinstance(images, dict) else ""))
    for title, img in images.items():
        _slice("show_row", f"images[{title!r}]", img, axis, index)
    check_number("show_row", "size", size, minimum=0, positive=True)
    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images), size * 1.15), squeeze=False)
    for ax, (title, img) in zip(axes[0], images.items()):
        show(img, ax, title, axis=axis, index=index, colorbar=colorbar, **kwargs)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def overlay(image, labels, ax=None, title: str | None = None, alpha: float = 0.45,
            axis: int = 2, index: int | None = None, cmap: str = "tab20", orientation: bool = False):
    """Image in grey with a label map on top (label 0 transparent).

    Labels are coloured by ``label mod 20`` (``tab20`` has 20 colours), so the atlas's 116 AAL
    structures share colours: a colour tells neighbouring structures apart, not which structure it
    is. ``orientation=True`` marks the subject's directions (:func:`mark_orientation`).
    """
    fn = "overlay"
    img = _slice(fn, "image", image, axis, index)
    lab = _slice(fn, "labels", labels, axis, index)
    if lab.shape != img.shape:
        raise ValueError(f"{fn}: image and labels must have the same shape, got slices {img.shape} and {lab.shape}")
    check_number(fn, "alpha", alpha, minimum=0, maximum=1)
    check_flags(fn, orientation=orientation)
    ax = ax or plt.gca()
    _show(fn, "image", img, ax, title)
    if orientation:
        mark_orientation(ax, axis)
    lab = lab.T.astype(float)
    masked = np.ma.masked_where(lab == 0, lab % 20)
    ax.imshow(masked, origin="lower", cmap=cmap, alpha=alpha, vmin=0, vmax=19, interpolation="nearest")
    return ax


def checkerboard(a, b, tiles: int = 8, ax=None, title: str | None = None, axis: int = 2,
                 index: int | None = None, orientation: bool = False):
    """Alternate tiles of ``a`` and ``b``: edges that jump between tiles reveal misalignment."""
    A, B = _slice("checkerboard", "a", a, axis, index), _slice("checkerboard", "b", b, axis, index)
    if A.shape != B.shape:
        raise ValueError(f"checkerboard: a and b must have the same shape, got {A.shape} and {B.shape}")
    tiles = check_int("checkerboard", "tiles", tiles, minimum=1)
    ii, jj = np.meshgrid(np.arange(A.shape[0]) * tiles // A.shape[0],
                         np.arange(A.shape[1]) * tiles // A.shape[1], indexing="ij")
    check_flags("checkerboard", orientation=orientation)
    im = show(np.where((ii + jj) % 2 == 0, A, B), ax, title)
    if orientation:
        mark_orientation(im.axes, axis)
    return im
