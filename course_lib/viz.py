"""Figures and interactive viewers. Plotting only: nothing here computes a result.

Introduced in lesson 00. Images are displayed **upright**: the course's arrays keep the template's
voxel order (axis 0 left→right, axis 1 posterior→anterior in an axial slice), so a 2D array is
drawn as ``imshow(a.T, origin="lower")``: axis 0 runs to the right, axis 1 runs up (radiologists'
left/right convention is not applied; the viewer's left is the subject's left).

Every function accepts a 2D array/tensor ``(H, W)``, an image batch ``(N, C, H, W)`` (first image
shown) or a 3D volume ``(N, C, D, H, W)`` / ``(D, H, W)`` (a slice is taken, see ``axis`` and
``index``). Inputs are tensors, NumPy arrays or nested lists of numbers of any real dtype; NaN
voxels are drawn blank. Everything else (``None``, a string, an empty or 1D array, an axis or
slice index out of range) is an error raised before anything is drawn, and the viewers check all
their inputs before they return a widget, so a widget never fails on its first draw.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ._checks import check_int, check_number
from .spatial import _jacobian_determinant

__all__ = ["to_slice", "show", "show_row", "overlay", "checkerboard", "plot_grid", "plot_field",
           "plot_jacobian", "slice_viewer", "compare_viewer", "registration_viewer"]


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
         colorbar: bool = False, axis: int = 2, index: int | None = None, **kwargs):
    """Show one image upright; returns the ``AxesImage``."""
    return _show("show", "x", x, ax, title, cmap, vmin, vmax, colorbar, axis, index, **kwargs)


def _show(fn: str, name: str, x, ax=None, title=None, cmap="gray", vmin=None, vmax=None, colorbar=False,
          axis: int = 2, index=None, **kwargs):
    a = _slice(fn, name, x, axis, index)
    ax = ax or plt.gca()
    im = ax.imshow(a.T, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax,
                   interpolation="nearest", **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return im


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
            axis: int = 2, index: int | None = None, cmap: str = "tab20"):
    """Image in grey with a label map on top (label 0 transparent)."""
    fn = "overlay"
    img = _slice(fn, "image", image, axis, index)
    lab = _slice(fn, "labels", labels, axis, index)
    if lab.shape != img.shape:
        raise ValueError(f"{fn}: image and labels must have the same shape, got slices {img.shape} and {lab.shape}")
    check_number(fn, "alpha", alpha, minimum=0, maximum=1)
    ax = ax or plt.gca()
    _show(fn, "image", img, ax, title)
    lab = lab.T.astype(float)
    masked = np.ma.masked_where(lab == 0, lab % 20)
    ax.imshow(masked, origin="lower", cmap=cmap, alpha=alpha, vmin=0, vmax=19, interpolation="nearest")
    return ax


def checkerboard(a, b, tiles: int = 8, ax=None, title: str | None = None, axis: int = 2,
                 index: int | None = None):
    """Alternate tiles of ``a`` and ``b``: edges that jump between tiles reveal misalignment."""
    A, B = _slice("checkerboard", "a", a, axis, index), _slice("checkerboard", "b", b, axis, index)
    if A.shape != B.shape:
        raise ValueError(f"checkerboard: a and b must have the same shape, got {A.shape} and {B.shape}")
    tiles = check_int("checkerboard", "tiles", tiles, minimum=1)
    ii, jj = np.meshgrid(np.arange(A.shape[0]) * tiles // A.shape[0],
                         np.arange(A.shape[1]) * tiles // A.shape[1], indexing="ij")
    return show(np.where((ii + jj) % 2 == 0, A, B), ax, title)


def _field2d(displacement, axis: int, index, fn: str = "plot_grid"):
    u = _numpy(displacement, fn, "displacement")
    if u.ndim == 5 or (u.ndim == 4 and u.shape[1] == 3):   # (N, 3, D, H, W)
        u = u[0]
    if u.ndim == 4 and u.shape[0] == 3 and u.shape[1] != 2:   # (3, D, H, W), not a batch of three 2D fields
        axis = check_int(fn, "axis", axis)
        if axis not in (0, 1, 2):
            raise ValueError(f"{fn}: axis must be 0, 1 or 2 for a volume, got {axis}")
        index = u.shape[1 + axis] // 2 if index is None else check_int(fn, "index", index, minimum=0,
                                                                       maximum=u.shape[1 + axis] - 1)
        keep = [i for i in range(3) if i != axis]
        return np.take(u, index, axis=1 + axis)[keep]
    if u.ndim == 4:                                        # (N, 2, H, W)
        u = u[0]
    if u.ndim != 3 or u.shape[0] != 2:
        raise ValueError(f"{fn}: displacement must be (N, ndim, *spatial), got shape {np.shape(displacement)}")
    return u


def plot_grid(displacement, ax=None, step: int = 4, title: str | None = None, image=None,
              color: str = "tab:orange", axis: int = 2, index: int | None = None):
    """Draw the deformed grid ``x + u(x)`` (every ``step`` voxels), optionally over ``image``."""
    u = _field2d(displacement, axis, index)
    step = check_int("plot_grid", "step", step, minimum=1)
    img = None if image is None else _slice("plot_grid", "image", image, axis, index)
    ax = ax or plt.gca()
    if img is not None:
        _show("plot_grid", "image", img, ax)
    h, w = u.shape[1:]
    gx, gy = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    px, py = gx + u[0], gy + u[1]
    for i in range(0, h, step):
        ax.plot(px[i, :], py[i, :], color=color, lw=0.7)
    for j in range(0, w, step):
        ax.plot(px[:, j], py[:, j], color=color, lw=0.7)
    ax.set_xlim(-0.5, h - 0.5)
    ax.set_ylim(-0.5, w - 0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_field(displacement, ax=None, step: int = 6, title: str | None = None, image=None,
               axis: int = 2, index: int | None = None):
    """Arrows of the displacement (every ``step`` voxels), optionally over ``image``."""
    u = _field2d(displacement, axis, index, "plot_field")
    step = check_int("plot_field", "step", step, minimum=1)
    img = None if image is None else _slice("plot_field", "image", image, axis, index)
    ax = ax or plt.gca()
    if img is not None:
        _show("plot_field", "image", img, ax)
    h, w = u.shape[1:]
    gx, gy = np.meshgrid(np.arange(0, h, step), np.arange(0, w, step), indexing="ij")
    ax.quiver(gx, gy, u[0, ::step, ::step], u[1, ::step, ::step], color="tab:red",
              angles="xy", scale_units="xy", scale=1, width=0.004)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_jacobian(displacement, ax=None, title: str | None = None, vmax: float = 2.0,
                  axis: int = 2, index: int | None = None, colorbar: bool = True):
    """Map of det J (1 = volume kept, < 1 shrink, > 1 grow); folded voxels (≤ 0) in black."""
    fn = "plot_jacobian"
    d = displacement if isinstance(displacement, torch.Tensor) else torch.as_tensor(_numpy(displacement, fn, "displacement"))
    check_number(fn, "vmax", vmax, minimum=0, positive=True)
    jac = _slice(fn, "displacement", _jacobian_determinant(fn, d.detach().float().cpu())[:, None], axis, index)
    ax = ax or plt.gca()
    cmap = plt.get_cmap("RdBu_r").copy()
    cmap.set_under("black")
    im = ax.imshow(jac.T, origin="lower", cmap=cmap, vmin=1e-6, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"det J (min {jac.min():.2f}, folds {int((jac <= 0).sum())} px)", fontsize=10)
    if colorbar:
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return im


def slice_viewer(images: dict, size: float = 3.0, **kwargs):
    """Interactive viewer of 3D volumes ``{title: volume}``: sliders for the axis and the slice.

    Works in JupyterLab (ipywidgets). Returns the widget; in a notebook, leave it as the cell's
    last expression to display it.
    """
    import ipywidgets as widgets
    if not isinstance(images, dict) or not images:
        raise TypeError(f"slice_viewer: images must be a non-empty dict {{title: volume}}, got {type(images).__name__}"
                        + (" (empty)" if isinstance(images, dict) else ""))
    check_number("slice_viewer", "size", size, minimum=0, positive=True)
    vols = {k: _volume("slice_viewer", f"images[{k!r}]", v) for k, v in images.items()}
    shape = next(iter(vols.values())).shape

    def draw(axis, position):
        fig, axes = plt.subplots(1, len(vols), figsize=(size * len(vols), size * 1.1), squeeze=False)
        for ax, (title, v) in zip(axes[0], vols.items()):
            idx = int(round(position * (v.shape[axis] - 1)))
            show(v, ax, f"{title} [{idx}]", axis=axis, index=idx, **kwargs)
        plt.show()

    return widgets.interactive(
        draw,
        axis=widgets.Dropdown(options=[("sagittal (0)", 0), ("coronal (1)", 1), ("axial (2)", 2)],
                              value=2, description="axis"),
        position=widgets.FloatSlider(min=0.0, max=1.0, step=1.0 / max(shape), value=0.5,
                                     description="slice", continuous_update=False),
    )


def to_volume(x) -> np.ndarray:
    """A 3D NumPy volume from ``(D, H, W)`` or ``(N, C, D, H, W)`` (first image, first channel)."""
    return _volume("to_volume", "x", x)


def _volume(fn: str, name: str, x) -> np.ndarray:
    a = _numpy(x, fn, name)
    if a.ndim == 5:
        a = a[0, 0]
    if a.ndim != 3:
        raise ValueError(f"{fn}: {name} must be a 3D volume (D, H, W) or (N, C, D, H, W), got shape {a.shape}")
    return a


def compare_viewer(moving, fixed, warped, size: float = 3.0):
    """Before / after / difference viewer: choose what to compare with a toggle (2D or 3D inputs).

    ``moving``, ``fixed``, ``warped``: images of one shape, each 2D ``(H, W)`` / ``(N, C, H, W)`` or
    3D ``(D, H, W)`` / ``(N, C, D, H, W)`` (first image and channel shown). Checked before the
    widget is built.
    """
    import ipywidgets as widgets
    fn = "compare_viewer"
    arrays = {name: _numpy(x, fn, name) for name, x in (("moving", moving), ("fixed", fixed), ("warped", warped))}
    shapes = {}
    for name, a in arrays.items():
        if a.ndim not in (2, 3, 4, 5):
            raise ValueError(f"{fn}: {name} must be (H, W), (D, H, W) or (N, C, *spatial), got shape {a.shape}")
        shapes[name] = a.shape[2:] if a.ndim in (4, 5) else a.shape
    if len(set(shapes.values())) != 1:
        raise ValueError(f"{fn}: moving, fixed and warped must have the same spatial shape, got "
                         + ", ".join(f"{k} {v}" for k, v in shapes.items()))
    check_number(fn, "size", size, minimum=0, positive=True)
    is3d = len(shapes["moving"]) == 3

    def draw(view, position=0.5):
        kw = {}
        if is3d:
            vol = to_volume(fixed)
            kw = dict(axis=2, index=int(round(position * (vol.shape[2] - 1))))
        A = {"before": moving, "after": warped}[view]
        fig, axes = plt.subplots(1, 3, figsize=(3 * size, size * 1.1))
        show(A, axes[0], f"{view}: moving" if view == "before" else "after: warped", **kw)
        show(fixed, axes[1], "fixed", **kw)
        diff = to_slice(A, **kw) - to_slice(fixed, **kw)
        show(diff, axes[2], f"difference (RMS {np.sqrt((diff ** 2).mean()):.3f})", cmap="RdBu_r",
             vmin=-0.5, vmax=0.5, colorbar=True)
        plt.show()

    controls = dict(view=widgets.ToggleButtons(options=["before", "after"], value="after"))
    # a 2D image has no slice to choose: pin position, or interactive() would add a slider for it
    controls["position"] = (widgets.FloatSlider(min=0, max=1, step=0.01, value=0.5, description="slice",
                                                continuous_update=False) if is3d else widgets.fixed(0.5))
    return widgets.interactive(draw, **controls)


def registration_viewer(moving, fixed, warped, displacement, size: float = 2.6, step: int = 4):
    """Moving / fixed / warped / deformed grid / det J of a batch of registrations (2D or 3D).

    Args:
        moving, fixed, warped: ``(N, 1, *spatial)`` images (the same pairs).
        displacement: ``(N, ndim, *spatial)`` fields in voxels (``warp(moving, u) = warped``).
        step: grid line spacing of the deformation panel (voxels).

    Sliders pick the pair and, for 3D, the axial slice. Returns the widget (last expression of a
    cell displays it).
    """
    import ipywidgets as widgets
    fn = "registration_viewer"
    tensors = {"moving": moving, "fixed": fixed, "warped": warped, "displacement": displacement}
    for name, x in tensors.items():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a (N, C, *spatial) tensor, got {type(x).__name__}")
        if x.dim() not in (4, 5) or x.numel() == 0:
            raise ValueError(f"registration_viewer: {name} must be a (N, C, *spatial) tensor, "
                             f"got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
    n, spatial = moving.shape[0], tuple(moving.shape[2:])
    for name, x in tensors.items():
        if x.shape[0] != n or tuple(x.shape[2:]) != spatial:
            raise ValueError(f"registration_viewer: {name} must have {n} pairs of spatial shape {spatial} "
                             f"like moving {tuple(moving.shape)}, got {tuple(x.shape)}")
    if displacement.shape[1] != len(spatial):
        raise ValueError(f"registration_viewer: displacement must have {len(spatial)} channels, "
                         f"got {tuple(displacement.shape)}")
    if not displacement.is_floating_point():
        raise TypeError(f"{fn}: displacement must be a floating-point tensor, got dtype {displacement.dtype}")
    if not bool(torch.isfinite(displacement).all()):
        raise ValueError(f"{fn}: displacement contains NaN or Inf values (its det J panel cannot be drawn)")
    if min(spatial) < 2:
        raise ValueError(f"{fn}: every spatial size must be >= 2 (det J panel), got {spatial}")
    step = check_int(fn, "step", step, minimum=1)
    check_number(fn, "size", size, minimum=0, positive=True)
    is3d = len(spatial) == 3
    cpu = {k: v.detach().float().cpu() for k, v in tensors.items()}

    def draw(pair=0, position=0.5):
        i = slice(pair, pair + 1)
        kw = dict(axis=2, index=int(round(position * (spatial[2] - 1)))) if is3d else {}
        fig, axes = plt.subplots(1, 5, figsize=(5 * size, size * 1.1))
        show(cpu["moving"][i], axes[0], "moving", **kw)
        show(cpu["fixed"][i], axes[1], "fixed", **kw)
        show(cpu["warped"][i], axes[2], "warped", **kw)
        plot_grid(cpu["displacement"][i], axes[3], step=step, title="deformed grid", **kw)
        plot_jacobian(cpu["displacement"][i], axes[4], **kw)
        plt.show()

    controls = dict(pair=widgets.IntSlider(min=0, max=n - 1, value=0, description="pair",
                                           continuous_update=False))
    controls["position"] = (widgets.FloatSlider(min=0, max=1, step=0.01, value=0.5, description="slice",
                                                continuous_update=False) if is3d else widgets.fixed(0.5))
    return widgets.interactive(draw, **controls)
