"""Supervised transformation regression: a Siamese CNN that maps an image pair to affine parameters.

Introduced in lesson 06 (supervised transformation estimation: Miao et al. 2016; AIRNet, Chee &
Wu 2018) and reused in lesson 07 (geodesic loss, Salehi et al. 2018, with ``output="rigid"``).

Architecture (one code path for 2D and 3D, ``config.ndim`` picks ``Conv2d``/``Conv3d``)::

    moving (N, C, *S) ─┐                      ┌─ f_m (N, F) ─┐
                       ├─ shared encoder ─────┤              ├─ [f_m, f_f, f_m - f_f] (N, 3F)
    fixed  (N, C, *S) ─┘  (same weights)      └─ f_f (N, F) ─┘        │
                                                         head: FC 128 → 64 → 32 (LReLU)
                                                                       │
                          "affine": linear → ndim·(ndim+1) params      │
                          "rigid":  π·tanh(linear) angles  +  linear translations

* **Encoder** (shared, *Siamese*): the image plus ``ndim`` coordinate channels (CoordConv, Liu
  et al. 2018: without them, global average pooling would throw away *where* things are, which is
  what translation is about), then per stage a densely connected block (Huang et al. 2017: each
  3-wide conv sees the concatenation of all earlier outputs of the block, ``growth`` new channels
  each) and a stride-2 3-wide conv to ``widths[k]`` channels, every conv followed by batch
  normalization and a leaky ReLU (moving and fixed go through as one batch, so they share the
  normalization statistics too); finally global average pooling to a
  feature vector of ``F = widths[-1]`` numbers per image.
* **Head**: a gradually narrowing fully connected stack (AIRNet) on the concatenated features of
  both images and their difference.
* **Output** in the convention of :func:`course_lib.spatial.params_to_matrix` (zero = identity;
  translations in half-image units, so the parameters do not depend on the resolution the network
  sees): ``"affine"``: the ``ndim²`` entries of ``L - I`` then ``ndim`` translations;
  ``"rigid"``: 1 (2D) or 3 (3D) angles in radians, bounded by ``π·tanh`` (Salehi et al. 2018), then
  ``ndim`` translations from a separate linear branch.
* The final layers start near zero, so the untrained network predicts ≈ the identity.

Convention: ``forward(moving, fixed)`` returns parameters whose matrix
(:meth:`AffineRegressor.matrix`) is the voxel map ``moving_from_fixed``, i.e.
``spatial.warp_affine(moving, net.matrix(net(moving, fixed), shape)) ≈ fixed``.

References: S. Miao, Z. J. Wang, R. Liao, *A CNN regression approach for real-time 2D/3D
registration*, IEEE TMI 35(5), 2016; E. Chee, Z. Wu, *AIRNet: self-supervised affine registration
for 3D medical images using neural networks*, arXiv:1810.02583, 2018; G. Huang, Z. Liu, L. van der
Maaten, K. Q. Weinberger, *Densely connected convolutional networks*, CVPR 2017; S. S. M. Salehi et
al., *Real-time deep pose estimation with geodesic loss for image-to-template rigid registration*,
IEEE TMI 38(2), 2019 (arXiv 2018); R. Liu et al., *An intriguing failing of convolutional neural
networks and the CoordConv solution*, NeurIPS 2018.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from .._checks import check_model_dtype, check_size
from ..spatial import _params_to_matrix, n_params

__all__ = ["RegressorConfig", "AffineRegressor"]

_OUTPUTS = ("affine", "rigid")
#: leaky ReLU slope (intensities are >= 0: avoid units that start dead)
_SLOPE = 0.1
#: 3-wide convolutions per densely connected block
_LAYERS_PER_BLOCK = 2
#: standard deviation of the final layers' initial weights (bias 0): the untrained net ≈ identity
_INIT_STD = 1e-4


def _positive_ints(fn: str, name: str, values) -> tuple:
    values = tuple(values) if isinstance(values, (tuple, list)) else values
    if (not isinstance(values, tuple) or not values
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)):
        raise ValueError(f"{fn}: {name} must be a non-empty sequence of positive ints, got {values!r}")
    return values


@dataclass
class RegressorConfig:
    """Flat configuration of an :class:`AffineRegressor` (saved with the weights).

    Attributes:
        ndim: 2 or 3 spatial dimensions.
        in_channels: channels of **each** image (moving and fixed are encoded separately).
        widths: output channels of the encoder stages; each stage is a densely connected block
            followed by a stride-2 convolution, so the features are ``2^len(widths)`` times coarser.
        growth: growth rate of the dense blocks (new channels per convolution).
        head: widths of the fully connected head, gradually narrowing.
        output: ``"affine"`` (``ndim·(ndim+1)`` parameters) or ``"rigid"`` (1 or 3 angles, then
            ``ndim`` translations), in :func:`course_lib.spatial.params_to_matrix`'s convention.
    """

    ndim: int = 2
    in_channels: int = 1
    widths: tuple = (8, 16, 32, 64)
    growth: int = 8
    head: tuple = (128, 64, 32)
    output: str = "affine"

    def __post_init__(self):
        fn = "RegressorConfig"
        if isinstance(self.ndim, bool) or self.ndim not in (2, 3):
            raise ValueError(f"{fn}: ndim must be 2 or 3, got {self.ndim!r}")
        _positive_ints(fn, "in_channels", (self.in_channels,))
        _positive_ints(fn, "growth", (self.growth,))
        self.widths = _positive_ints(fn, "widths", self.widths)
        self.head = _positive_ints(fn, "head", self.head)
        if self.output not in _OUTPUTS:
            raise ValueError(f"{fn}: output must be one of {_OUTPUTS}, got {self.output!r}")

    @property
    def n_params(self) -> int:
        """Number of regressed parameters: 6/12 (affine) or 3/6 (rigid) in 2D/3D."""
        return n_params(self.output, self.ndim)

    @property
    def n_angles(self) -> int:
        """Rotation parameters of the rigid model: 1 in 2D, 3 in 3D."""
        return 1 if self.ndim == 2 else 3


class _DenseBlock(nn.Module):
    """``layers`` 3-wide convs (+ BN + LReLU); each sees the concatenation of the block input and all earlier
    outputs (Huang et al. 2017). ``(N, c, *S) → (N, c + layers·growth, *S)``."""

    def __init__(self, conv, norm, c_in: int, growth: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(conv(c_in + k * growth, growth, 3, padding=1, bias=False), norm(growth),
                          nn.LeakyReLU(_SLOPE))
            for k in range(layers))

    def forward(self, x):
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _Encoder(nn.Module):
    """Image ``(N, C, *S)`` → feature vector ``(N, widths[-1])`` (coordinates, dense stages, GAP)."""

    def __init__(self, config: RegressorConfig):
        super().__init__()
        self.ndim = config.ndim
        conv = nn.Conv2d if config.ndim == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if config.ndim == 2 else nn.BatchNorm3d
        stages, c = [], config.in_channels + config.ndim
        for width in config.widths:
            block = _DenseBlock(conv, norm, c, config.growth, _LAYERS_PER_BLOCK)
            c_block = c + _LAYERS_PER_BLOCK * config.growth
            stages.append(nn.Sequential(block, conv(c_block, width, 3, stride=2, padding=1, bias=False),
                                        norm(width), nn.LeakyReLU(_SLOPE)))
            c = width
        self.stages = nn.Sequential(*stages)

    def forward(self, image):
        n, spatial = image.shape[0], image.shape[2:]
        axes = [torch.linspace(-1, 1, s, dtype=image.dtype, device=image.device) for s in spatial]
        coords = torch.stack(torch.meshgrid(*axes, indexing="ij"))               # (ndim, *S)
        x = torch.cat([image, coords.expand(n, *coords.shape)], dim=1)           # (N, C + ndim, *S)
        return self.stages(x).flatten(2).mean(-1)                                 # (N, widths[-1])


class AffineRegressor(nn.Module):
    """Siamese CNN regression of affine (or rigid) parameters from a (moving, fixed) pair.

    ``forward(moving, fixed)`` → ``(N, k)`` parameters (``k = config.n_params``) in
    :func:`course_lib.spatial.params_to_matrix`'s convention for ``model=config.output``;
    :meth:`matrix` turns them into the voxel map ``moving_from_fixed`` ``(N, ndim+1, ndim+1)``.

    >>> net = AffineRegressor(RegressorConfig(ndim=2, widths=(4, 8), head=(16,)))
    >>> m, f = torch.rand(3, 1, 24, 32), torch.rand(3, 1, 24, 32)
    >>> theta = net(m, f)
    >>> theta.shape, net.matrix(theta, (24, 32)).shape
    (torch.Size([3, 6]), torch.Size([3, 3, 3]))
    """

    def __init__(self, config: RegressorConfig):
        super().__init__()
        if not isinstance(config, RegressorConfig):
            raise TypeError(f"AffineRegressor: config must be a RegressorConfig, got {type(config).__name__}")
        self.config = config
        self.encoder = _Encoder(config)                                  # ONE module, used twice
        layers, c = [], 3 * config.widths[-1]
        for width in config.head:
            layers += [nn.Linear(c, width), nn.LeakyReLU(_SLOPE)]
            c = width
        self.head = nn.Sequential(*layers)
        if config.output == "affine":
            self.out = nn.Linear(c, config.n_params)
            finals = [self.out]
        else:
            self.rotation = nn.Linear(c, config.n_angles)                 # bounded by π·tanh
            self.translation = nn.Linear(c, config.ndim)                  # separate, linear
            finals = [self.rotation, self.translation]
        for layer in finals:
            nn.init.normal_(layer.weight, std=_INIT_STD)
            nn.init.zeros_(layer.bias)

    def _check(self, fn: str, name: str, x) -> None:
        cfg = self.config
        want = f"(N, {cfg.in_channels}, {', '.join('HW' if cfg.ndim == 2 else 'DHW')})"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{fn}: {name} must be a floating-point tensor, got dtype {x.dtype}")
        if x.dim() != cfg.ndim + 2 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"{fn}: {name} must have shape {want} for config ndim={cfg.ndim}, "
                             f"in_channels={cfg.in_channels}, got {tuple(x.shape)}")
        if x.numel() == 0:
            raise ValueError(f"{fn}: {name} must not be empty, got shape {tuple(x.shape)}")
        check_model_dtype(fn, name, x, self)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{fn}: {name} contains NaN or Inf values (shape {tuple(x.shape)})")

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Feature vector ``(N, widths[-1])`` of one image batch ``(N, C, *spatial)``."""
        self._check("AffineRegressor.encode", "image", image)
        return self.encoder(image)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """Parameters ``(N, k)`` of the transform that aligns ``moving`` to ``fixed``.

        Args:
            moving, fixed: ``(N, in_channels, *spatial)``, same shape.
        """
        fn = "AffineRegressor.forward"
        self._check(fn, "moving", moving)
        self._check(fn, "fixed", fixed)
        if moving.shape != fixed.shape:
            raise ValueError(f"{fn}: moving and fixed must have the same shape, "
                             f"got {tuple(moving.shape)} and {tuple(fixed.shape)}")
        n = moving.shape[0]
        feats = self.encoder(torch.cat([moving, fixed], dim=0))          # (2N, F): shared weights
        f_m, f_f = feats[:n], feats[n:]                                   # (N, F) each
        h = self.head(torch.cat([f_m, f_f, f_m - f_f], dim=1))            # (N, head[-1])
        if self.config.output == "affine":
            return self.out(h)                                            # (N, ndim·(ndim+1))
        angles = math.pi * torch.tanh(self.rotation(h))                   # (N, 1 or 3) in (-π, π)
        return torch.cat([angles, self.translation(h)], dim=1)            # (N, n_angles + ndim)

    def matrix(self, params: torch.Tensor, shape) -> torch.Tensor:
        """Voxel matrices ``moving_from_fixed`` ``(N, ndim+1, ndim+1)`` of ``params`` on a grid of
        ``shape`` (any resolution: the parameters are resolution-free), via
        :func:`course_lib.spatial.params_to_matrix`."""
        fn = "AffineRegressor.matrix"
        cfg = self.config
        if not isinstance(params, torch.Tensor):
            raise TypeError(f"{fn}: params must be a torch.Tensor, got {type(params).__name__}")
        if params.dim() != 2 or params.shape[1] != cfg.n_params:
            raise ValueError(f"{fn}: params must have shape (N, {cfg.n_params}) for output={cfg.output!r}, "
                             f"ndim={cfg.ndim}, got {tuple(params.shape)}")
        if hasattr(shape, "__len__") and not isinstance(shape, str) and len(shape) != cfg.ndim:
            raise ValueError(f"{fn}: shape must have {cfg.ndim} sizes, got {tuple(shape)}")
        shape = check_size(fn, "shape", shape, cfg.ndim)
        return _params_to_matrix(fn, params, cfg.output, shape, name="params")

    def extra_repr(self) -> str:
        c = self.config
        return f"ndim={c.ndim}, output={c.output!r}, n_params={c.n_params}"
