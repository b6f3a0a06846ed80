"""Rotation representations and the geodesic distance on SO(3). Introduced in lesson 07.

Four ways to write the same rotation, all batched ``(N, ...)``, all differentiable:

* **Euler angles** in the course's convention (:func:`course_lib.spatial.rotation_matrix`):
  3D ``(N, 3)`` are rotations about spatial axes 0, 1 and 2 applied in that order,
  ``R = R2 @ R1 @ R0``; 2D ``(N, 1)`` rotates axis 0 towards axis 1.
* **Axis-angle** (rotation vector) ``(N, 3)``: direction = axis, norm = angle in radians.
* **Unit quaternions** ``(N, 4)`` ordered ``(w, x, y, z)``; ``q`` and ``-q`` are the same rotation,
  functions here return the one with ``w >= 0``.
* **Rotation matrices** ``(N, 3, 3)`` (or ``(N, 2, 2)`` in 2D), orthogonal with determinant +1.

Convention: a rotation vector ``θ·e`` maps to the right-handed rotation by ``θ`` about ``e``
(Rodrigues, ``R = I + sin θ K + (1 - cos θ) K²`` with ``K = [e]×``), so ``(a, 0, 0)``,
``(0, a, 0)``, ``(0, 0, a)`` give exactly ``R0``, ``R1``, ``R2`` of ``rotation_matrix``. The
quaternion ``(cos θ/2, sin θ/2 · e)`` is the same rotation.

The **geodesic distance** between two rotations is the angle of the relative rotation
``R1ᵀ R2``: ``d = arccos((tr(R1ᵀ R2) - 1) / 2)`` in ``[0, π]``. It is computed as
``atan2(‖skew part‖, tr - 1)``, exact near 0 and near π and with a finite gradient everywhere
(``arccos`` has an infinite derivative at both ends).

References: D. Q. Huynh, *Metrics for 3D rotations: comparison and analysis*, J. Math. Imaging
Vis. 35 (2009); S. S. M. Salehi, S. Khan, D. Erdogmus, A. Gholipour, *Real-time deep pose
estimation with geodesic loss for image-to-template rigid registration*, IEEE TMI 38 (2019);
R. Hartley, J. Trumpf, Y. Dai, H. Li, *Rotation averaging*, IJCV 103 (2013).
"""

from __future__ import annotations

import math

import torch

from ._checks import check_int, check_number, check_option, check_tensor, promote
from .spatial import _rotation_matrix

__all__ = [
    "euler_to_matrix", "matrix_to_euler", "axis_angle_to_matrix", "matrix_to_axis_angle",
    "quaternion_to_matrix", "matrix_to_quaternion", "axis_angle_to_quaternion",
    "quaternion_to_axis_angle", "random_rotation_vectors", "random_quaternions",
    "geodesic_distance", "GeodesicLoss",
]

_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------------------------
# input checks (every message names the function, the argument, expected and actual shape)
# ---------------------------------------------------------------------------------------------

def _check_vectors(fn: str, name: str, x, sizes: tuple[int, ...], what: str) -> torch.Tensor:
    check_tensor(fn, name, x, ndims=(2,), floating=True, finite=True, nonempty=True)
    if x.shape[1] not in sizes:
        want = " or ".join(f"(N, {k})" for k in sizes)
        raise ValueError(f"{fn}: {name} must be {want} ({what}), got shape {tuple(x.shape)}")
    return x


def _check_rotation(fn: str, name: str, r, sizes: tuple[int, ...] = (3,)) -> int:
    """A batch of square matrices ``(N, k, k)`` with ``k`` in ``sizes``; returns ``k``."""
    check_tensor(fn, name, r, ndims=(3,), floating=True, finite=True, nonempty=True)
    k = r.shape[-1]
    if r.shape[-2] != k or k not in sizes:
        want = " or ".join(f"(N, {s}, {s})" for s in sizes)
        raise ValueError(f"{fn}: {name} must be {want} rotation matrices, got shape {tuple(r.shape)}"
                         + (" (add a batch axis: R[None])" if r.dim() == 2 else ""))
    return k


def _safe_norm(v: torch.Tensor) -> torch.Tensor:
    """``‖v‖`` over the last axis with a finite gradient at ``v = 0`` (where it returns ~1e-150)."""
    tiny = torch.finfo(v.dtype).tiny
    return torch.sqrt(torch.clamp((v * v).sum(-1), min=tiny))


# ---------------------------------------------------------------------------------------------
# Euler angles (the course's convention)
# ---------------------------------------------------------------------------------------------

def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from Euler angles (radians), the course's convention.

    Args:
        angles: ``(N, 3)``: about spatial axes 0, 1, 2 applied in that order (``R = R2 R1 R0``),
            or ``(N, 1)`` in 2D.

    Returns:
        ``(N, 3, 3)`` or ``(N, 2, 2)``; identical to :func:`course_lib.spatial.rotation_matrix`.
    """
    _check_vectors("euler_to_matrix", "angles", angles, (1, 3), "Euler angles in radians")
    return _rotation_matrix("euler_to_matrix", angles)


def matrix_to_euler(matrix: torch.Tensor) -> torch.Tensor:
    """Euler angles (radians) of rotation matrices, the inverse of :func:`euler_to_matrix`.

    3D: ``R = R2(a2) R1(a1) R0(a0)`` gives ``a1 = atan2(-R[2,0], √(R[0,0]² + R[1,0]²))`` in
    ``[-π/2, π/2]``, ``a0 = atan2(R[2,1], R[2,2])`` and ``a2 = atan2(R[1,0], R[0,0])`` in
    ``(-π, π]``. At gimbal lock (``|a1| = π/2``) only ``a2 ∓ a0`` is defined; we return ``a0 = 0``.

    Args:
        matrix: ``(N, 3, 3)`` (or ``(N, 2, 2)``) rotation matrices.

    Returns:
        ``(N, 3)`` (or ``(N, 1)``).
    """
    k = _check_rotation("matrix_to_euler", "matrix", matrix, (2, 3))
    r = matrix
    if k == 2:
        return torch.atan2(r[:, 1, 0], r[:, 0, 0])[:, None]
    c1 = torch.sqrt(r[:, 0, 0] ** 2 + r[:, 1, 0] ** 2)
    a1 = torch.atan2(-r[:, 2, 0], c1)
    locked = c1 < math.sqrt(torch.finfo(r.dtype).eps)
    a0 = torch.where(locked, torch.zeros_like(c1), torch.atan2(r[:, 2, 1], r[:, 2, 2]))
    a2 = torch.where(locked, torch.atan2(-r[:, 0, 1], r[:, 1, 1]), torch.atan2(r[:, 1, 0], r[:, 0, 0]))
    return torch.stack([a0, a1, a2], dim=-1)


# ---------------------------------------------------------------------------------------------
# quaternions and rotation vectors
# ---------------------------------------------------------------------------------------------

def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(N, 3, 3)`` from quaternions ``(N, 4)`` ordered ``(w, x, y, z)``.

    The quaternion is normalized first (so any non-zero ``q`` works, and ``q`` and ``-q`` give
    the same matrix); a zero quaternion is a ``ValueError``.
    """
    fn = "quaternion_to_matrix"
    _check_vectors(fn, "quaternion", quaternion, (4,), "(w, x, y, z)")
    norm = quaternion.norm(dim=-1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError(f"{fn}: quaternion must be non-zero, got a zero row (shape {tuple(quaternion.shape)})")
    w, x, y, z = (quaternion / norm).unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``(N, 4)`` ``(w, x, y, z)`` with ``w >= 0`` from rotation matrices ``(N, 3, 3)``.

    Shepperd's method: of the four ways to read ``q`` off ``R``, use the one that divides by the
    largest component, which is accurate for every rotation (including angle π, where ``w = 0``).
    """
    _check_rotation("matrix_to_quaternion", "matrix", matrix, (3,))
    r = matrix
    r00, r01, r02 = r[:, 0, 0], r[:, 0, 1], r[:, 0, 2]
    r10, r11, r12 = r[:, 1, 0], r[:, 1, 1], r[:, 1, 2]
    r20, r21, r22 = r[:, 2, 0], r[:, 2, 1], r[:, 2, 2]
    # 4 * component² for w, x, y, z
    sq = torch.stack([1 + r00 + r11 + r22, 1 + r00 - r11 - r22,
                      1 - r00 + r11 - r22, 1 - r00 - r11 + r22], dim=-1)           # (N, 4)
    two_abs = torch.sqrt(torch.clamp(sq, min=0.0) + torch.finfo(r.dtype).tiny)    # 2 |component|
    # candidate i, all multiplied by 4 * q_i: row i = 4 q_i (w, x, y, z)
    cand = torch.stack([
        torch.stack([sq[:, 0], r21 - r12, r02 - r20, r10 - r01], -1),
        torch.stack([r21 - r12, sq[:, 1], r01 + r10, r02 + r20], -1),
        torch.stack([r02 - r20, r01 + r10, sq[:, 2], r12 + r21], -1),
        torch.stack([r10 - r01, r02 + r20, r12 + r21, sq[:, 3]], -1),
    ], dim=1)                                                                      # (N, 4, 4)
    cand = cand / (2 * torch.clamp(two_abs, min=0.1))[..., None]                   # 4 q_i / (2·2|q_i|)
    best = sq.argmax(dim=-1)                                                       # (N,)
    q = cand[torch.arange(r.shape[0], device=r.device), best]                      # (N, 4)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[:, :1] < 0, -q, q)


def axis_angle_to_quaternion(rotvec: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``(N, 4)`` from rotation vectors ``(N, 3)``: ``(cos θ/2, sin(θ/2) e)``."""
    _check_vectors("axis_angle_to_quaternion", "rotvec", rotvec, (3,), "axis × angle in radians")
    theta = _safe_norm(rotvec)[:, None]                                            # (N, 1)
    small = theta < 1e-4
    t = torch.where(small, torch.ones_like(theta), theta)                          # no 0/0 in either branch
    # sin(θ/2)/θ, Taylor 1/2 - θ²/48 near 0
    factor = torch.where(small, 0.5 - theta * theta / 48, torch.sin(t / 2) / t)
    return torch.cat([torch.cos(theta / 2), rotvec * factor], dim=-1)


def quaternion_to_axis_angle(quaternion: torch.Tensor) -> torch.Tensor:
    """Rotation vectors ``(N, 3)`` (norm = angle in ``[0, π]``) from quaternions ``(N, 4)`` ``(w, x, y, z)``."""
    fn = "quaternion_to_axis_angle"
    _check_vectors(fn, "quaternion", quaternion, (4,), "(w, x, y, z)")
    norm = quaternion.norm(dim=-1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError(f"{fn}: quaternion must be non-zero, got a zero row (shape {tuple(quaternion.shape)})")
    q = quaternion / norm
    q = torch.where(q[:, :1] < 0, -q, q)
    w, v = q[:, :1], q[:, 1:]
    n = _safe_norm(v)[:, None]                                                     # sin(θ/2)
    theta = 2 * torch.atan2(n, w)
    small = n < 1e-6
    n_safe = torch.where(small, torch.ones_like(n), n)
    # θ / sin(θ/2) = 2 atan(n/w) / n → 2/w - 2n²/(3w³) near 0 (there w ≈ 1)
    factor = torch.where(small, 2 / w - 2 * n * n / (3 * w ** 3), theta / n_safe)
    return v * factor


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(N, 3, 3)`` from rotation vectors ``(N, 3)`` (Rodrigues' formula)."""
    _check_vectors("axis_angle_to_matrix", "rotvec", rotvec, (3,), "axis × angle in radians")
    return quaternion_to_matrix(axis_angle_to_quaternion(rotvec))


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation vectors ``(N, 3)`` with norm in ``[0, π]`` from rotation matrices ``(N, 3, 3)``."""
    _check_rotation("matrix_to_axis_angle", "matrix", matrix, (3,))
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


# ---------------------------------------------------------------------------------------------
# random rotations (for tests and lessons)
# ---------------------------------------------------------------------------------------------

def _random_options(fn: str, n, generator, dtype) -> int:
    n = check_int(fn, "n", n, minimum=1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{fn}: generator must be a torch.Generator or None, got {type(generator).__name__}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{fn}: dtype must be a floating torch.dtype, got {dtype!r}")
    return n


def random_rotation_vectors(n: int, max_angle: float = math.pi, generator: torch.Generator | None = None,
                            dtype=torch.float64, min_angle: float = 0.0) -> torch.Tensor:
    """``(n, 3)`` rotation vectors: axis uniform on the sphere, angle uniform in ``[min_angle, max_angle]``."""
    fn = "random_rotation_vectors"
    n = _random_options(fn, n, generator, dtype)
    max_angle = check_number(fn, "max_angle", max_angle)
    min_angle = check_number(fn, "min_angle", min_angle)
    if not 0 <= min_angle <= max_angle:
        raise ValueError(f"{fn}: need 0 <= min_angle <= max_angle, got {min_angle}, {max_angle}")
    axis = torch.randn(n, 3, generator=generator, dtype=dtype)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    angle = min_angle + (max_angle - min_angle) * torch.rand(n, 1, generator=generator, dtype=dtype)
    return axis * angle


def random_quaternions(n: int, generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
    """``(n, 4)`` unit quaternions (``w >= 0``) uniformly distributed over SO(3) (normalized Gaussians)."""
    n = _random_options("random_quaternions", n, generator, dtype)
    q = torch.randn(n, 4, generator=generator, dtype=dtype)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[:, :1] < 0, -q, q)


# ---------------------------------------------------------------------------------------------
# the geodesic distance and loss
# ---------------------------------------------------------------------------------------------

def geodesic_distance(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Angle (radians, in ``[0, π]``) of the relative rotation ``R1ᵀ R2``, per pair: ``(N,)``.

    ``d(R1, R2) = arccos((tr(R1ᵀ R2) - 1) / 2)``, evaluated as ``atan2(‖s‖, tr - 1)`` where
    ``s = (M21 - M12, M02 - M20, M10 - M01)`` is the skew part of ``M = R1ᵀ R2`` (``‖s‖ = 2 sin d``,
    ``tr - 1 = 2 cos d``). This is exact to rounding at 0 and π, where ``arccos`` loses half the
    digits, and its gradient is finite everywhere (0 at exactly 0 and π, where the distance has
    a kink). In 2D (``(N, 2, 2)``) it is ``|atan2(M10 - M01, M00 + M11)|``.

    Args:
        r1, r2: rotation matrices of the same shape ``(N, 3, 3)`` (or ``(N, 2, 2)``). They are not
            re-orthogonalized; feed rotations (e.g. :func:`euler_to_matrix` of network outputs).

    ``r1`` and ``r2`` of different floating dtypes give the common dtype.

    References: Huynh 2009 (metric Φ6); Salehi et al. 2019 (geodesic loss).
    """
    return _geodesic_distance("geodesic_distance", r1, r2)


def _geodesic_distance(fn: str, r1, r2, names: tuple[str, str] = ("r1", "r2")) -> torch.Tensor:
    k = _check_rotation(fn, names[0], r1, (2, 3))
    _check_rotation(fn, names[1], r2, (2, 3))
    if r1.shape != r2.shape:
        raise ValueError(f"{fn}: {names[0]} and {names[1]} must have the same shape (N, {k}, {k}), "
                         f"got {tuple(r1.shape)} and {tuple(r2.shape)}")
    r1, r2 = promote(r1, r2)
    m = r1.transpose(-1, -2) @ r2                                                  # (N, k, k)
    if k == 2:
        return torch.atan2(m[:, 1, 0] - m[:, 0, 1], m[:, 0, 0] + m[:, 1, 1]).abs()
    skew = torch.stack([m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1)
    trace = m.diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.atan2(_safe_norm(skew), trace - 1)


class GeodesicLoss(torch.nn.Module):
    """Mean (or summed, or per-pair) geodesic distance between predicted and true rotations.

    ``GeodesicLoss()(R_pred, R_true)`` with both ``(N, 3, 3)`` returns radians; the module only
    holds ``reduction`` (``"mean"``, ``"sum"`` or ``"none"``), see :func:`geodesic_distance`.

    References: Salehi et al., IEEE TMI 38(2), 2019.
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = check_option("GeodesicLoss", "reduction", reduction, _REDUCTIONS)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        d = _geodesic_distance("GeodesicLoss.forward", input, target, ("input", "target"))
        if self.reduction == "mean":
            return d.mean()
        if self.reduction == "sum":
            return d.sum()
        return d

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
