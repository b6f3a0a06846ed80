"""Affine matrices: from parameters, rotations and rigid motions, to displacements and warps.

Part of :mod:`course_lib.spatial` (introduced in lesson 01). Also the parametrisation used by the
iterative affine registration of :mod:`course_lib.classical` and by the regression networks of
:mod:`course_lib.networks`, which both import it from here: geometry lives in one place.
"""

from __future__ import annotations

import torch

from .._checks import check_image, check_int, check_option, check_size, check_tensor, promote
from .grid import _MODES, _PADDINGS, _checked_warp, identity_grid

#: transform models of :func:`params_to_matrix`
MODELS = ("translation", "rigid", "affine")


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


def rescale_matrix(matrix: torch.Tensor, from_shape, to_shape) -> torch.Tensor:
    """Express a voxel affine of a grid ``from_shape`` on a resized grid ``to_shape``
    (``align_corners=True``): ``S M S⁻¹`` with ``S = diag((m-1)/(n-1))``.

    ``matrix`` must be floating (an integer matrix would truncate the scale factors)."""
    fn = "rescale_matrix"
    ndim = _check_matrix(fn, matrix)
    from_shape = check_size(fn, "from_shape", from_shape, ndim)
    to_shape = check_size(fn, "to_shape", to_shape, ndim)
    return _rescale_matrix(matrix, from_shape, to_shape)


def _rescale_matrix(matrix: torch.Tensor, from_shape, to_shape) -> torch.Tensor:
    """:func:`rescale_matrix` without the input checks (inner optimisation loop)."""
    s = [(m - 1) / max(n - 1, 1) for m, n in zip(to_shape, from_shape)]
    S = torch.diag(torch.tensor(s + [1.0], dtype=matrix.dtype, device=matrix.device))
    Si = torch.diag(torch.tensor([1 / v for v in s] + [1.0], dtype=matrix.dtype, device=matrix.device))
    return S @ matrix @ Si


def n_params(model: str, ndim: int) -> int:
    """How many parameters :func:`params_to_matrix` takes for ``model`` in ``ndim`` (2 or 3) dimensions."""
    check_option("n_params", "model", model, MODELS)
    ndim = check_int("n_params", "ndim", ndim)
    if ndim not in (2, 3):
        raise ValueError(f"n_params: ndim must be 2 or 3, got {ndim}")
    return _n_params(model, ndim)


def _n_params(model: str, ndim: int) -> int:
    return {"translation": ndim, "rigid": ndim + (1 if ndim == 2 else 3),
            "affine": ndim * (ndim + 1)}[model]


def params_to_matrix(theta: torch.Tensor, model: str, shape) -> torch.Tensor:
    """Voxel matrices from optimisation parameters (zero = identity), about the image centre ``c``:
    ``x ↦ L (x - c) + c + t`` with ``t = t_norm · (n - 1) / 2`` (translation in half-image units, so
    one learning rate suits every parameter).

    * ``translation``: ``t_norm`` ``(N, ndim)``.
    * ``rigid``: angles (rad; 1 in 2D, 3 in 3D, see ``spatial.rotation_matrix``) then ``t_norm``.
    * ``affine``: ``ndim × ndim`` entries of ``L - I`` (row by row) then ``t_norm``.

    ``theta`` is ``(N, k)`` floating (``k = n_params(model, ndim)``: 2/3, 3/6 or 6/12 in 2D/3D);
    integer parameters are a ``TypeError`` (they would truncate the matrix).
    """
    return _params_to_matrix("params_to_matrix", theta, model, shape)


def _params_to_matrix(fn: str, theta, model: str, shape, check: bool = True, name: str = "theta") -> torch.Tensor:
    if check:
        check_option(fn, "model", model, MODELS)
        shape = check_size(fn, "shape", shape, (2, 3))
        check_tensor(fn, name, theta, ndims=(2,), floating=True, finite=True, nonempty=True)
        k = _n_params(model, len(shape))
        if theta.shape[1] != k:
            raise ValueError(f"{fn}: {name} must be (N, {k}) for model={model!r} in {len(shape)}D, "
                             f"got {tuple(theta.shape)}")
    ndim = len(shape)
    n = theta.shape[0]
    half = torch.tensor([(s - 1) / 2 for s in shape], dtype=theta.dtype, device=theta.device)
    eye = torch.eye(ndim, dtype=theta.dtype, device=theta.device)
    if model == "translation":
        lin, t = eye.expand(n, ndim, ndim), theta
    elif model == "rigid":
        k = 1 if ndim == 2 else 3
        lin, t = _rotation_matrix(fn, theta[:, :k], check=False), theta[:, k:]
    else:  # affine
        lin, t = eye + theta[:, : ndim * ndim].view(n, ndim, ndim), theta[:, ndim * ndim:]
    shift = t * half + half - (lin @ half[:, None])[..., 0]          # (N, ndim)
    top = torch.cat([lin, shift[..., None]], dim=-1)
    bottom = torch.zeros(n, 1, ndim + 1, dtype=theta.dtype, device=theta.device)
    bottom[..., -1] = 1
    return torch.cat([top, bottom], dim=1)
