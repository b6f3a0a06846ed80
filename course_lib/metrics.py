"""Evaluation metrics: Dice, DSC30, HD95, TRE, EPE, folding fraction, SDlogJ.

Introduced in lessons 00 (Dice, EPE), 01 (Jacobian-based) and 03 (TRE, HD95). Label maps are integer
tensors ``(N, 1, *spatial)``; displacement fields ``(N, ndim, *spatial)`` in voxels.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage, stats

from ._checks import check_batch, check_field, check_labels, check_number, check_tensor, promote
from .spatial import _jacobian_determinant

__all__ = ["dice", "dsc30", "hd95", "tre", "epe", "folding_fraction", "sdlogj", "present_labels", "one_hot",
           "SeedDifference", "robust_difference", "PairedDifference", "paired_difference"]


def _check_labels(fn: str, pred, target):
    check_labels(fn, "pred", pred)
    check_labels(fn, "target", target)
    if pred.shape != target.shape:
        raise ValueError(f"{fn}: pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")


def present_labels(target: torch.Tensor) -> list[int]:
    """Sorted non-zero labels present in ``target`` (an integer label map, any shape)."""
    check_tensor("present_labels", "target", target)
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"present_labels: target must be an integer label map, got dtype {target.dtype}")
    return [int(v) for v in torch.unique(target) if int(v) != 0]


def one_hot(labels: torch.Tensor, values, dtype=torch.float32) -> torch.Tensor:
    """One channel per label value: ``(N, 1, *spatial)`` integer map → ``(N, L, *spatial)`` 0/1 maps.

    Args:
        labels: integer label map ``(N, 1, *spatial)``.
        values: the ``L`` label values to encode, in channel order (e.g. ``present_labels(...)``);
            voxels with any other value (background) are 0 in every channel.
        dtype: floating dtype of the result (float: it is warped linearly and fed to a Dice loss).

    >>> one_hot(torch.tensor([[[[0, 2], [5, 2]]]]), [2, 5])[0]
    tensor([[[0., 1.],
             [0., 1.]],
    <BLANKLINE>
            [[0., 0.],
             [1., 0.]]])
    """
    fn = "one_hot"
    check_labels(fn, "labels", labels)
    values = _label_list(fn, "values", values)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"{fn}: dtype must be a torch.dtype, got {type(dtype).__name__}")
    if not dtype.is_floating_point:
        raise TypeError(f"{fn}: dtype must be a floating dtype, got {dtype}")
    lab = torch.tensor(values, device=labels.device).view(1, -1, *([1] * (labels.dim() - 2)))
    return (labels == lab).to(dtype)


def _label_list(fn: str, name: str, values) -> list[int]:
    """A non-empty sequence (list, tuple, 1D tensor) of integer label values."""
    if isinstance(values, torch.Tensor):
        if values.dim() > 1 or values.is_floating_point() or values.dtype == torch.bool:
            raise TypeError(f"{fn}: {name} must be a sequence of int labels, got a tensor of dtype "
                            f"{values.dtype} and shape {tuple(values.shape)}")
        values = values.reshape(-1).tolist()
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{fn}: {name} must be a sequence of int labels, got {type(values).__name__}")
    values = list(values)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values):
        raise TypeError(f"{fn}: {name} must be a sequence of int labels, got {values!r}")
    if not values:
        raise ValueError(f"{fn}: {name} must name at least one label, got an empty list")
    return [int(v) for v in values]


def _resolve(fn, pred, target, labels):
    _check_labels(fn, pred, target)
    if labels is None:
        labels = present_labels(target)
        if not labels:
            raise ValueError(f"{fn}: target has no foreground label (all voxels are 0); pass labels= explicitly")
    return _label_list(fn, "labels", labels)


def dice(pred: torch.Tensor, target: torch.Tensor, labels=None) -> torch.Tensor:
    """Dice overlap ``2|P∩T| / (|P| + |T|)`` per sample and label: ``(N, L)``.

    Args:
        pred, target: integer label maps ``(N, 1, *spatial)``.
        labels: labels to score; default: the non-zero labels present in ``target``.

    A label absent from both maps of a sample gets NaN (undefined); use ``nanmean`` to average.
    Raises ``ValueError`` if none of the requested labels occurs anywhere in either map.
    """
    labels = _resolve("dice", pred, target, labels)
    lab = torch.tensor(labels, device=pred.device).view(1, -1, *([1] * (pred.dim() - 2)))
    p = (pred == lab).flatten(2).float()    # (N, L, V)
    t = (target == lab).flatten(2).float()
    inter, size = (p * t).sum(-1), p.sum(-1) + t.sum(-1)
    if bool((size == 0).all()):
        raise ValueError(f"dice: none of labels {labels} occurs in pred or target (empty label)")
    out = 2 * inter / size
    return torch.where(size > 0, out, torch.full_like(out, float("nan")))


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(pred: torch.Tensor, target: torch.Tensor, labels=None, spacing=1.0) -> torch.Tensor:
    """95th-percentile Hausdorff distance between label surfaces: ``(N, L)``.

    ``HD95 = max(P95{d(p, T) : p ∈ ∂P}, P95{d(t, P) : t ∈ ∂T})``: the larger of the two directed
    95th percentiles of surface-to-surface distances, the definition of Learn2Reg and of MONAI's
    ``compute_hausdorff_distance(percentile=95)`` (pooling both directions into one percentile
    gives smaller values when one surface has a long tail the other lacks).

    Distances in units of ``spacing`` (mm per voxel, scalar or per axis; default voxels). NaN where
    the label is missing from either map of a sample (the distance is undefined there).

    Each label's distance transforms run only in the bounding box of its two masks: every surface
    voxel lies inside it and no voxel outside it belongs to either mask, so the result is exact,
    and a small structure of a 3D volume costs its box, not the whole image.
    """
    labels = _resolve("hd95", pred, target, labels)
    ndim = pred.dim() - 2
    sp = np.asarray(_spacing("hd95", spacing, ndim))
    P = pred[:, 0].cpu().numpy()
    T = target[:, 0].cpu().numpy()
    out = np.full((P.shape[0], len(labels)), np.nan)
    for n in range(P.shape[0]):
        for j, lab in enumerate(labels):
            p, t = P[n] == lab, T[n] == lab
            if not p.any() or not t.any():
                continue
            idx = np.argwhere(p | t)
            box = tuple(slice(lo, hi + 1) for lo, hi in zip(idx.min(0), idx.max(0)))
            p, t = p[box], t[box]
            sp_, st = _surface(p), _surface(t)
            dt_t = ndimage.distance_transform_edt(~st, sampling=sp)
            dt_p = ndimage.distance_transform_edt(~sp_, sampling=sp)
            out[n, j] = max(np.percentile(dt_t[sp_], 95), np.percentile(dt_p[st], 95))
    if np.isnan(out).all():
        raise ValueError(f"hd95: none of labels {labels} occurs in both pred and target")
    return torch.as_tensor(out, dtype=torch.float32)


def _spacing(fn: str, spacing, ndim: int | None) -> tuple[float, ...]:
    """Voxel size: one positive finite number or one per spatial axis (``ndim`` entries; for
    ``ndim=None``, 2 or 3)."""
    if isinstance(spacing, torch.Tensor):
        spacing = spacing.tolist()
    values = list(spacing) if isinstance(spacing, (list, tuple, np.ndarray)) else [spacing]
    values = [check_number(fn, "spacing", v, minimum=0, positive=True) for v in values]
    allowed = (1, ndim) if ndim is not None else (1, 2, 3)
    if len(values) not in allowed:
        raise ValueError(f"{fn}: spacing must be one number or {ndim or '2 or 3'} (one per spatial axis), "
                         f"got {len(values)}: {tuple(values)}")
    return tuple(values * (ndim or 1)) if len(values) == 1 else tuple(values)


def tre(points_a: torch.Tensor, points_b: torch.Tensor, spacing=1.0) -> torch.Tensor:
    """Target registration error: Euclidean distance between corresponding points.

    Args:
        points_a, points_b: ``(..., P, ndim)`` voxel coordinates (e.g. fixed landmarks mapped by
            the estimated transform, and the true moving landmarks).
        spacing: voxel size (scalar or per axis) to report mm; default voxels.

    Returns:
        ``(..., P)`` distances.
    """
    check_tensor("tre", "points_a", points_a, floating=True, finite=True)
    check_tensor("tre", "points_b", points_b, floating=True, finite=True)
    if points_a.shape != points_b.shape:
        raise ValueError(f"tre: points_a and points_b must have the same shape, got {tuple(points_a.shape)} and {tuple(points_b.shape)}")
    if points_a.dim() < 2 or points_a.shape[-1] not in (2, 3):
        raise ValueError(f"tre: points must be (..., P, 2 or 3), got {tuple(points_a.shape)}")
    points_a, points_b = promote(points_a, points_b)
    sp = _spacing("tre", spacing, points_a.shape[-1])
    sp = torch.tensor(sp, dtype=points_a.dtype, device=points_a.device)
    return torch.linalg.vector_norm((points_a - points_b) * sp, dim=-1)


def epe(displacement: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None,
        spacing=1.0) -> torch.Tensor:
    """End-point error: mean length of ``displacement - truth`` per sample, ``(N,)``.

    In simulation the true field is known, so this measures correspondence directly (Dice only
    measures label overlap, which a wrong field can still achieve; Rohlfing 2012).

    Args:
        displacement, truth: ``(N, ndim, *spatial)`` fields in voxels (either batch may be 1).
        mask: optional ``(N or 1, 1, *spatial)`` region (bool or 0/1), e.g. the fixed brain mask.
        spacing: voxel size (scalar or per axis) to report mm; default voxels.
    """
    fn = "epe"
    check_field(fn, "displacement", displacement)
    check_field(fn, "truth", truth)
    if displacement.shape[1:] != truth.shape[1:]:
        raise ValueError(f"{fn}: displacement and truth must have the same channels and spatial shape, "
                         f"got {tuple(displacement.shape)} and {tuple(truth.shape)}")
    if displacement.shape[0] != 1:                                             # equal, or either one 1
        check_batch(fn, "truth", truth, displacement.shape[0], "displacement")
    n = max(displacement.shape[0], truth.shape[0])
    displacement, truth = promote(displacement, truth)
    ndim = displacement.shape[1]
    sp = torch.tensor(_spacing(fn, spacing, ndim), dtype=truth.dtype, device=truth.device)
    err = torch.linalg.vector_norm((displacement - truth) * sp.view(1, ndim, *([1] * ndim)), dim=1)
    err = err.expand(n, *err.shape[1:])
    if mask is None:
        return err.flatten(1).mean(1)
    m = _mask(fn, mask, err[:, None]).expand_as(err).float()
    if bool((m.flatten(1).sum(1) == 0).any()):
        raise ValueError(f"{fn}: mask is empty for at least one sample (the mean error is undefined there)")
    return (err * m).flatten(1).sum(1) / m.flatten(1).sum(1)


def dsc30(scores) -> float:
    """DSC30 (Learn2Reg's robustness figure): the 30th percentile of per-case Dice.

    ``scores``: ``(N,)`` one Dice per case, or ``(N, L)`` per label (as :func:`dice` returns; each
    case is first averaged over its labels, ignoring NaN for labels it lacks). The 30 % worst cases
    score at most this. Linear interpolation between order statistics, as ``numpy.percentile``.
    """
    fn = "dsc30"
    check_tensor(fn, "scores", scores, ndims=(1, 2), floating=True, nonempty=True)
    per_case = scores.double()
    if per_case.dim() == 2:
        if bool(torch.isnan(per_case).all(1).any()):
            raise ValueError(f"{fn}: a case has no finite Dice (every label NaN)")
        per_case = per_case.nanmean(1)
    if not bool(torch.isfinite(per_case).all()):
        raise ValueError(f"{fn}: scores must be finite per case, got {per_case.tolist()}")
    return float(np.percentile(per_case.cpu().numpy(), 30))


def folding_fraction(displacement: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Share of voxels where ``det J ≤ 0`` (the map folds), per sample: ``(N,)``.

    ``mask`` (``(N or 1, 1, *spatial)``, bool or 0/1) restricts the count, e.g. to the brain; a
    mask of batch 1 is used for every sample (documented broadcasting), any other batch size must
    be the field's.
    """
    fn = "folding_fraction"
    check_field(fn, "displacement", displacement)
    if mask is not None:
        _mask(fn, mask, displacement)
    neg = (_jacobian_determinant(fn, displacement) <= 0).float()
    if mask is None:
        return neg.flatten(1).mean(1)
    m = _mask("folding_fraction", mask, displacement).float()
    return (neg * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)


def sdlogj(displacement: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-9) -> torch.Tensor:
    """Standard deviation of ``log det J`` per sample: ``(N,)`` (det J clipped at ``eps``).

    0 for volume-preserving maps; larger means less smooth. Common in the Learn2Reg challenge.
    ``mask`` as in :func:`folding_fraction` (``(N or 1, 1, *spatial)``).
    """
    fn = "sdlogj"
    check_field(fn, "displacement", displacement)
    if mask is not None:
        _mask(fn, mask, displacement)
    eps = check_number(fn, "eps", eps, minimum=0, positive=True)
    logj = torch.log(_jacobian_determinant(fn, displacement).clamp_min(eps))
    if mask is None:
        return logj.flatten(1).std(1)
    m = _mask("sdlogj", mask, displacement).expand_as(logj)
    return torch.stack([logj[i][m[i]].std() for i in range(logj.shape[0])])


def _mask(fn, mask, displacement):
    check_tensor(fn, "mask", mask, ndims=(displacement.dim(),), finite=True)
    if mask.shape[1] != 1 or mask.shape[2:] != displacement.shape[2:]:
        raise ValueError(f"{fn}: mask must be (N, 1, {', '.join(map(str, displacement.shape[2:]))}) like "
                         f"displacement {tuple(displacement.shape)}, got {tuple(mask.shape)}")
    check_batch(fn, "mask", mask, displacement.shape[0], "displacement")
    return mask[:, 0].bool()


# --------------------------------------------------------------------------- comparing trained recipes over seeds


class SeedDifference(NamedTuple):
    """Result of :func:`robust_difference`."""
    difference: float       # mean(a) - mean(b)
    pooled_sd: float        # sqrt((var(a) + var(b)) / 2), sample variances over seeds
    robust: bool            # |difference| > k * pooled_sd


def robust_difference(a, b, k: float = 2.0) -> SeedDifference:
    """Compare two training recipes from one number per seed (e.g. each seed's mean held-out Dice).

    The course's rule: a difference between recipes is *robust* only when the difference of the
    seed means exceeds ``k`` (default 2) times the pooled seed standard deviation. With three
    seeds this is a rough rule, not a significance test; it guards against reading one lucky or
    unlucky run as an effect.

    Args:
        a, b: per-seed values (sequences or 1D arrays/tensors), at least 2 each, finite.
        k: the margin in pooled standard deviations (> 0).
    """
    fn = "robust_difference"
    a, b = _per_seed(fn, "a", a), _per_seed(fn, "b", b)
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise TypeError(f"{fn}: k must be a positive number, got {type(k).__name__}")
    if not (k > 0 and np.isfinite(k)):
        raise ValueError(f"{fn}: k must be a positive number, got {k!r}")
    diff = float(a.mean() - b.mean())
    pooled = float(np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))
    return SeedDifference(diff, pooled, abs(diff) > k * pooled)


def _per_seed(fn: str, name: str, x) -> np.ndarray:
    # one finite number per seed, at least two, as a float64 array
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if x is None or isinstance(x, (str, bytes, numbers.Number)):
        raise TypeError(f"{fn}: {name} must be a sequence of numbers (one per seed), got {type(x).__name__}")
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{fn}: {name} must be a sequence of numbers (one per seed), got {type(x).__name__}") from err
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"{fn}: {name} must be 1D with at least 2 values (one per seed), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{fn}: {name} contains NaN or Inf: {arr.tolist()}")
    return arr


class PairedDifference(NamedTuple):
    """Result of :func:`paired_difference`."""
    mean: float             # mean over seeds of a[s] - b[s]
    sd: float               # sample sd of the per-seed differences
    low: float              # the confidence interval of the mean difference (Student t)
    high: float
    wins: int               # seeds with a[s] > b[s]
    n: int                  # seeds
    robust: bool            # the interval excludes 0


def paired_difference(a, b, confidence: float = 0.95) -> PairedDifference:
    """Compare two training recipes *paired by seed*: seed ``s`` of both shares its initial weights
    and training data, so ``a[s] - b[s]`` removes what the seed does to both.

    The difference is *robust* when the two-sided ``confidence`` interval of the mean paired
    difference, ``mean ± t(n - 1) · sd / sqrt(n)`` (Student t with n - 1 degrees of freedom),
    excludes 0. It is a claim about the recipes **on average over training runs**; a single run
    of the better recipe can still end below one of the other (``wins`` counts the seeds where
    ``a`` is ahead). :func:`robust_difference` is the stricter rule for unpaired recipes: there the
    difference must exceed twice the spread of single runs.

    Args:
        a, b: per-seed values of the two recipes, in the same seed order, at least 2 each.
        confidence: the interval's level, in (0, 1).
    """
    fn = "paired_difference"
    a, b = _per_seed(fn, "a", a), _per_seed(fn, "b", b)
    if a.shape != b.shape:
        raise ValueError(f"{fn}: a and b must have one value per seed each, got {a.size} and {b.size} values")
    check_number(fn, "confidence", confidence, minimum=0, positive=True, maximum=1)
    if confidence >= 1:
        raise ValueError(f"{fn}: confidence must be in (0, 1), got {confidence!r}")
    d = a - b
    n = d.size
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / np.sqrt(n)
    low, high = mean - half, mean + half
    return PairedDifference(mean, sd, low, high, int((d > 0).sum()), n, bool(low > 0 or high < 0))
