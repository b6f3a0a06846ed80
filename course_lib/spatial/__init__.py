"""Grids, warps, affine matrices, composition, velocity integration, Jacobians.

Introduced in lesson 01. Convention (see :mod:`course_lib`): displacements are
``(N, ndim, *spatial)`` in voxels, channel *i* along spatial axis *i*; transforms are backward
maps ``x ↦ x + u(x)`` from fixed to moving voxel coordinates; affine matrices are homogeneous
``(N, ndim+1, ndim+1)`` voxel-coordinate maps ``moving_from_fixed``.

The package holds four modules, every name importable from here: :mod:`~course_lib.spatial.grid`
(grids, warps, resizing, smoothing), :mod:`~course_lib.spatial.matrices` (affine matrices and their
parametrisation), :mod:`~course_lib.spatial.fields` (composition, integration, Jacobians, label
resampling) and :mod:`~course_lib.spatial.bspline` (the cubic B-spline).
"""

from __future__ import annotations

# private helpers are re-exported for the other course_lib modules (unchecked inner-loop versions)
from .bspline import _bspline_basis, _bspline_field, _grid_size, bspline_field, bspline_grid_size  # noqa: F401
from .fields import (_integrate, _jacobian_determinant, _warp_labels, compose, integrate_velocity,  # noqa: F401
                     jacobian_determinant, transform_points, warp_labels)
from .grid import (_MODES, _PADDINGS, ALIGN_CORNERS, Warp, _checked_warp, _resize,  # noqa: F401
                   _resize_displacement, _to_grid, _warp, gaussian_blur, identity_grid, resize_displacement,
                   resize_image, to_normalized_grid, warp)
from .matrices import (MODELS, _check_matrix, _params_to_matrix, _rescale_matrix,  # noqa: F401
                       _rotation_matrix, affine_matrix, affine_to_displacement, n_params, params_to_matrix,
                       rescale_matrix, rigid_matrix, rotation_matrix, warp_affine)

__all__ = [
    "ALIGN_CORNERS", "identity_grid", "to_normalized_grid", "warp", "Warp", "affine_matrix",
    "rigid_matrix", "rotation_matrix", "warp_affine", "affine_to_displacement", "compose",
    "integrate_velocity", "jacobian_determinant", "resize_displacement", "gaussian_blur",
    "resize_image", "transform_points", "params_to_matrix", "n_params", "rescale_matrix",
    "bspline_field", "bspline_grid_size", "warp_labels",
]
