"""Displacement fields: the deformed grid, arrows and det J maps.

Part of :mod:`course_lib.viz` (introduced in lesson 01).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap, LogNorm
import numpy as np
import torch

from .._checks import check_flags, check_int, check_number
from ..spatial import _jacobian_determinant
from .images import _numpy, _show, _slice


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
              color: str = "tab:orange", axis: int = 2, index: int | None = None, frame: str = "moving"):
    """Draw a deformation as a grid, in the frame it belongs to (every ``step`` voxels).

    ``u`` is a backward map: fixed voxel ``x`` reads the moving image at ``x + u(x)``.

    - ``frame="moving"``: the fixed frame's regular grid carried to ``x + u(x)``, drawn in moving
      coordinates, so ``image`` should be the **moving** image: the lines show where each fixed
      grid line samples it.
    - ``frame="fixed"``: the moving frame's regular grid lines pulled back into the fixed frame
      (the level sets ``x_i + u_i(x) = k · step``: a grid drawn on the moving image, then warped
      like it), so ``image`` should be the **fixed** (or warped) image.

    The title says which frame. Returns ``ax``.
    """
    fn = "plot_grid"
    if frame not in ("moving", "fixed"):
        raise ValueError(f"{fn}: frame must be 'moving' or 'fixed', got {frame!r}")
    u = _field2d(displacement, axis, index)
    step = check_int(fn, "step", step, minimum=1)
    img = None if image is None else _slice(fn, "image", image, axis, index)
    if img is not None and img.shape != u.shape[1:]:
        raise ValueError(f"{fn}: image and displacement must have the same spatial shape, got slices "
                         f"{img.shape} and {u.shape[1:]}")
    ax = ax or plt.gca()
    if img is not None:
        _show(fn, "image", img, ax)
    h, w = u.shape[1:]
    gx, gy = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    px, py = gx + u[0], gy + u[1]
    if frame == "moving":
        for i in range(0, h, step):
            ax.plot(px[i, :], py[i, :], color=color, lw=0.7)
        for j in range(0, w, step):
            ax.plot(px[:, j], py[:, j], color=color, lw=0.7)
    else:
        for values, size in ((px, h), (py, w)):
            levels = np.arange(0, size, step)
            if np.nanmin(values) < levels[-1] and np.nanmax(values) > levels[0]:
                ax.contour(gx, gy, values, levels=levels, colors=color, linewidths=0.7)
    ax.set_xlim(-0.5, h - 0.5)
    ax.set_ylim(-0.5, w - 0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    where = "moving frame: x + u(x)" if frame == "moving" else "fixed frame: moving grid pulled back"
    ax.set_title(f"{title}\n({where})" if title else f"deformed grid ({where})", fontsize=10)
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
                  axis: int = 2, index: int | None = None, colorbar: bool = True, mask=None):
    """Map of det J on a log colour scale centred at 1, folded voxels (det J ≤ 0) in black.

    Blue shrinks, red grows, white keeps volume; the scale runs from ``1/vmax`` to ``vmax``
    (``vmax`` > 1; values beyond take the end colours), symmetric in log det J, so halving and
    doubling look equally strong. Folds are not "very small": they are drawn black, apart from the
    scale. ``mask`` (a brain mask of the image's shape) blanks the voxels outside it; the title's
    minimum and fold count are then taken inside it. Returns the ``AxesImage``.
    """
    fn = "plot_jacobian"
    d = displacement if isinstance(displacement, torch.Tensor) else torch.as_tensor(_numpy(displacement, fn, "displacement"))
    vmax = check_number(fn, "vmax", vmax)
    if not vmax > 1:
        raise ValueError(f"{fn}: vmax must be > 1 (the scale runs from 1/vmax to vmax), got {vmax}")
    check_flags(fn, colorbar=colorbar)
    jac = _slice(fn, "displacement", _jacobian_determinant(fn, d.detach().float().cpu())[:, None], axis, index)
    inside = np.ones(jac.shape, bool)
    if mask is not None:
        m = _slice(fn, "mask", mask, axis, index)
        if m.shape != jac.shape:
            raise ValueError(f"{fn}: mask must have the displacement's spatial shape, got slices {m.shape} "
                             f"and {jac.shape}")
        inside = m > 0
    ax = ax or plt.gca()
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad=(0, 0, 0, 0))          # outside the mask: transparent
    shown = np.where(inside & (jac > 0), jac, np.nan)
    im = ax.imshow(shown.T, origin="lower", cmap=cmap, norm=LogNorm(vmin=1 / vmax, vmax=vmax),
                   interpolation="nearest")
    folds = inside & (jac <= 0)
    if folds.any():
        ax.imshow(np.where(folds, 1.0, np.nan).T, origin="lower", cmap=ListedColormap(["black"]),
                  interpolation="nearest", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    low = jac[inside].min() if inside.any() else float("nan")
    where = " in mask" if mask is not None else ""
    ax.set_title(title or f"det J (min{where} {low:.2f}, {int(folds.sum())} folded px)", fontsize=10)
    if colorbar:
        cb = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04, extend="both")
        cb.set_label("det J (log scale; black: folded, ≤ 0)", fontsize=8)
    return im
