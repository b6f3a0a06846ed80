"""Interactive viewers (ipywidgets): slices of volumes, before/after, registration batches.

Part of :mod:`course_lib.viz` (introduced in lesson 00).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .._checks import check_flags, check_int, check_number
from .fields import plot_grid, plot_jacobian
from .images import _numpy, show, to_slice


def slice_viewer(images: dict, size: float = 3.0, orientation: bool = True, **kwargs):
    """Interactive viewer of 3D volumes ``{title: volume}``: sliders for the axis and the slice.

    ``orientation`` letters the subject's directions on each slice (:func:`mark_orientation`);
    other keywords go to :func:`show`.

    Works in JupyterLab (ipywidgets). Returns the widget; in a notebook, leave it as the cell's
    last expression to display it.
    """
    import ipywidgets as widgets
    if not isinstance(images, dict) or not images:
        raise TypeError(f"slice_viewer: images must be a non-empty dict {{title: volume}}, got {type(images).__name__}"
                        + (" (empty)" if isinstance(images, dict) else ""))
    check_number("slice_viewer", "size", size, minimum=0, positive=True)
    check_flags("slice_viewer", orientation=orientation)
    vols = {k: _volume("slice_viewer", f"images[{k!r}]", v) for k, v in images.items()}
    shape = next(iter(vols.values())).shape

    def draw(axis, position):
        fig, axes = plt.subplots(1, len(vols), figsize=(size * len(vols), size * 1.1), squeeze=False)
        for ax, (title, v) in zip(axes[0], vols.items()):
            idx = int(round(position * (v.shape[axis] - 1)))
            show(v, ax, f"{title} [{idx}]", axis=axis, index=idx, orientation=orientation, **kwargs)
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


def compare_viewer(moving, fixed, warped, size: float = 3.0, orientation: bool = True):
    """Before / after / difference viewer: choose what to compare with a toggle (2D or 3D inputs).

    ``moving``, ``fixed``, ``warped``: images of one shape, each 2D ``(H, W)`` / ``(N, C, H, W)`` or
    3D ``(D, H, W)`` / ``(N, C, D, H, W)`` (first image and channel shown). Checked before the
    widget is built. ``orientation`` letters the subject's directions on the brain slices.
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
    check_flags(fn, orientation=orientation)
    is3d = len(shapes["moving"]) == 3

    def draw(view, position=0.5):
        kw = {}
        if is3d:
            vol = to_volume(fixed)
            kw = dict(axis=2, index=int(round(position * (vol.shape[2] - 1))))
        A = {"before": moving, "after": warped}[view]
        fig, axes = plt.subplots(1, 3, figsize=(3 * size, size * 1.1))
        show(A, axes[0], f"{view}: moving" if view == "before" else "after: warped", orientation=orientation, **kw)
        show(fixed, axes[1], "fixed", orientation=orientation, **kw)
        diff = to_slice(A, **kw) - to_slice(fixed, **kw)
        show(diff, axes[2], f"difference (RMS {np.sqrt((diff ** 2).mean()):.3f})", cmap="RdBu_r",
             vmin=-0.5, vmax=0.5, colorbar="intensity difference")
        plt.show()

    controls = dict(view=widgets.ToggleButtons(options=["before", "after"], value="after"))
    # a 2D image has no slice to choose: pin position, or interactive() would add a slider for it
    controls["position"] = (widgets.FloatSlider(min=0, max=1, step=0.01, value=0.5, description="slice",
                                                continuous_update=False) if is3d else widgets.fixed(0.5))
    return widgets.interactive(draw, **controls)


def registration_viewer(moving, fixed, warped, displacement, size: float = 2.6, step: int = 4,
                        orientation: bool = True, names=None):
    """Moving / fixed / warped / deformed grid / det J of a batch of registrations (2D or 3D).

    Args:
        moving, fixed, warped: ``(N, 1, *spatial)`` images (the same pairs).
        displacement: ``(N, ndim, *spatial)`` fields in voxels (``warp(moving, u) = warped``).
        step: grid line spacing of the deformation panel (voxels): the fixed grid carried to
            ``x + u(x)`` over the moving image (:func:`plot_grid`, ``frame="moving"``).
        orientation: letter the subject's directions on the image panels.
        names: optional list of ``N`` titles, one per index (e.g. the method that registered a
            pair, when the batch is one pair registered by ``N`` methods); shown above the panels.

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
    check_flags(fn, orientation=orientation)
    if names is not None:
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not all(isinstance(t, str) for t in names):
            raise TypeError(f"{fn}: names must be a list of {n} strings or None, got {type(names).__name__}")
        if len(names) != n:
            raise ValueError(f"{fn}: names must hold one title per pair ({n}), got {len(names)}")
    is3d = len(spatial) == 3
    cpu = {k: v.detach().float().cpu() for k, v in tensors.items()}

    def draw(pair=0, position=0.5):
        i = slice(pair, pair + 1)
        kw = dict(axis=2, index=int(round(position * (spatial[2] - 1)))) if is3d else {}
        fig, axes = plt.subplots(1, 5, figsize=(5 * size, size * 1.1))
        show(cpu["moving"][i], axes[0], "moving", orientation=orientation, **kw)
        show(cpu["fixed"][i], axes[1], "fixed", orientation=orientation, **kw)
        show(cpu["warped"][i], axes[2], "warped", orientation=orientation, **kw)
        plot_grid(cpu["displacement"][i], axes[3], step=step, title="grid", image=cpu["moving"][i], **kw)
        plot_jacobian(cpu["displacement"][i], axes[4], **kw)
        if names is not None:
            fig.suptitle(names[pair])
        plt.show()

    controls = dict(pair=widgets.IntSlider(min=0, max=n - 1, value=0, description="pair",
                                           continuous_update=False))
    controls["position"] = (widgets.FloatSlider(min=0, max=1, step=0.01, value=0.5, description="slice",
                                                continuous_update=False) if is3d else widgets.fixed(0.5))
    return widgets.interactive(draw, **controls)
