"""Image similarity measures: SSD, NCC, local NCC, mutual information, normalized MI.

Introduced in lesson 02. Every function takes two image batches ``a`` and ``b`` of the same shape
``(N, C, *spatial)`` and returns a scalar, averaged over the batch. Each function carries the
attribute ``higher_is_better``; :func:`as_loss` turns any of them into a quantity to minimise.
Module twins (``SSD``, ``NCC``, …) only hold hyper-parameters.

References: Hill et al. 2001 (medical image registration review); Viola & Wells 1997 and
Collignon/Maes et al. 1997 (mutual information); Studholme et al. 1999 (NMI);
Avants et al. 2008 and Balakrishnan et al. 2019 (local cross-correlation).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ._checks import check_image, check_same_shape, check_tensor

__all__ = ["ssd", "ncc", "lncc", "mutual_information", "nmi", "soft_dice", "as_loss",
           "SSD", "NCC", "LNCC", "MutualInformation", "NMI", "SoftDice", "SIMILARITIES"]


def _pair(fn: str, a, b) -> None:
    check_image(fn, "a", a)
    check_image(fn, "b", b)
    check_same_shape(fn, "a", a, "b", b)


def _higher(flag: bool):
    def deco(f):
        f.higher_is_better = flag
        return f
    return deco


@_higher(False)
def ssd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean of squared differences ``mean((a - b)^2)``. Lower is better (0 when equal)."""
    _pair("ssd", a, b)
    return ((a - b) ** 2).mean()


@_higher(True)
def ncc(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Global normalized cross-correlation per image, averaged over the batch.

    ``NCC = Σ (a - ā)(b - b̄) / sqrt(Σ (a - ā)² Σ (b - b̄)²)`` in ``[-1, 1]``; invariant to
    ``b ↦ αb + β`` with ``α > 0``. Higher is better.
    """
    _pair("ncc", a, b)
    a = a.flatten(1)
    b = b.flatten(1)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    num = (a * b).sum(1)
    den = torch.sqrt((a * a).sum(1) * (b * b).sum(1) + eps)
    return (num / den).mean()


def _box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of ``x`` ``(N, C, *spatial)`` over a ``window``-wide box centred on each voxel, counting only
    voxels inside the image (= ``avg_pool`` with ``count_include_pad=False``). Separable running sums
    (cumulative sums), so the cost does not grow with the window: 6× faster than ``avg_pool2d`` in 2D
    and about 20× faster than ``avg_pool3d`` in 3D for ``window = 9``, and as accurate."""
    ndim = x.dim() - 2
    pad = window // 2
    for axis in range(ndim):
        dim, n = 2 + axis, x.shape[2 + axis]
        spec = [0, 0] * ndim                                   # F.pad lists the last axis first
        spec[2 * (ndim - 1 - axis)], spec[2 * (ndim - 1 - axis) + 1] = pad + 1, pad
        csum = F.pad(x, spec).cumsum(dim)                      # csum[i] = sum of x[: i - pad]
        total = csum.narrow(dim, window, n) - csum.narrow(dim, 0, n)
        i = torch.arange(n, device=x.device)
        count = (torch.clamp(i + pad, max=n - 1) - torch.clamp(i - pad, min=0) + 1).to(x.dtype)
        x = total / count.view([n if d == dim else 1 for d in range(x.dim())])
    return x


@_higher(True)
def lncc(a: torch.Tensor, b: torch.Tensor, window: int = 9, eps: float = 1e-5) -> torch.Tensor:
    """Local (windowed) squared normalized cross-correlation, as in VoxelMorph.

    In each ``window``-wide box: ``cc = cov(a, b)² / (var(a) var(b) + eps / n²)`` with
    ``n = window^ndim`` voxels per box, i.e. VoxelMorph's formula on window *sums*
    ``(Σ ab - n ā b̄)² / ((Σ a² - n ā²)(Σ b² - n b̄²) + eps)``; returns the mean over voxels and batch,
    in ``[0, 1]``. Flat boxes (no variance) score 0. Higher is better. Single-channel images only.
    """
    _pair("lncc", a, b)
    if a.shape[1] != 1:
        raise ValueError(f"lncc: images must have 1 channel, got shape {tuple(a.shape)}")
    if not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"lncc: window must be a positive odd int, got {window!r}")
    ndim = a.dim() - 2

    def mean(x):  # box mean over the window, voxels outside the image not counted
        return _box_mean(x, window)

    ma, mb = mean(a), mean(b)
    cov = mean(a * b) - ma * mb
    va = (mean(a * a) - ma * ma).clamp_min(0)
    vb = (mean(b * b) - mb * mb).clamp_min(0)
    n = window ** ndim
    return (cov * cov / (va * vb + eps / n ** 2)).mean()


def _parzen_band(x: torch.Tensor, bins: int, sigma: float):
    """Gaussian Parzen weights of intensities ``x`` ``(N, V)`` in ``[0, 1]`` on ``bins`` bin centres
    ``c_k = k / (bins - 1)``, kept only for the ``2r`` bins around ``x`` (``r = ⌈4σ / bin width⌉``;
    every dropped weight is below ``e^{-8}`` of the peak), normalised to sum 1 per voxel.

    Returns ``idx`` ``(N, V, 2r)`` (bin indices, clamped into range), ``w`` (weights, 0 for bins
    outside the range) and ``d = (x - c_idx) / σ``.
    """
    h = 1.0 / (bins - 1)
    r = min(bins, max(1, math.ceil(4.0 * sigma / h)))
    base = torch.floor(x.detach() / h).long()
    idx = base[..., None] + torch.arange(-r + 1, r + 1, device=x.device)       # (N, V, 2r)
    valid = (idx >= 0) & (idx < bins)
    d = (x[..., None] - idx.to(x.dtype) * h) / sigma
    w = torch.exp(-0.5 * d * d) * valid
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    return idx.clamp_(0, bins - 1), w, d


def _dense(idx: torch.Tensor, w: torch.Tensor, bins: int) -> torch.Tensor:
    """Scatter banded weights ``(N, V, K)`` into dense per-voxel bin weights ``(N, V, bins)``."""
    return torch.zeros(*w.shape[:-1], bins, dtype=w.dtype, device=w.device).scatter_add_(-1, idx, w)


class _SoftJointHistogram(torch.autograd.Function):
    """Unnormalised soft joint histogram ``Σ_v w_a(v) ⊗ w_b(v)`` ``(N, bins, bins)`` of scaled
    intensities ``xa, xb`` ``(N, V)``, with an analytic backward through the banded weights
    (``∂w_k/∂x = w_k (d̄ - d_k) / σ`` with ``d̄ = Σ_j w_j d_j``): 3-4× faster than letting autograd
    trace the dense ``(N, V, bins)`` Gaussian weights."""

    @staticmethod
    def forward(ctx, xa, xb, bins, sigma):
        ia, wa, da = _parzen_band(xa, bins, sigma)
        ib, wb, db = _parzen_band(xb, bins, sigma)
        dense_a, dense_b = _dense(ia, wa, bins), _dense(ib, wb, bins)      # (N, V, bins)
        ctx.save_for_backward(ia, wa, da, ib, wb, db, dense_a, dense_b)
        ctx.sigma = sigma
        return dense_a.transpose(1, 2) @ dense_b                            # (N, bins, bins)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        ia, wa, da, ib, wb, db, dense_a, dense_b = ctx.saved_tensors

        def through_weights(grad_dense, idx, w, d):                         # (N, V, bins) -> (N, V)
            gw = grad_dense.gather(-1, idx)
            dbar = (w * d).sum(-1, keepdim=True)
            return (gw * w * (dbar - d)).sum(-1) / ctx.sigma

        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = through_weights(dense_b @ grad.transpose(1, 2), ia, wa, da)
        if ctx.needs_input_grad[1]:
            gb = through_weights(dense_a @ grad, ib, wb, db)
        return ga, gb, None, None


def _joint_histogram(a: torch.Tensor, b: torch.Tensor, bins: int, sigma: float | None,
                     vmin: float | None, vmax: float | None):
    """Soft (Parzen-window) joint histogram ``(N, bins, bins)``, normalized to sum 1.

    Intensities are min-max scaled to ``[0, 1]`` per image (or with fixed ``vmin``/``vmax``), then
    each voxel votes for the bins within 4σ with a Gaussian weight of width ``sigma`` (default: one
    bin), normalised to sum 1 per voxel. Differentiable (analytic backward, checked by gradcheck with
    fixed ``vmin``/``vmax``; the per-image min/max scaling is treated as a constant).
    """
    n = a.shape[0]
    a = a.reshape(n, -1)
    b = b.reshape(n, -1)

    def scale(x):
        lo = x.min(1, keepdim=True).values.detach() if vmin is None else torch.full_like(x[:, :1], vmin)
        hi = x.max(1, keepdim=True).values.detach() if vmax is None else torch.full_like(x[:, :1], vmax)
        return ((x - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)

    a, b = scale(a), scale(b)
    s = (1.0 / (bins - 1)) if sigma is None else float(sigma)
    joint = _SoftJointHistogram.apply(a, b, bins, s)                        # (N, bins, bins)
    return joint / joint.sum((1, 2), keepdim=True)


def _entropies(joint: torch.Tensor, eps: float = 1e-10):
    pa, pb = joint.sum(2), joint.sum(1)
    ha = -(pa * torch.log(pa + eps)).sum(1)
    hb = -(pb * torch.log(pb + eps)).sum(1)
    hab = -(joint * torch.log(joint + eps)).sum((1, 2))
    return ha, hb, hab


def _check_bins(fn, bins, sigma=None):
    if not isinstance(bins, int) or bins < 2:
        raise ValueError(f"{fn}: bins must be an int >= 2, got {bins!r}")
    if sigma is not None and not (isinstance(sigma, numbers.Real) and sigma > 0):
        raise ValueError(f"{fn}: sigma must be a positive number (or None for one bin width), got {sigma!r}")


@_higher(True)
def mutual_information(a: torch.Tensor, b: torch.Tensor, bins: int = 32, sigma: float | None = None,
                       vmin: float | None = None, vmax: float | None = None) -> torch.Tensor:
    """Mutual information ``H(A) + H(B) - H(A, B)`` (nats) from a differentiable soft histogram.

    Depends only on how intensities co-occur, not on their values, so it works across contrasts
    (T1 vs T2). Higher is better. Memory grows as voxels × bins: fine for 2D and downsampled 3D.
    """
    _pair("mutual_information", a, b)
    _check_bins("mutual_information", bins, sigma)
    ha, hb, hab = _entropies(_joint_histogram(a, b, bins, sigma, vmin, vmax))
    return (ha + hb - hab).mean()


@_higher(True)
def nmi(a: torch.Tensor, b: torch.Tensor, bins: int = 32, sigma: float | None = None,
        vmin: float | None = None, vmax: float | None = None) -> torch.Tensor:
    """Normalized mutual information ``(H(A) + H(B)) / H(A, B)`` in ``[1, 2]``; higher is better.

    Less sensitive than MI to how much the images overlap (Studholme et al. 1999).
    """
    _pair("nmi", a, b)
    _check_bins("nmi", bins, sigma)
    ha, hb, hab = _entropies(_joint_histogram(a, b, bins, sigma, vmin, vmax))
    return ((ha + hb) / hab.clamp_min(1e-10)).mean()


@_higher(True)
def soft_dice(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Soft Dice of two stacks of label maps, averaged over labels and batch. Higher is better.

    ``a``, ``b``: ``(N, L, *spatial)`` one-hot or probability maps (e.g. :func:`metrics.one_hot`
    of the moving labels after a linear warp, and of the fixed labels). Per sample and label,
    ``2 Σ a b / (Σ a + Σ b)``; on 0/1 maps this is exactly the Dice overlap, so
    ``1 - soft_dice`` is the label-driven loss of weak supervision (Hu et al. 2018; Milletari et
    al. 2016). A label absent from both maps of a sample counts as 1 (nothing to overlap).
    """
    fn = "soft_dice"
    check_tensor(fn, "a", a, ndims=(4, 5), floating=True, finite=True)
    check_tensor(fn, "b", b, ndims=(4, 5), floating=True, finite=True)
    check_same_shape(fn, "a", a, "b", b)
    if eps <= 0:
        raise ValueError(f"{fn}: eps must be > 0, got {eps!r}")
    a, b = a.flatten(2), b.flatten(2)                      # (N, L, V)
    inter, size = (a * b).sum(-1), a.sum(-1) + b.sum(-1)
    return ((2 * inter + eps) / (size + eps)).mean()


def as_loss(similarity):
    """A loss to minimise from a similarity: itself if lower is better, else its negative."""
    if not callable(similarity) or not hasattr(similarity, "higher_is_better"):
        raise TypeError("as_loss: similarity must be one of course_lib.similarity's functions or modules "
                        f"(with a higher_is_better attribute), got {similarity!r}")
    if similarity.higher_is_better:
        return lambda a, b: -similarity(a, b)
    return similarity


class _Similarity(torch.nn.Module):
    higher_is_better: bool
    _fn = None

    def __init__(self, **kwargs):
        super().__init__()
        self.kwargs = kwargs

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return type(self)._fn(a, b, **self.kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())


class SSD(_Similarity):
    """Module twin of :func:`ssd` (lower is better)."""
    higher_is_better = False
    _fn = staticmethod(ssd)


class NCC(_Similarity):
    """Module twin of :func:`ncc` (higher is better)."""
    higher_is_better = True
    _fn = staticmethod(ncc)


class LNCC(_Similarity):
    """Module twin of :func:`lncc` (higher is better); ``LNCC(window=9)``."""
    higher_is_better = True
    _fn = staticmethod(lncc)


class MutualInformation(_Similarity):
    """Module twin of :func:`mutual_information` (higher is better); ``MutualInformation(bins=32)``."""
    higher_is_better = True
    _fn = staticmethod(mutual_information)


class NMI(_Similarity):
    """Module twin of :func:`nmi` (higher is better)."""
    higher_is_better = True
    _fn = staticmethod(nmi)


class SoftDice(_Similarity):
    """Module twin of :func:`soft_dice` (higher is better; for label maps, not images)."""
    higher_is_better = True
    _fn = staticmethod(soft_dice)


#: Name → function, for lessons that loop over measures.
SIMILARITIES = {"SSD": ssd, "NCC": ncc, "LNCC": lncc, "MI": mutual_information, "NMI": nmi}
