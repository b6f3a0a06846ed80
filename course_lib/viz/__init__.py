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

The package holds three modules, every name importable from here: :mod:`~course_lib.viz.images`
(slices, images, overlays, orientation markers), :mod:`~course_lib.viz.fields` (deformed grids,
arrows, det J maps) and :mod:`~course_lib.viz.viewers` (ipywidgets viewers).
"""

from __future__ import annotations

from .fields import plot_field, plot_grid, plot_jacobian  # noqa: F401
from .images import (_numpy, _show, _slice, checkerboard, mark_orientation, overlay, show,  # noqa: F401
                     show_row, to_slice)
from .viewers import _volume, compare_viewer, registration_viewer, slice_viewer, to_volume  # noqa: F401

__all__ = ["to_slice", "show", "show_row", "overlay", "checkerboard", "mark_orientation", "plot_grid",
           "plot_field", "plot_jacobian", "slice_viewer", "compare_viewer", "registration_viewer"]
