"""VoxelMorph: a U-Net predicts a dense displacement (or velocity) field; a spatial transformer warps.

Introduced in lesson 08 (Balakrishnan et al. 2018/2019; diffeomorphic variant Dalca et al. 2018)
and reused for weak and dual supervision in lesson 09 and the benchmark of lesson 11.

::

    moving ─┐                                              ┌─ displacement u (N, ndim, *S)
            ├─ cat ─ UNet ─ flow head (3-wide conv) ─ φ ──┤
    fixed  ─┘                                              └─ warped = spatial.warp(moving, u)

* **Flow head**: a 3-wide convolution to ``ndim`` channels initialised with weights drawn from
  N(0, σ²) with σ = ``config.flow_init_std`` (1e-5, VoxelMorph's choice) and zero bias, so the
  untrained network predicts ``u ≈ 0``: it starts at the identity. The gradients reaching the U-Net
  are scaled by those weights; a larger σ (e.g. 1e-2: a random field of a few hundredths of a
  voxel) makes short trainings take off sooner (lesson 09).
* **Plain mode**: the head's output ``φ`` *is* the displacement, in voxels (the course convention).
* **Diffeomorphic mode** (``config.diffeomorphic``): ``φ`` is a stationary velocity field ``v``;
  the displacement is ``exp(v)`` by scaling and squaring (:func:`course_lib.spatial.integrate_velocity`,
  ``int_steps`` squarings). As in Dalca et al., the integration may run at a coarser grid
  (``int_downsize``): ``v`` is resized down, integrated, and the displacement resized back up,
  which is several times cheaper and barely changes the field (``v`` is smooth).
* **Labels** (weak supervision, Hu et al. 2018): ``forward(..., labels=...)`` also warps the
  moving image's labels with the same field: one-hot/probability maps ``(N, L, *S)`` linearly
  (differentiable, for a Dice loss), integer maps ``(N, 1, *S)`` by nearest neighbour (evaluation).

Regularize ``out.flow`` (the network output: the displacement, or the velocity in diffeomorphic
mode), as the papers do.

References: G. Balakrishnan et al., *An unsupervised learning model for deformable medical image
registration*, CVPR 2018, and *VoxelMorph: a learning framework for deformable medical image
registration*, IEEE TMI 38(8), 2019; A. V. Dalca, G. Balakrishnan, J. Guttag, M. R. Sabuncu,
*Unsupervised learning for fast probabilistic diffeomorphic registration*, MICCAI 2018 (and MedIA
57, 2019); M. Jaderberg et al., *Spatial transformer networks*, NeurIPS 2015.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn

from .._checks import check_field, check_model_dtype
from ..spatial import _integrate, _resize_displacement, _warp, _warp_labels
from .unet import VM2_DECODER, VM_ENCODER, UNet, check_widths

__all__ = ["VoxelMorphConfig", "VoxelMorph", "VoxelMorphOutput"]

#: standard deviation of the flow head's initial weights (VoxelMorph's choice)
_FLOW_INIT_STD = 1e-5


@dataclass
class VoxelMorphConfig:
    """Flat configuration of a :class:`VoxelMorph` model (saved with the weights).

    Attributes:
        ndim: 2 or 3 spatial dimensions.
        in_channels: channels of **each** image (the U-Net sees ``2 * in_channels``).
        encoder, decoder: U-Net widths (default: the paper's VM-2, see :mod:`.unet`).
        diffeomorphic: predict a stationary velocity and integrate it (Dalca et al. 2018).
        int_steps: scaling-and-squaring steps (``2**int_steps`` small steps).
        int_downsize: integrate on a grid this many times coarser (1 = full resolution).
        flow_init_std: standard deviation of the flow head's initial weights (default 1e-5).
    """

    ndim: int = 2
    in_channels: int = 1
    encoder: tuple = VM_ENCODER
    decoder: tuple = VM2_DECODER
    diffeomorphic: bool = False
    int_steps: int = 7
    int_downsize: int = 2
    flow_init_std: float = _FLOW_INIT_STD

    def __post_init__(self):
        fn = "VoxelMorphConfig"
        if isinstance(self.ndim, bool) or self.ndim not in (2, 3):
            raise ValueError(f"{fn}: ndim must be 2 or 3, got {self.ndim!r}")
        for name in ("in_channels", "int_downsize"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")
        if isinstance(self.int_steps, bool) or not isinstance(self.int_steps, int) or self.int_steps < 0:
            raise ValueError(f"{fn}: int_steps must be a non-negative int, got {self.int_steps!r}")
        if not isinstance(self.diffeomorphic, bool):
            raise TypeError(f"{fn}: diffeomorphic must be a bool, got {type(self.diffeomorphic).__name__}")
        v = self.flow_init_std
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ValueError(f"{fn}: flow_init_std must be a number in [0, 1], got {v!r}")
        self.flow_init_std = float(v)
        self.encoder, self.decoder = check_widths(fn, self.encoder, self.decoder)


class VoxelMorphOutput(NamedTuple):
    """What :meth:`VoxelMorph.forward` returns.

    Attributes:
        warped: the moving image warped to the fixed one ``(N, C, *S)``.
        displacement: the backward displacement ``(N, ndim, *S)`` in voxels
            (``warp(moving, displacement) = warped``).
        flow: the network's raw output ``(N, ndim, *S)``: the displacement, or the velocity in
            diffeomorphic mode — the field to regularize.
        warped_labels: the moving labels warped by ``displacement`` (None unless ``labels`` given).
    """

    warped: torch.Tensor
    displacement: torch.Tensor
    flow: torch.Tensor
    warped_labels: torch.Tensor | None = None


class VoxelMorph(nn.Module):
    """U-Net + flow head + spatial transformer; 2D or 3D; optionally diffeomorphic.

    ``forward(moving, fixed, labels=None)`` → :class:`VoxelMorphOutput`.

    >>> net = VoxelMorph(VoxelMorphConfig(ndim=2))
    >>> m, f = torch.rand(2, 1, 32, 48), torch.rand(2, 1, 32, 48)
    >>> out = net(m, f)
    >>> out.warped.shape, out.displacement.shape
    (torch.Size([2, 1, 32, 48]), torch.Size([2, 2, 32, 48]))
    """

    def __init__(self, config: VoxelMorphConfig | None = None):
        super().__init__()
        config = VoxelMorphConfig() if config is None else config
        if not isinstance(config, VoxelMorphConfig):
            raise TypeError(f"VoxelMorph: config must be a VoxelMorphConfig, got {type(config).__name__}")
        self.config = config
        self.unet = UNet(config.ndim, 2 * config.in_channels, config.encoder, config.decoder)
        conv = nn.Conv2d if config.ndim == 2 else nn.Conv3d
        self.flow = conv(self.unet.out_channels, config.ndim, 3, padding=1)
        nn.init.normal_(self.flow.weight, std=config.flow_init_std)
        nn.init.zeros_(self.flow.bias)

    def _check(self, fn: str, name: str, x, channels: int | None, floating: bool = True) -> None:
        cfg = self.config
        axes = ", ".join("HW" if cfg.ndim == 2 else "DHW")
        want = f"(N, {channels if channels is not None else 'C'}, {axes})"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
        if floating and not x.is_floating_point():
            raise TypeError(f"{fn}: {name} must be a floating-point tensor, got dtype {x.dtype}")
        if x.dim() != cfg.ndim + 2 or (channels is not None and x.shape[1] != channels):
            raise ValueError(f"{fn}: {name} must have shape {want} for config ndim={cfg.ndim}, "
                             f"in_channels={cfg.in_channels}, got {tuple(x.shape)}")
        if x.numel() == 0:
            raise ValueError(f"{fn}: {name} must not be empty, got shape {tuple(x.shape)}")
        if floating:
            check_model_dtype(fn, name, x, self)
        # the finiteness check reads a value back from the device: skipped inside torch.compile
        if x.is_floating_point() and not torch.compiler.is_compiling() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{fn}: {name} contains NaN or Inf values (shape {tuple(x.shape)})")

    def integrate(self, velocity: torch.Tensor) -> torch.Tensor:
        """Displacement ``exp(v)`` of a velocity field ``(N, ndim, *spatial)`` (coarser grid when
        ``int_downsize > 1``)."""
        fn = "VoxelMorph.integrate"
        check_field(fn, "velocity", velocity)
        if velocity.dim() != self.config.ndim + 2:
            raise ValueError(f"{fn}: velocity must be (N, {self.config.ndim}, *spatial) for config "
                             f"ndim={self.config.ndim}, got {tuple(velocity.shape)}")
        return self._integrate(velocity)

    def _integrate(self, velocity: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        size = tuple(velocity.shape[2:])
        if cfg.int_downsize == 1:
            return _integrate(velocity, cfg.int_steps)
        coarse = tuple(max(2, -(-s // cfg.int_downsize)) for s in size)
        u = _integrate(_resize_displacement(velocity, coarse), cfg.int_steps)
        return _resize_displacement(u, size)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor,
                labels: torch.Tensor | None = None) -> VoxelMorphOutput:
        """Register ``moving`` to ``fixed``.

        Args:
            moving, fixed: ``(N, in_channels, *spatial)``, same shape.
            labels: optional moving labels to warp along: float ``(N, L, *spatial)`` (one-hot or
                probabilities, warped linearly; differentiable, for a label loss) or integer
                ``(N, 1, *spatial)`` (resampled as :func:`course_lib.spatial.warp_labels` does, the
                course's one way; not differentiable, for evaluation).
        """
        fn = "VoxelMorph.forward"
        c = self.config.in_channels
        self._check(fn, "moving", moving, c)
        self._check(fn, "fixed", fixed, c)
        if moving.shape != fixed.shape:
            raise ValueError(f"{fn}: moving and fixed must have the same shape, "
                             f"got {tuple(moving.shape)} and {tuple(fixed.shape)}")
        if labels is not None:
            self._check(fn, "labels", labels, None, floating=False)
            if not labels.is_floating_point() and labels.shape[1] != 1:
                raise ValueError(f"{fn}: integer labels must be one label map (N, 1, *spatial); pass "
                                 f"several channels as float one-hot maps, got {tuple(labels.shape)}")
            if labels.shape[0] != moving.shape[0] or labels.shape[2:] != moving.shape[2:]:
                raise ValueError(f"{fn}: labels must have the batch size and spatial shape of moving "
                                 f"{(moving.shape[0], *moving.shape[2:])}, got {tuple(labels.shape)}")
        flow = self.flow(self.unet(torch.cat([moving, fixed], dim=1)))
        displacement = self._integrate(flow) if self.config.diffeomorphic else flow
        warped = _warp(moving, displacement)
        warped_labels = None
        if labels is not None:
            warped_labels = (_warp(labels, displacement) if labels.is_floating_point()
                             else _warp_labels(labels, displacement))
        return VoxelMorphOutput(warped, displacement, flow, warped_labels)

    @torch.no_grad()
    def register(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """Inference: the displacement ``(N, ndim, *spatial)`` only, without gradients."""
        c = self.config.in_channels
        self._check("VoxelMorph.register", "moving", moving, c)
        self._check("VoxelMorph.register", "fixed", fixed, c)
        if moving.shape != fixed.shape:
            raise ValueError(f"VoxelMorph.register: moving and fixed must have the same shape, "
                             f"got {tuple(moving.shape)} and {tuple(fixed.shape)}")
        was_training = self.training
        self.eval()
        try:
            return self(moving, fixed).displacement
        finally:
            self.train(was_training)
