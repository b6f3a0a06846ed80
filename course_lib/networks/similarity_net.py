"""A learned similarity for multi-modal images: a CNN that says whether two patches are aligned.

Introduced in lesson 05 (deep iterative registration II, learned similarity). The network looks at
a pair of co-located patches from two images of different contrast (e.g. T1 and T2), stacked as
the two channels of one input (*early fusion*, the "2-channel" network of Zagoruyko & Komodakis
2015 that Simonovsky et al. 2016 use for registration), and returns the probability that they
show the same anatomy at the same place. Trained as a binary classifier on aligned (positive)
and misaligned (negative) patch pairs, its score becomes an image similarity that lesson 02's
optimizer (:func:`course_lib.classical.register_affine`) can maximise, see
:class:`LearnedSimilarity` (Cheng, Zhang & Zheng 2016/2018).

Convention:

* Patches are ``(P, 1, *patch)`` with ``patch = (s, s)`` in 2D or ``(s, s, s)`` in 3D,
  ``s = config.patch_size``. The pair ``(a, b)`` becomes the input ``(P, 2, *patch)`` with
  channel 0 = ``a`` and channel 1 = ``b``. In registration ``a`` is the (warped) moving image
  and ``b`` the fixed image, as :func:`course_lib.classical.register_affine` calls
  ``similarity(warped_moving, fixed)``; train with the modalities in that order.
* One code path for 2D and 3D: ``config.ndim`` picks ``Conv2d``/``Conv3d`` (and pooling), and
  every input is checked against it.
* The network is **fully convolutional** with unpadded convolutions: run on two whole images it
  returns, in one pass, the logit of every ``s``-sided patch whose corner lies on a grid of step
  :attr:`PatchSimilarityNet.stride` voxels (:meth:`PatchSimilarityNet.score_map`); that map equals
  the per-patch logits (a unit test checks it) and costs far less than cutting out the patches.

References: X. Cheng, L. Zhang, Y. Zheng, *Deep similarity learning for multimodal medical
images*, Computer Methods in Biomechanics and Biomedical Engineering: Imaging & Visualization
6(3), 2018 (online 2016); M. Simonovsky, B. Gutiérrez-Becker, D. Mateus, N. Navab, N. Komodakis,
*A deep metric for multimodal registration*, MICCAI 2016; S. Zagoruyko, N. Komodakis, *Learning to
compare image patches via convolutional neural networks*, CVPR 2015.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from .._checks import check_image, check_option

__all__ = ["PatchSimilarityConfig", "PatchSimilarityNet", "LearnedSimilarity"]

_SCORES = ("logit", "probability")
#: negative slope of the leaky ReLUs: intensities are all >= 0, and with a plain ReLU a small
#: network can start with dead units (zero output, zero gradient) for every input
_SLOPE = 0.1


def _positive_int(fn: str, name: str, v) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")


@dataclass
class PatchSimilarityConfig:
    """Flat configuration of a :class:`PatchSimilarityNet` (saved with the weights).

    Attributes:
        ndim: 2 (patches ``s × s``) or 3 (``s × s × s``).
        patch_size: side ``s`` of the (square/cubic) patches, odd so that a patch has a centre voxel.
        channels: feature channels of each stage. A stage is two unpadded 3-wide convolutions, each
            followed by a leaky ReLU; stages are separated by a 2× max pooling, so the score-map stride is
            ``2^(len(channels) - 1)``.
        hidden: width of the head, a convolution over the whole remaining feature map (a fully
            connected layer on one patch) followed by a 1-wide convolution to one logit.
    """

    ndim: int = 2
    patch_size: int = 17
    channels: tuple = (16, 32)
    hidden: int = 64

    def __post_init__(self):
        fn = "PatchSimilarityConfig"
        if not isinstance(self.channels, (list, tuple)):
            raise ValueError(f"{fn}: channels must be a non-empty sequence of positive ints, got {self.channels!r}")
        self.channels = tuple(self.channels)
        if self.ndim not in (2, 3) or isinstance(self.ndim, bool):
            raise ValueError(f"{fn}: ndim must be 2 or 3, got {self.ndim!r}")
        _positive_int(fn, "patch_size", self.patch_size)
        if self.patch_size % 2 == 0:
            raise ValueError(f"{fn}: patch_size must be odd (a patch has a centre voxel), got {self.patch_size}")
        if not self.channels or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1
                                        for c in self.channels):
            raise ValueError(f"{fn}: channels must be a non-empty sequence of positive ints, got {self.channels!r}")
        _positive_int(fn, "hidden", self.hidden)
        if self.head_size < 1:
            raise ValueError(f"{fn}: patch_size {self.patch_size} is too small for {len(self.channels)} stages "
                             f"(each removes 4 voxels, pooling halves): the feature map would be "
                             f"{self.head_size} voxels wide; use a larger patch_size or fewer channels")

    @property
    def head_size(self) -> int:
        """Side of the feature map of one patch after the last stage (the head's kernel size)."""
        size = self.patch_size
        for k in range(len(self.channels)):
            if k > 0:
                size //= 2
            size -= 4
        return size

    @property
    def stride(self) -> int:
        """Step (voxels) between neighbouring patches of :meth:`PatchSimilarityNet.score_map`."""
        return 2 ** (len(self.channels) - 1)


class PatchSimilarityNet(nn.Module):
    """2-channel CNN classifier: ``P(aligned | patch a, patch b)`` for co-located patch pairs.

    ``[a, b] (P, 2, *patch) → stages of (conv3 → LReLU → conv3 → LReLU), 2× max pool between →
    conv(head_size) → LReLU → conv1 → logit (P,)``; :meth:`forward` applies the sigmoid. LReLU is a
    leaky ReLU (slope 0.1 below 0), so that no unit starts dead on all-positive intensities.

    >>> net = PatchSimilarityNet(PatchSimilarityConfig(ndim=2, patch_size=17))
    >>> a = b = torch.rand(5, 1, 17, 17)
    >>> p = net(a, b)
    >>> p.shape, bool(((p >= 0) & (p <= 1)).all())
    (torch.Size([5]), True)
    """

    def __init__(self, config: PatchSimilarityConfig):
        super().__init__()
        if not isinstance(config, PatchSimilarityConfig):
            raise TypeError(f"PatchSimilarityNet: config must be a PatchSimilarityConfig, got {type(config).__name__}")
        self.config = config
        conv = nn.Conv2d if config.ndim == 2 else nn.Conv3d
        pool = nn.MaxPool2d if config.ndim == 2 else nn.MaxPool3d
        layers, c_in = [], 2
        for k, c in enumerate(config.channels):
            if k > 0:
                layers.append(pool(2))
            layers += [conv(c_in, c, 3), nn.LeakyReLU(_SLOPE), conv(c, c, 3), nn.LeakyReLU(_SLOPE)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(conv(c_in, config.hidden, config.head_size), nn.LeakyReLU(_SLOPE),
                                  conv(config.hidden, 1, 1))

    @property
    def stride(self) -> int:
        """Step (voxels) of the patch grid of :meth:`score_map` (= ``config.stride``)."""
        return self.config.stride

    # -- input checks ---------------------------------------------------------------------------
    def _check_pair(self, fn: str, a, b, *, patches: bool) -> None:
        cfg = self.config
        want = f"(N, 1, *{(cfg.patch_size,) * cfg.ndim})" if patches else f"(N, 1, *spatial) with {cfg.ndim} spatial axes"
        for name, x in (("a", a), ("b", b)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
            if x.dim() != cfg.ndim + 2:
                raise ValueError(f"{fn}: {name} must be {want} (config.ndim={cfg.ndim}), "
                                 f"got shape {tuple(x.shape)}")
            if x.shape[1] != 1:
                raise ValueError(f"{fn}: {name} must have 1 channel (one modality; the pair "
                                 f"makes the 2 input channels), got shape {tuple(x.shape)}")
            dtype = self.head[-1].weight.dtype
            if x.dtype != dtype:
                raise TypeError(f"{fn}: {name} must have dtype {dtype} (the weights' dtype), "
                                f"got {x.dtype}")
            if patches and tuple(x.shape[2:]) != (cfg.patch_size,) * cfg.ndim:
                raise ValueError(f"{fn}: {name} must be {want} (config.patch_size="
                                 f"{cfg.patch_size}), got shape {tuple(x.shape)}")
            if not patches and min(x.shape[2:]) < cfg.patch_size:
                raise ValueError(f"{fn}: {name} must be at least {cfg.patch_size} voxels "
                                 f"along every axis (one patch), got shape {tuple(x.shape)}")
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"{fn}: {name} contains NaN or Inf values")
        if a.shape != b.shape:
            raise ValueError(f"{fn}: a and b must have the same shape, "
                             f"got {tuple(a.shape)} and {tuple(b.shape)}")

    # -- the network ----------------------------------------------------------------------------
    def _logit_map(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(torch.cat([a, b], dim=1)))        # (N, 1, *grid)

    def logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logits ``(P,)`` that patch pairs are aligned; ``a``, ``b``: ``(P, 1, *patch)``."""
        self._check_pair("PatchSimilarityNet.logits", a, b, patches=True)
        return self._logit_map(a, b).flatten()                            # (P, 1, 1, 1) -> (P,)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(P,)`` in ``[0, 1]`` that patch pairs are aligned: ``sigmoid(logits)``."""
        self._check_pair("PatchSimilarityNet.forward", a, b, patches=True)
        return torch.sigmoid(self._logit_map(a, b).flatten())

    def score_map(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logits of all patch pairs of two whole images, in one fully convolutional pass.

        Args:
            a, b: ``(N, 1, *spatial)`` images on the same grid, each axis at least ``patch_size``.

        Returns:
            ``(N, 1, *grid)``: entry ``k`` is the logit of the patch pair with corner voxel
            ``stride · k`` (centre ``stride · k + patch_size // 2``); ``grid = (size - patch_size)
            // stride + 1`` per axis (patches that would stick out are left out).
        """
        return self._score_map("PatchSimilarityNet.score_map", a, b)

    def _score_map(self, fn: str, a, b) -> torch.Tensor:
        """:meth:`score_map`, errors named after the public method ``fn``."""
        self._check_pair(fn, a, b, patches=False)
        out = self._logit_map(a, b)
        grid = [(n - self.config.patch_size) // self.stride + 1 for n in a.shape[2:]]
        return out[(slice(None), slice(None)) + tuple(slice(0, g) for g in grid)]

    def as_similarity(self, score: str = "logit", threshold: float | None = 0.05) -> "LearnedSimilarity":
        """This network as an image similarity for :func:`course_lib.classical.register_affine`."""
        return LearnedSimilarity(self, score=score, threshold=threshold)

    def extra_repr(self) -> str:
        c = self.config
        return f"ndim={c.ndim}, patch_size={c.patch_size}, stride={c.stride}"


@contextlib.contextmanager
def _frozen(module: nn.Module):
    """Temporarily stop gradients into ``module``'s parameters (restores each flag afterwards)."""
    flags = [p.requires_grad for p in module.parameters()]
    try:
        for p in module.parameters():
            p.requires_grad_(False)
        yield module
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


class LearnedSimilarity(nn.Module):
    """Image similarity from a trained :class:`PatchSimilarityNet` (higher is better).

    ``S(a, b) = Σ_k w_k s_k / Σ_k w_k``, averaged over the batch, where ``s_k`` is the logit (or
    the probability) of the ``k``-th patch pair of :meth:`PatchSimilarityNet.score_map` and
    ``w_k = 1`` if the centre voxel of the patch of ``b`` (the fixed image) is above ``threshold``
    (inside the object), else 0 (``threshold=None``: every patch counts). The weights depend on
    ``b`` only, so moving ``a`` changes the score, not which patches are counted.

    Differentiable with respect to both images; the network's parameters get no gradient (they
    are frozen while the similarity runs), so an optimizer of the transform does not touch them.
    The mean **logit** keeps a slope far from alignment, where every probability is ≈ 0 and
    their mean is flat; the mean **probability** is the classifier's own output (Cheng et al.).

    Args:
        net: the trained network (its ``config.ndim`` fixes 2D or 3D).
        score: ``"logit"`` or ``"probability"``.
        threshold: intensity of ``b`` above which a patch centre counts as foreground, or None.

    References: Cheng, Zhang & Zheng 2016/2018; Simonovsky et al. 2016 (see the module docstring).
    """

    higher_is_better = True

    def __init__(self, net: PatchSimilarityNet, score: str = "logit", threshold: float | None = 0.05):
        super().__init__()
        if not isinstance(net, PatchSimilarityNet):
            raise TypeError(f"LearnedSimilarity: net must be a PatchSimilarityNet, got {type(net).__name__}")
        check_option("LearnedSimilarity", "score", score, _SCORES)
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
            raise TypeError(f"LearnedSimilarity: threshold must be a number or None, got {type(threshold).__name__}")
        if threshold is not None and not math.isfinite(threshold):
            raise ValueError(f"LearnedSimilarity: threshold must be a number or None, got {threshold!r}")
        self.net, self.score, self.threshold = net, score, threshold

    def weights(self, b: torch.Tensor) -> torch.Tensor:
        """Foreground weights ``(N, 1, *grid)`` of the score-map patches, from the centres in ``b``."""
        cfg = self.net.config
        check_image("LearnedSimilarity.weights", "b", b, channels=1, ndim=cfg.ndim)
        if min(b.shape[2:]) < cfg.patch_size:
            raise ValueError(f"LearnedSimilarity.weights: b must be at least {cfg.patch_size} voxels along "
                             f"every axis (one patch), got shape {tuple(b.shape)}")
        s, r = self.net.stride, self.net.config.patch_size // 2
        grid = [(n - self.net.config.patch_size) // s + 1 for n in b.shape[2:]]
        centres = b[(slice(None), slice(None)) + tuple(slice(r, r + s * (g - 1) + 1, s) for g in grid)]
        if self.threshold is None:
            return torch.ones_like(centres)
        return (centres > self.threshold).to(b.dtype)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Scalar similarity of images ``a`` (warped moving) and ``b`` (fixed), ``(N, 1, *spatial)``."""
        with _frozen(self.net):
            logit = self.net._score_map("LearnedSimilarity.forward", a, b)  # (N, 1, *grid)
        s = logit if self.score == "logit" else torch.sigmoid(logit)
        w = self.weights(b.detach())
        per_image = (s * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1.0)   # (N,)
        return per_image.mean()

    def extra_repr(self) -> str:
        return f"score={self.score!r}, threshold={self.threshold!r}"
