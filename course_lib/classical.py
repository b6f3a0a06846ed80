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

from ._checks import check_image, check_same_shape
from .similarity import as_loss, ssd
from .spatial import (affine_to_displacement, gaussian_blur, resize_image, rotation_matrix,
                      warp)

__all__ = ["AffineResult", "register_affine", "pyramid", "params_to_matrix", "rescale_matrix"]

MODELS = ("translation", "rigid", "affine")


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


def pyramid(image: torch.Tensor, levels: int, min_size: int = 8) -> list[torch.Tensor]:
    """Gaussian pyramid, coarsest first: level ``l`` is blurred (σ = 2^(l-1) voxels) and resized to
    about ``size / 2^l`` with ``align_corners=True``, so voxel ``i`` of level 0 sits at
    ``i (m-1)/(n-1)`` at level ``l`` (see :func:`rescale_matrix`)."""
    check_image("pyramid", "image", image)
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"pyramid: levels must be a positive int, got {levels!r}")
    out = []
    for lev in range(levels - 1, -1, -1):
        if lev == 0:
            out.append(image)
            continue
        size = [max(min_size, round(s / 2 ** lev)) for s in image.shape[2:]]
        out.append(resize_image(gaussian_blur(image, 2.0 ** (lev - 1)), size))
    return out


def rescale_matrix(matrix: torch.Tensor, from_shape, to_shape) -> torch.Tensor:
    """Express a voxel affine of a grid ``from_shape`` on a resized grid ``to_shape``
    (``align_corners=True``): ``S M S⁻¹`` with ``S = diag((m-1)/(n-1))``."""
    s = [(m - 1) / max(n - 1, 1) for m, n in zip(to_shape, from_shape)]
    S = torch.diag(torch.tensor(s + [1.0], dtype=matrix.dtype, device=matrix.device))
    Si = torch.diag(torch.tensor([1 / v for v in s] + [1.0], dtype=matrix.dtype, device=matrix.device))
    return S @ matrix @ Si


def n_params(model: str, ndim: int) -> int:
    return {"translation": ndim, "rigid": ndim + (1 if ndim == 2 else 3),
            "affine": ndim * (ndim + 1)}[model]


def params_to_matrix(theta: torch.Tensor, model: str, shape) -> torch.Tensor:
    """Voxel matrices from optimisation parameters (zero = identity), about the image centre ``c``:
    ``x ↦ L (x - c) + c + t`` with ``t = t_norm · (n - 1) / 2`` (translation in half-image units, so
    one learning rate suits every parameter).

    * ``translation``: ``t_norm`` ``(N, ndim)``.
    * ``rigid``: angles (rad; 1 in 2D, 3 in 3D, see ``spatial.rotation_matrix``) then ``t_norm``.
    * ``affine``: ``ndim × ndim`` entries of ``L - I`` (row by row) then ``t_norm``.
    """
    ndim = len(shape)
    n = theta.shape[0]
    half = torch.tensor([(s - 1) / 2 for s in shape], dtype=theta.dtype, device=theta.device)
    eye = torch.eye(ndim, dtype=theta.dtype, device=theta.device)
    if model == "translation":
        lin, t = eye.expand(n, ndim, ndim), theta
    elif model == "rigid":
        k = 1 if ndim == 2 else 3
        lin, t = rotation_matrix(theta[:, :k]), theta[:, k:]
    elif model == "affine":
        lin, t = eye + theta[:, : ndim * ndim].view(n, ndim, ndim), theta[:, ndim * ndim:]
    else:
        raise ValueError(f"params_to_matrix: model must be one of {MODELS}, got {model!r}")
    shift = t * half + half - (lin @ half[:, None])[..., 0]          # (N, ndim)
    top = torch.cat([lin, shift[..., None]], dim=-1)
    bottom = torch.zeros(n, 1, ndim + 1, dtype=theta.dtype, device=theta.device)
    bottom[..., -1] = 1
    return torch.cat([top, bottom], dim=1)


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

    Returns:
        :class:`AffineResult` with the final matrix and the loss history.
    """
    fn = "register_affine"
    check_image(fn, "moving", moving)
    check_image(fn, "fixed", fixed)
    check_same_shape(fn, "moving", moving, "fixed", fixed)
    if model not in MODELS:
        raise ValueError(f"{fn}: model must be one of {MODELS}, got {model!r}")
    loss_fn = as_loss(similarity)
    shape = tuple(fixed.shape[2:])
    ndim = len(shape)
    n = fixed.shape[0]
    steps_per = [steps] * levels if isinstance(steps, int) else list(steps)
    if len(steps_per) != levels:
        raise ValueError(f"{fn}: steps must be an int or a list of {levels} ints, got {steps!r}")
    if init is not None and init.shape != (n, ndim + 1, ndim + 1):
        raise ValueError(f"{fn}: init must be {(n, ndim + 1, ndim + 1)}, got {tuple(init.shape)}")
    init_m = init.to(fixed) if init is not None else None

    theta = torch.zeros(n, n_params(model, ndim), dtype=fixed.dtype, device=fixed.device, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    result = AffineResult(matrix=None)
    for lev, (mov_l, fix_l, k) in enumerate(zip(pyramid(moving, levels), pyramid(fixed, levels), steps_per)):
        level = levels - 1 - lev
        shape_l = tuple(fix_l.shape[2:])
        for _ in range(k):
            m = params_to_matrix(theta, model, shape)
            if init_m is not None:
                m = init_m @ m
            m_l = rescale_matrix(m, shape, shape_l)
            loss = loss_fn(warp(mov_l, affine_to_displacement(m_l, shape_l)), fix_l)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            result.history.append(loss.item())
            result.level.append(level)
    with torch.no_grad():
        m = params_to_matrix(theta, model, shape)
        result.matrix = (init_m @ m if init_m is not None else m).detach()
    return result
