"""The course's evaluation protocol (SYLLABUS S8): one function scores any registration method.

:func:`evaluate` runs a ``register(pair) -> displacement`` callable on a list of pairs and scores
every result the same way, the way the Learn2Reg challenge scores its entries:

* **Dice** per label (labels resampled with :func:`course_lib.spatial.warp_labels`, the course's one
  way), its mean per structure group, and **DSC30** (the 30th percentile of per-pair Dice);
* **HD95**, the larger of the two directed 95th percentiles of surface distances (mm);
* **EPE**, the end-point error against the true field inside the fixed brain (voxels and mm), and
  **TRE** at landmarks (by default the centroid of every fixed-image structure), when the pairs carry
  their true displacement (simulation);
* **folding** (% of the fixed brain where det J ≤ 0) and **SDlogJ**;
* **seconds per pair**, with the GPU synchronised before the clock is read.

Lesson 11 compares every method of the course with it; lessons 08–10 score their models with it too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import metrics
from ._checks import check_callable, check_flags, check_labels, check_option
from .spatial import transform_points, warp_labels

__all__ = ["Evaluation", "evaluate", "label_centroids", "pareto_front"]

_NEEDED = ("moving_labels", "fixed_labels")


@dataclass
class Evaluation:
    """What :func:`evaluate` measured; every per-pair tensor has one row per pair, in order.

    Attributes:
        labels: the scored labels (the columns of ``dice`` and ``hd95``).
        dice: ``(N, L)`` Dice per pair and label; NaN where a label is in neither map of a pair.
        groups: ``{group: [labels]}`` (the columns of ``group_dice``, in order), or empty.
        group_dice: ``(N, G)`` mean Dice of each group's labels, or None without groups.
        hd95: ``(N, L)`` in mm (units of ``spacing``), or None when not computed.
        epe, epe_mm: ``(N,)`` end-point error in the fixed brain, voxels and mm (None without truth).
        tre, tre_mm: ``(N,)`` mean target registration error over the landmarks (None without truth
            or landmarks).
        fold: ``(N,)`` % of the fixed brain (whole image without a mask) where det J ≤ 0.
        sdlogj: ``(N,)`` standard deviation of log det J in the same region.
        seconds: ``(N,)`` wall-clock seconds of each ``register(pair)`` call.
    """

    labels: list
    dice: torch.Tensor
    groups: dict = field(default_factory=dict)
    group_dice: torch.Tensor | None = None
    hd95: torch.Tensor | None = None
    epe: torch.Tensor | None = None
    epe_mm: torch.Tensor | None = None
    tre: torch.Tensor | None = None
    tre_mm: torch.Tensor | None = None
    fold: torch.Tensor | None = None
    sdlogj: torch.Tensor | None = None
    seconds: torch.Tensor | None = None

    def pair_dice(self) -> torch.Tensor:
        """``(N,)``: each pair's Dice averaged over its labels (NaN labels skipped)."""
        return self.dice.nanmean(1)

    def dsc30(self) -> float:
        """DSC30: the 30th percentile of per-pair Dice (:func:`course_lib.metrics.dsc30`)."""
        return metrics.dsc30(self.dice)

    def summary(self) -> dict:
        """Means over pairs, one number per measure: ``{"Dice", "DSC30", "HD95", "EPE", "EPE mm", "TRE",
        "TRE mm", "fold %", "SDlogJ", "s/pair"}``; measures not computed are left out."""
        out = {"Dice": float(self.pair_dice().nanmean()), "DSC30": self.dsc30()}
        for key, value in (("HD95", self.hd95), ("EPE", self.epe), ("EPE mm", self.epe_mm), ("TRE", self.tre),
                           ("TRE mm", self.tre_mm), ("fold %", self.fold), ("SDlogJ", self.sdlogj),
                           ("s/pair", self.seconds)):
            if value is not None:
                out[key] = float(value.double().nanmean())
        return out


def label_centroids(labels: torch.Tensor, values=None) -> torch.Tensor:
    """Landmarks from a label map: the centroid (voxel coordinates) of each label, ``(1, P, ndim)``.

    Args:
        labels: integer label map ``(1, 1, *spatial)``.
        values: the labels to use (each must occur); default every non-zero label present.

    A centroid is a well-defined point of every structure, also on real data, though for a curved
    structure it may lie outside it.
    """
    fn = "label_centroids"
    check_labels(fn, "labels", labels)
    if labels.shape[0] != 1:
        raise ValueError(f"{fn}: labels must be a batch of one (1, 1, *spatial), got {tuple(labels.shape)}")
    values = metrics.present_labels(labels) if values is None else metrics._label_list(fn, "values", values)
    if not values:
        raise ValueError(f"{fn}: labels has no non-zero label to take a centroid of")
    grid = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float64, device=labels.device)
                                        for s in labels.shape[2:]], indexing="ij"))       # (ndim, *spatial)
    points = []
    for v in values:
        m = labels[0, 0] == v
        if not bool(m.any()):
            raise ValueError(f"{fn}: label {v} of values does not occur in labels")
        points.append(grid[:, m].mean(1))
    return torch.stack(points)[None].float()


def _check_pairs(fn: str, pairs) -> list:
    if isinstance(pairs, dict) or not isinstance(pairs, (list, tuple)):
        raise TypeError(f"{fn}: pairs must be a list of pair dicts (each a batch of one), got {type(pairs).__name__}")
    if not pairs:
        raise ValueError(f"{fn}: pairs is empty")
    for i, p in enumerate(pairs):
        if not isinstance(p, dict):
            raise TypeError(f"{fn}: pairs[{i}] must be a dict (as data.pair_batch gives), got {type(p).__name__}")
        missing = [k for k in _NEEDED if k not in p]
        if missing:
            raise ValueError(f"{fn}: pairs[{i}] lacks {missing} (needed: {list(_NEEDED)})")
        for k in _NEEDED:
            check_labels(fn, f"pairs[{i}]['{k}']", p[k])
            if p[k].shape[0] != 1:
                raise ValueError(f"{fn}: pairs[{i}]['{k}'] must be a batch of one, got {tuple(p[k].shape)}")
        if p["moving_labels"].shape != p["fixed_labels"].shape:
            raise ValueError(f"{fn}: pairs[{i}] has label maps of shapes {tuple(p['moving_labels'].shape)} (moving) "
                             f"and {tuple(p['fixed_labels'].shape)} (fixed)")
    has_truth = ["displacement" in p for p in pairs]
    if any(has_truth) and not all(has_truth):
        raise ValueError(f"{fn}: either every pair carries its true 'displacement' or none does "
                         f"(pairs without it: {[i for i, t in enumerate(has_truth) if not t]})")
    return list(pairs)


def _check_groups(fn: str, groups, labels: list) -> dict:
    if groups is None:
        return {}
    if not isinstance(groups, dict):
        raise TypeError(f"{fn}: groups must be a dict group name -> labels (data.label_groups), got "
                        f"{type(groups).__name__}")
    out = {}
    for name, members in groups.items():
        members = metrics._label_list(fn, f"groups[{name!r}]", members)
        unknown = sorted(set(members) - set(labels))
        if not members or unknown:
            raise ValueError(f"{fn}: groups[{name!r}] must be a non-empty subset of the scored labels; "
                             f"{'it is empty' if not members else f'labels {unknown} are not scored'}")
        out[str(name)] = members
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _call(fn: str, register, pair: dict, i: int, shape: tuple) -> tuple[torch.Tensor, float]:
    device = pair["fixed_labels"].device
    _sync(device)
    t0 = time.perf_counter()
    u = register(pair)
    if isinstance(u, torch.Tensor):
        _sync(u.device)
    seconds = time.perf_counter() - t0
    want = (1, len(shape), *shape)
    if not isinstance(u, torch.Tensor) or not u.is_floating_point():
        raise TypeError(f"{fn}: register(pairs[{i}]) must return a floating displacement tensor {want}, got "
                        f"{type(u).__name__ if not isinstance(u, torch.Tensor) else u.dtype}")
    if tuple(u.shape) != want:
        raise ValueError(f"{fn}: register(pairs[{i}]) must return a displacement {want} (voxels, backward), "
                         f"got {tuple(u.shape)}")
    if not bool(torch.isfinite(u).all()):
        raise ValueError(f"{fn}: register(pairs[{i}]) returned a displacement with NaN or Inf")
    return u.detach(), seconds


def evaluate(register, pairs, labels=None, groups=None, spacing=1.0, hd95: bool = True, landmarks="centroids",
             warmup: bool = True) -> Evaluation:
    """Score ``register`` on ``pairs`` with the course's protocol (SYLLABUS S8).

    Args:
        register: a callable ``pair -> u``, the backward displacement ``(1, ndim, *spatial)`` in voxels
            that aligns ``pair["moving"]`` to ``pair["fixed"]`` (``warp(moving, u) ≈ fixed``).
        pairs: a list of pair dicts, each a batch of one (``data.pair_batch(1, ...)``), with
            ``moving_labels`` and ``fixed_labels``; ``fixed_mask`` (the brain) restricts EPE, folding and
            SDlogJ; ``displacement`` (the true field, on every pair or none) adds EPE and TRE.
        labels: the labels to score; default every non-zero label of any fixed label map. A label
            absent from both maps of a pair gets NaN Dice there, skipped in every mean.
        groups: optional ``{name: [labels]}`` (e.g. ``data.label_groups``) for Dice per structure group.
        spacing: mm per voxel (scalar or per axis) for HD95, EPE mm and TRE mm.
        hd95: compute HD95 (the slowest measure on a CPU).
        landmarks: where TRE is measured (with a true field): ``"centroids"`` (each fixed structure's
            centroid, :func:`label_centroids`), a callable ``pair -> (1, P, ndim)`` fixed-image
            points, or None (no TRE).
        warmup: call ``register`` once on the first pair, untimed, so that one-off costs (memory
            allocation, kernel selection) do not land on pair 0's time.

    Returns:
        :class:`Evaluation` with per-pair tensors and :meth:`Evaluation.summary`.
    """
    fn = "evaluate"
    check_callable(fn, "register", register, "a callable pair -> displacement")
    pairs = _check_pairs(fn, pairs)
    check_flags(fn, hd95=hd95, warmup=warmup)
    metrics._spacing(fn, spacing, pairs[0]["fixed_labels"].dim() - 2)
    if landmarks is not None and not callable(landmarks):
        check_option(fn, "landmarks", landmarks, ("centroids",))
    if labels is None:
        labels = sorted(set().union(*(metrics.present_labels(p["fixed_labels"]) for p in pairs)))
        if not labels:
            raise ValueError(f"{fn}: no fixed label map has a non-zero label to score")
    else:
        labels = metrics._label_list(fn, "labels", labels)
    groups = _check_groups(fn, groups, labels)
    truth = "displacement" in pairs[0]

    if warmup:
        _call(fn, register, pairs[0], 0, tuple(pairs[0]["fixed_labels"].shape[2:]))
    rows: dict[str, list] = {k: [] for k in ("dice", "hd95", "epe", "epe_mm", "tre", "tre_mm", "fold", "sdlogj",
                                             "seconds")}
    for i, p in enumerate(pairs):
        u, seconds = _call(fn, register, p, i, tuple(p["fixed_labels"].shape[2:]))
        rows["seconds"].append(seconds)
        warped = warp_labels(p["moving_labels"], u)
        present = [v for v in labels if bool((p["fixed_labels"] == v).any() or (warped == v).any())]
        d = torch.full((len(labels),), math.nan)
        if present:
            d[[labels.index(v) for v in present]] = metrics.dice(warped, p["fixed_labels"], present)[0].float().cpu()
        rows["dice"].append(d)
        if hd95:
            h = torch.full((len(labels),), math.nan)
            both = [v for v in present if bool((p["fixed_labels"] == v).any() and (warped == v).any())]
            if both:
                h[[labels.index(v) for v in both]] = metrics.hd95(warped, p["fixed_labels"], both, spacing)[0]
            rows["hd95"].append(h)
        mask = p.get("fixed_mask")
        rows["fold"].append(100 * float(metrics.folding_fraction(u, mask)[0]))
        rows["sdlogj"].append(float(metrics.sdlogj(u, mask)[0]))
        if truth:
            d_true = p["displacement"]
            rows["epe"].append(float(metrics.epe(u, d_true, mask)[0]))
            rows["epe_mm"].append(float(metrics.epe(u, d_true, mask, spacing)[0]))
            if landmarks is not None:
                pts = label_centroids(p["fixed_labels"]) if landmarks == "centroids" else landmarks(p)
                a, b = transform_points(pts.to(u), u), transform_points(pts.to(u), d_true)
                rows["tre"].append(float(metrics.tre(a, b).mean()))
                rows["tre_mm"].append(float(metrics.tre(a, b, spacing).mean()))

    def col(key):
        return torch.tensor(rows[key], dtype=torch.float64) if rows[key] else None

    dice = torch.stack(rows["dice"])
    group_dice = None
    if groups:
        cols = [[labels.index(v) for v in members] for members in groups.values()]
        group_dice = torch.stack([dice[:, c].nanmean(1) for c in cols], 1)
    return Evaluation(labels=labels, dice=dice, groups=groups, group_dice=group_dice,
                      hd95=torch.stack(rows["hd95"]) if rows["hd95"] else None, epe=col("epe"),
                      epe_mm=col("epe_mm"), tre=col("tre"), tre_mm=col("tre_mm"), fold=col("fold"),
                      sdlogj=col("sdlogj"), seconds=col("seconds"))


def pareto_front(seconds: dict, accuracy: dict) -> list:
    """The methods no other method beats on both time and accuracy: the Pareto front.

    Args:
        seconds: ``{method: seconds per pair}`` (lower is better).
        accuracy: ``{method: score}`` with the same methods (higher is better, e.g. mean Dice).

    Returns:
        The front's method names, fastest first. A method is dominated when another is at least as
        fast and at least as accurate, and strictly better in one of the two.
    """
    fn = "pareto_front"
    for name, d in (("seconds", seconds), ("accuracy", accuracy)):
        if not isinstance(d, dict) or not d:
            raise TypeError(f"{fn}: {name} must be a non-empty dict method -> number, got {type(d).__name__}")
        for k, v in d.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise ValueError(f"{fn}: {name}[{k!r}] must be a finite number, got {v!r}")
    if set(seconds) != set(accuracy):
        raise ValueError(f"{fn}: seconds and accuracy must name the same methods, got {sorted(map(str, seconds))} "
                         f"and {sorted(map(str, accuracy))}")
    if any(v < 0 for v in seconds.values()):
        raise ValueError(f"{fn}: seconds must be >= 0, got {seconds}")
    front = [m for m in seconds
             if not any(seconds[o] <= seconds[m] and accuracy[o] >= accuracy[m]
                        and (seconds[o] < seconds[m] or accuracy[o] > accuracy[m]) for o in seconds)]
    return sorted(front, key=lambda m: (seconds[m], -accuracy[m]))
