"""A patch discriminator for adversarial registration, 2D and 3D from one code path.

Introduced in lesson 10 (adversarial registration). The network judges an input and returns a
**map of logits**, one per patch of the input (a *patch* discriminator): a logit > 0 says "real".
What "real" means is the lesson's choice:

* **Adversarial similarity** (Fan et al. 2018): the input is a pair of images stacked as channels,
  ``D(image, fixed)`` with ``in_channels = 2``; real pairs are well aligned (the reference
  ``α·moving + (1−α)·fixed``), fake pairs hold the warped moving image.
* **Adversarial rigid registration** (Yan et al. 2018): the same pair input; real pairs are
  resampled with the ground-truth transform, fake ones with the predicted transform.
* **Adversarial deformation regularisation** (Hu et al. 2018): the input is a displacement field
  ``(N, ndim, *S)`` with ``in_channels = ndim``; real fields come from a simulator, fake ones
  from the registration network.

Architecture (the layout of Fan et al.'s released model)::

    x (N, C, *S) ─ [conv3 stride 2 → LReLU(0.2)] × k ─ conv3 (32) → LReLU(0.2) ─ conv3 (1) ─ logits
                    widths 8, 8, 16, 16, 32                                     (N, 1, *patch_grid)

* Every convolution is 3-wide (3×3 or 3×3×3) with padding 1, so a stride-2 stage maps a side of
  ``n`` voxels to ``ceil(n / 2)`` (odd sizes are fine) and the stride-1 layers keep the size.
* **Depth adapts to small inputs.** With ``config.input_size`` given, the network keeps only the
  first ``k`` stride-2 stages, ``k`` the largest number (at most ``len(widths)``) for which every
  side of the logit map stays ``>= config.min_size`` (default 2: a *patch* discriminator, never
  one logit for the whole image). For a 32×40 input the fifth stage (2×3 → 1×2) is dropped: four
  stages, a 2×3 map. Without ``input_size`` all stages are kept and :meth:`Discriminator.forward`
  refuses an input too small for them (the error names the ``input_size`` to build with);
  :attr:`DiscriminatorConfig.n_stages` and :meth:`Discriminator.output_shape` say what you get.
* **Spectral normalisation** (``config.spectral_norm``, Miyato et al. 2018): every convolution's
  weight, reshaped to a matrix ``(out, in·3^ndim)``, is divided by an estimate of its largest
  singular value (one power iteration per training-mode forward,
  :func:`torch.nn.utils.parametrizations.spectral_norm`). It bounds how fast the logits can
  change with the input and keeps the discriminator from winning by sheer steepness.

Convention: ``forward(x, y=None)`` concatenates ``x`` and ``y`` along channels (channel order
``[x, y]``), so ``D(warped, fixed)`` is the pair input of Fan et al.; ``D(u)`` judges a field.

References: J. Fan, X. Cao, Q. Wang, P.-T. Yap, D. Shen, *Adversarial similarity network for
evaluating image alignment in deep learning based registration*, MICCAI 2018; P. Yan, S. Xu,
A. R. Rastinehad, B. J. Wood, *Adversarial image registration with application for MR and TRUS
image fusion*, MLMI 2018; Y. Hu et al., *Adversarial deformation regularization for training image
registration neural networks*, MICCAI 2018; T. Miyato, T. Kataoka, M. Koyama, Y. Yoshida,
*Spectral normalization for generative adversarial networks*, ICLR 2018; P. Isola et al.,
*Image-to-image translation with conditional adversarial networks* (PatchGAN), CVPR 2017.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from .._checks import check_image, check_model_dtype, check_size

__all__ = ["DiscriminatorConfig", "Discriminator"]

#: Fan et al.'s stride-2 widths and the width of the stride-1 layer after them
_WIDTHS = (8, 8, 16, 16, 32)
_HEAD_WIDTH = 32


def _positive_int(fn: str, name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")
    return v


@dataclass
class DiscriminatorConfig:
    """Flat configuration of a :class:`Discriminator` (saved with the weights).

    Attributes:
        ndim: 2 or 3 spatial dimensions.
        in_channels: channels of the input: 2 for an (image, fixed) pair of one-channel images,
            ``ndim`` for a displacement field.
        widths: output channels of the stride-2 stages (Fan et al.: 8, 8, 16, 16, 32).
        head_width: channels of the stride-1 convolution before the logit layer (32).
        slope: negative slope of the leaky ReLUs (0.2).
        min_size: the smallest side the logit map may have (>= 1); stages that would go below it
            are dropped when ``input_size`` is given, and refused by ``forward`` otherwise.
        input_size: the spatial size the network is built for (None: keep every stage).
        spectral_norm: spectral normalisation of every convolution (Miyato et al. 2018).

    Every bad field is a ``ValueError`` (``spectral_norm`` that is not a bool: ``TypeError``).
    """

    ndim: int = 2
    in_channels: int = 2
    widths: tuple = _WIDTHS
    head_width: int = _HEAD_WIDTH
    slope: float = 0.2
    min_size: int = 2
    input_size: tuple | None = None
    spectral_norm: bool = False

    def __post_init__(self):
        fn = "DiscriminatorConfig"
        if isinstance(self.ndim, bool) or self.ndim not in (2, 3):
            raise ValueError(f"{fn}: ndim must be 2 or 3, got {self.ndim!r}")
        for name in ("in_channels", "head_width", "min_size"):
            _positive_int(fn, name, getattr(self, name))
        widths = tuple(self.widths) if isinstance(self.widths, (tuple, list)) else self.widths
        if (not isinstance(widths, tuple) or not widths
                or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)):
            raise ValueError(f"{fn}: widths must be a non-empty sequence of positive ints, got {self.widths!r}")
        self.widths = widths
        s = self.slope
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < 1:
            raise ValueError(f"{fn}: slope must be a number in [0, 1), got {s!r}")
        self.slope = float(s)
        if self.input_size is not None:
            try:
                self.input_size = check_size(fn, "input_size", self.input_size, self.ndim)
            except TypeError as err:                      # config fields: ValueError whatever the type
                raise ValueError(str(err)) from None
        if not isinstance(self.spectral_norm, bool):
            raise TypeError(f"{fn}: spectral_norm must be a bool, got {type(self.spectral_norm).__name__}")

    @property
    def n_stages(self) -> int:
        """Number of stride-2 stages the network has: ``len(widths)``, fewer for a small ``input_size``."""
        if self.input_size is None:
            return len(self.widths)
        k = 0
        while k < len(self.widths) and min(math.ceil(s / 2 ** (k + 1)) for s in self.input_size) >= self.min_size:
            k += 1
        return k


class Discriminator(nn.Module):
    """Patch discriminator: ``(N, in_channels, *S)`` → logit map ``(N, 1, *patch_grid)``.

    ``forward(x, y=None)``: the logits of ``x`` (or of ``[x, y]`` stacked as channels); a logit
    > 0 means "real". No sigmoid: pair it with a loss on logits
    (:func:`course_lib.train.discriminator_loss`).

    >>> d = Discriminator(DiscriminatorConfig(ndim=2, in_channels=2, input_size=(32, 40)))
    >>> d.config.n_stages, d.output_shape((32, 40))
    (4, (2, 3))
    >>> d(torch.rand(3, 1, 32, 40), torch.rand(3, 1, 32, 40)).shape
    torch.Size([3, 1, 2, 3])
    """

    def __init__(self, config: DiscriminatorConfig | None = None):
        super().__init__()
        config = DiscriminatorConfig() if config is None else config
        if not isinstance(config, DiscriminatorConfig):
            raise TypeError(f"Discriminator: config must be a DiscriminatorConfig or None, got {type(config).__name__}")
        self.config = config
        conv = nn.Conv2d if config.ndim == 2 else nn.Conv3d
        wrap = _spectral_norm if config.spectral_norm else (lambda m: m)
        layers, c = [], config.in_channels
        for width in config.widths[:config.n_stages]:
            layers += [wrap(conv(c, width, 3, stride=2, padding=1)), nn.LeakyReLU(config.slope)]
            c = width
        layers += [wrap(conv(c, config.head_width, 3, padding=1)), nn.LeakyReLU(config.slope)]
        self.features = nn.Sequential(*layers)
        self.logits = wrap(conv(config.head_width, 1, 3, padding=1))

    @property
    def min_input_size(self) -> int:
        """The smallest side an input may have: its logit map then has sides >= ``config.min_size``."""
        return 2 ** self.config.n_stages * (self.config.min_size - 1) + 1

    def output_shape(self, spatial) -> tuple:
        """Shape of the logit map (the patch grid) for an input of spatial size ``spatial``:
        ``ceil(s / 2^k)`` per side, ``k = config.n_stages``."""
        size = check_size("Discriminator.output_shape", "spatial", spatial, self.config.ndim)
        return tuple(math.ceil(s / 2 ** self.config.n_stages) for s in size)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logit map ``(N, 1, *patch_grid)`` of ``x`` ``(N, C, *S)``, or of ``[x, y]`` stacked as channels.

        Args:
            x: ``(N, C_x, *S)``; the channels of ``x`` (and ``y``) must add up to ``in_channels``.
            y: optional ``(N, C_y, *S)`` with the shape of ``x`` but for the channels (e.g. the
                fixed image of an (image, fixed) pair); no broadcasting of the batch.
        """
        fn = "Discriminator.forward"
        cfg = self.config
        axes = ", ".join("HW" if cfg.ndim == 2 else "DHW")
        check_image(fn, "x", x, ndim=cfg.ndim)
        check_model_dtype(fn, "x", x, self)
        if y is not None:
            check_image(fn, "y", y, ndim=cfg.ndim)
            check_model_dtype(fn, "y", y, self)
            if y.shape[0] != x.shape[0] or y.shape[2:] != x.shape[2:]:
                raise ValueError(f"{fn}: x and y must have the same batch size and spatial shape, "
                                 f"got {tuple(x.shape)} and {tuple(y.shape)}")
            channels = x.shape[1] + y.shape[1]
            if channels != cfg.in_channels:
                raise ValueError(f"{fn}: x and y must have {cfg.in_channels} channels together "
                                 f"(config in_channels), got {x.shape[1]} + {y.shape[1]} "
                                 f"(shapes {tuple(x.shape)} and {tuple(y.shape)})")
            x = torch.cat([x, y], dim=1)                                  # (N, in_channels, *S)
        elif x.shape[1] != cfg.in_channels:
            raise ValueError(f"{fn}: x must have shape (N, {cfg.in_channels}, {axes}) for config "
                             f"in_channels={cfg.in_channels}, got {tuple(x.shape)}")
        if min(x.shape[2:]) < self.min_input_size:
            raise ValueError(
                f"{fn}: x is too small: every spatial size must be >= {self.min_input_size} for {cfg.n_stages} "
                f"stride-2 stages (a logit map of sides >= min_size={cfg.min_size}), got {tuple(x.shape[2:])}; "
                f"build the config with input_size={tuple(x.shape[2:])} to drop the stages it cannot afford")
        return self.logits(self.features(x))                               # (N, 1, *patch_grid)

    def extra_repr(self) -> str:
        c = self.config
        return (f"ndim={c.ndim}, in_channels={c.in_channels}, n_stages={c.n_stages}, "
                f"spectral_norm={c.spectral_norm}")
