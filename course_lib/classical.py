"""Classical iterative registration: a transform model, a similarity, an optimizer loop.

Introduced in lesson 02 (affine) and lesson 03 (dense / B-spline, added there). Plain functions
that return the transform and the loss history; they print nothing.

The recipe of every intensity-based method (Hill et al. 2001; Haskins et al. 2020, §2.2):
``θ* = argmin_θ  L(fixed, moving ∘ T_θ)``, with autograd for the gradient and Adam as optimizer,
coarse-to-fine over an image pyramid to widen the capture range.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ._checks import (check_callable, check_field, check_image, check_int, check_number, check_option,
                      check_same_shape, check_tensor, promote)
from .regularizers import diffusion
from .similarity import _as_loss, ssd
# the affine parametrisation lives in spatial (shared with networks.regressor); its public names are
# re-exported here, where lesson 02 introduces them
from .spatial import (MODELS, _params_to_matrix, _rescale_matrix, affine_to_displacement, compose,
                      gaussian_blur, integrate_velocity, n_params, params_to_matrix, rescale_matrix,
                      resize_displacement, resize_image, warp)
# the cubic B-spline lives in spatial (the simulator draws its velocities with it); lesson 03
# introduces it here as the free-form deformation's transform model
from .spatial import _bspline_field, _grid_size, bspline_field, bspline_grid_size  # noqa: F401

__all__ = ["AffineResult", "register_affine", "pyramid", "params_to_matrix", "rescale_matrix",
           "DenseResult", "register_dense", "bspline_field", "bspline_grid_size"]


@dataclass
class AffineResult:
    """Result of :func:`register_affine`.

    Attributes:
        matrix: ``(N, ndim+1, ndim+1)`` voxel map ``moving_from_fixed`` (use with ``warp_affine``).
        history: the loss (to minimise) at every iteration, all levels in order.
        level: the pyramid level of each entry of ``history`` (0 = full resolution).
    """

    matrix: torch.Tensor
    history: list = field(default_factory=list)
    level: list = field(default_factory=list)


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor, result, level: int) -> None:
    """One optimizer step; record the loss and the pyramid level in ``result``."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    result.history.append(loss.item())
    result.level.append(level)


def pyramid(image: torch.Tensor, levels: int, min_size: int = 8) -> list[torch.Tensor]:
    """Gaussian pyramid, coarsest first: level ``l`` is blurred (σ = 2^(l-1) voxels) and resized to
    about ``size / 2^l`` with ``align_corners=True``, so voxel ``i`` of level 0 sits at
    ``i (m-1)/(n-1)`` at level ``l`` (see :func:`rescale_matrix`)."""
    check_image("pyramid", "image", image)
    levels = check_int("pyramid", "levels", levels, minimum=1)
    min_size = check_int("pyramid", "min_size", min_size, minimum=1)
    return _pyramid(image, levels, min_size)


def _pyramid(image: torch.Tensor, levels: int, min_size: int = 8) -> list[torch.Tensor]:
    """:func:`pyramid` without the input checks."""
    out = []
    for lev in range(levels - 1, -1, -1):
        if lev == 0:
            out.append(image)
            continue
        size = [max(min_size, round(s / 2 ** lev)) for s in image.shape[2:]]
        out.append(resize_image(gaussian_blur(image, 2.0 ** (lev - 1)), size))
    return out


def register_affine(moving: torch.Tensor, fixed: torch.Tensor, similarity=ssd, model: str = "affine",
                    levels: int = 3, steps=100, lr: float = 0.02, init: torch.Tensor | None = None,
                    ) -> AffineResult:
    """Register ``moving`` to ``fixed`` with a translation, rigid or affine transform.

    Every pair of the batch is registered independently (its own parameters), all at once.

    Args:
        moving, fixed: ``(N, C, *spatial)`` on the same grid.
        similarity: a function or module of :mod:`course_lib.similarity` (or any callable with a
            ``higher_is_better`` attribute); it is maximised or minimised accordingly.
        model: ``"translation"``, ``"rigid"`` or ``"affine"``.
        levels: pyramid levels (1 = full resolution only).
        steps: Adam iterations per level (an int, or a list per level, coarsest first).
        lr: Adam learning rate (parameters are scaled so that one rate fits all, see
            :func:`params_to_matrix`).
        init: optional initial voxel matrix ``(N, ndim+1, ndim+1)``; the result is ``init @ T_θ``.
            It is cast to the dtype of the optimisation: that of the images (promoted if
            ``moving`` and ``fixed`` differ, see the dtype policy of :mod:`course_lib._checks`).

    Returns:
        :class:`AffineResult` with the final matrix and the loss history.
    """
    fn = "register_affine"
    check_image(fn, "moving", moving)
    check_image(fn, "fixed", fixed)
    check_same_shape(fn, "moving", moving, "fixed", fixed)
    moving, fixed = promote(moving, fixed)
    check_option(fn, "model", model, MODELS)
    loss_fn = _as_loss(fn, similarity)
    shape = tuple(fixed.shape[2:])
    ndim = len(shape)
    n = fixed.shape[0]
    levels, steps_per = _levels_and_steps(fn, levels, steps)
    check_number(fn, "lr", lr, minimum=0)
    if init is not None:
        check_tensor(fn, "init", init, ndims=(3,), floating=True, finite=True)
        if init.shape != (n, ndim + 1, ndim + 1):
            raise ValueError(f"{fn}: init must be {(n, ndim + 1, ndim + 1)}, got {tuple(init.shape)}")
    init_m = init.to(fixed) if init is not None else None

    theta = torch.zeros(n, n_params(model, ndim), dtype=fixed.dtype, device=fixed.device, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    result = AffineResult(matrix=None)
    for lev, (mov_l, fix_l, k) in enumerate(zip(_pyramid(moving, levels), _pyramid(fixed, levels), steps_per)):
        level = levels - 1 - lev
        shape_l = tuple(fix_l.shape[2:])
        for _ in range(k):
            m = _params_to_matrix(fn, theta, model, shape, check=False)
            if init_m is not None:
                m = init_m @ m
            m_l = _rescale_matrix(m, shape, shape_l)
            loss = loss_fn(warp(mov_l, affine_to_displacement(m_l, shape_l)), fix_l)
            _step(opt, loss, result, level)
    with torch.no_grad():
        m = _params_to_matrix(fn, theta, model, shape, check=False)
        result.matrix = (init_m @ m if init_m is not None else m).detach()
    return result


def _levels_and_steps(fn: str, levels, steps) -> tuple[int, list[int]]:
    """``levels`` a positive int; ``steps`` a positive int or a list of one positive int per level."""
    levels = check_int(fn, "levels", levels, minimum=1)
    if isinstance(steps, (list, tuple)):
        steps_per = [check_int(fn, "steps", k, minimum=1) for k in steps]
        if len(steps_per) != levels:
            raise ValueError(f"{fn}: steps must be an int or a list of {levels} ints, got {steps!r}")
    else:
        steps_per = [check_int(fn, "steps", steps, minimum=1)] * levels
    return levels, steps_per


# ---------------------------------------------------------------------------------------------
# Dense and B-spline free-form deformation (lesson 03)
# ---------------------------------------------------------------------------------------------

@dataclass
class DenseResult:
    """Result of :func:`register_dense`.

    Attributes:
        displacement: ``(N, ndim, *spatial)`` voxels, backward map (``warp(moving, displacement)``).
        history: total loss (similarity loss + weight × regularizer) at every iteration.
        level: pyramid level of each history entry (0 = full resolution).
        params: the optimised parameters (dense field at full resolution, or B-spline
            coefficients ``(N, ndim, *grid)`` in full-resolution voxels).
    """

    displacement: torch.Tensor
    history: list = field(default_factory=list)
    level: list = field(default_factory=list)
    params: torch.Tensor | None = None


def register_dense(moving: torch.Tensor, fixed: torch.Tensor, similarity=ssd,
                   model: str = "displacement", regularizer=diffusion, weight: float = 1.0,
                   levels: int = 3, steps=100, lr: float = 0.1, spacing: int = 8,
                   diffeomorphic: bool = False, init: torch.Tensor | None = None) -> DenseResult:
    """Deformable registration: ``min_u L(warp(moving, u), fixed) + weight · R(u)``.

    Args:
        moving, fixed: ``(N, C, *spatial)`` on the same grid (every pair registered independently).
        similarity: a :mod:`course_lib.similarity` function or module (maximised or minimised).
        model: ``"displacement"`` (one vector per voxel, optimised level by level and upsampled)
            or ``"bspline"`` (cubic B-spline FFD with control points every ``spacing`` voxels).
        regularizer: a function of the field, e.g. ``regularizers.diffusion`` or
            ``regularizers.bending_energy``; evaluated on the field at the current level (voxels).
        weight: regularization weight λ.
        levels, steps, lr: pyramid levels, Adam iterations per level (int or list, coarsest
            first) and learning rate (voxels per step, roughly).
        diffeomorphic: treat the field as a stationary velocity and integrate it
            (``spatial.integrate_velocity``), which keeps the map invertible.
        init: optional initial displacement ``(N, ndim, *spatial)`` (e.g. from an affine
            registration), cast to the images' dtype; the result is ``compose(init, u)``.

    Returns:
        :class:`DenseResult`.
    """
    fn = "register_dense"
    check_image(fn, "moving", moving)
    check_image(fn, "fixed", fixed)
    check_same_shape(fn, "moving", moving, "fixed", fixed)
    moving, fixed = promote(moving, fixed)
    check_option(fn, "model", model, ("displacement", "bspline"))
    spacing = check_int(fn, "spacing", spacing, minimum=1)
    loss_fn = _as_loss(fn, similarity)
    check_callable(fn, "regularizer", regularizer, "a function of the displacement, e.g. regularizers.diffusion")
    check_number(fn, "weight", weight, minimum=0)
    check_number(fn, "lr", lr, minimum=0)
    if not isinstance(diffeomorphic, bool):
        raise TypeError(f"{fn}: diffeomorphic must be a bool, got {type(diffeomorphic).__name__}")
    shape = tuple(fixed.shape[2:])
    ndim, n = len(shape), fixed.shape[0]
    levels, steps_per = _levels_and_steps(fn, levels, steps)
    if init is not None:
        check_field(fn, "init", init)
        if init.shape != (n, ndim, *shape):
            raise ValueError(f"{fn}: init must be {(n, ndim, *shape)}, got {tuple(init.shape)}")
        moving = warp(moving, init.to(moving))

    result = DenseResult(displacement=None)
    mov_pyr, fix_pyr = _pyramid(moving, levels), _pyramid(fixed, levels)
    kw = dict(dtype=fixed.dtype, device=fixed.device)
    param = None
    if model == "bspline":
        param = torch.zeros(n, ndim, *_grid_size(shape, spacing), **kw, requires_grad=True)
        opt = torch.optim.Adam([param], lr=lr)

    def field_at(level_shape):
        f = _bspline_field(fn, param, level_shape, spacing, shape) if model == "bspline" else param
        return integrate_velocity(f) if diffeomorphic else f

    for lev, (mov_l, fix_l, k) in enumerate(zip(mov_pyr, fix_pyr, steps_per)):
        level = levels - 1 - lev
        shape_l = tuple(fix_l.shape[2:])
        if model == "displacement":
            start = torch.zeros(n, ndim, *shape_l, **kw) if param is None else resize_displacement(param.detach(), shape_l)
            param = start.requires_grad_(True)
            opt = torch.optim.Adam([param], lr=lr)
        for _ in range(k):
            u = field_at(shape_l)
            loss = loss_fn(warp(mov_l, u), fix_l) + weight * regularizer(u)
            _step(opt, loss, result, level)
    with torch.no_grad():
        u = field_at(shape)
        result.displacement = compose(init.to(u), u) if init is not None else u
        result.params = param.detach()
    return result
