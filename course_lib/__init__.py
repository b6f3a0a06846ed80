"""course_lib: the small PyTorch library behind *Deep Learning for Medical Image Registration*.

Convention (stated once here, enforced by ``tests/test_convention.py``):

* **Images** are tensors ``(N, C, *spatial)`` with ``spatial = (H, W)`` in 2D or
  ``(D, H, W)`` in 3D. Spatial axis *i* is array axis ``2 + i``. The course's 3D volumes keep
  the MNI template's voxel order (axis 0 = left→right, 1 = posterior→anterior,
  2 = inferior→superior); 2D slices are plain slices of those volumes, so a 2D axial slice has
  axis 0 = left→right and axis 1 = posterior→anterior. ``viz`` turns them upright for display.
* **Displacement fields** are ``(N, ndim, *spatial)`` and measured **in voxels**; channel *i*
  is the displacement along spatial axis *i* (not x/y/z in ``grid_sample``'s reversed order).
* **Transforms are backward (pull) maps** from fixed-image voxel coordinates to moving-image
  voxel coordinates: ``warp(moving, u)(x) = moving(x + u(x))``. A registration that aligns
  ``moving`` to ``fixed`` returns ``u`` such that ``warp(moving, u) ≈ fixed``.
* **Affine matrices** are homogeneous ``(N, ndim+1, ndim+1)`` in voxel coordinates, mapping
  fixed voxel coordinates to moving voxel coordinates (``moving_from_fixed``).
* Exactly one function, :func:`course_lib.spatial.to_normalized_grid`, converts voxel
  coordinates to the normalized ``[-1, 1]`` grid of :func:`torch.nn.functional.grid_sample`,
  always with ``align_corners=True`` (voxel 0 ↦ -1, voxel ``n-1`` ↦ +1), see
  :data:`course_lib.spatial.ALIGN_CORNERS`.

Modules: ``config``, ``data``, ``spatial``, ``similarity``, ``regularizers``, ``metrics``,
``classical``, ``train``, ``viz`` (and, as later lessons add them, ``features``, ``rotations``,
``networks``, and ``evaluation``, the protocol that scores every method alike).
"""

__version__ = "0.1.0"
