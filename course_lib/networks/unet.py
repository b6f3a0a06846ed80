"""The U-Net of VoxelMorph: a convolutional encoder-decoder with skip connections, 2D or 3D.

Introduced in lesson 08 (Balakrishnan et al. 2018/2019) as the backbone of
:class:`~course_lib.networks.VoxelMorph`; reused in lessons 09-11.

Architecture (one code path: ``ndim`` picks ``Conv2d``/``Conv3d``), for the default widths
``encoder=(16, 32, 32, 32)``, ``decoder=(32, 32, 32, 32, 32, 16, 16)`` (the paper's "VM-2")::

    input (C) ─ conv16/2 ─ conv32/4 ─ conv32/8 ─ conv32/16          encoder: 3-wide, stride 2
      │            │          │          │           │
      │            │          │          │        conv32 ─ up ┐    decoder: 3-wide, stride 1,
      │            │          │          └──────────── cat ───┘    then nearest upsampling ×2
      │            │          │                     conv32 ─ up ┐  and concatenation with the
      │            │          └──────────────────────── cat ────┘  skip of the same resolution
      │            │                                conv32 ─ up ┐
      │            └──────────────────────────────────── cat ───┘
      │                                             conv32 ─ up ┐
      └───────────────────────────────────────────────── cat ───┘
                                                    conv32 ─ conv16 ─ conv16  (full resolution)

* The first ``len(encoder)`` decoder widths are the convolutions of the upward path (one per
  level); the remaining ones run at full resolution.
* Every convolution is followed by a leaky ReLU (slope 0.2), no normalization, as in the paper.
* Any input size works: a stride-2 convolution maps ``n`` voxels to ``ceil(n / 2)``, and the
  upsampling goes back to the exact size of the skip it is concatenated with (sizes divisible by
  ``2 ** len(encoder)`` avoid the uneven last voxel, which is also a little faster).

Reference: G. Balakrishnan, A. Zhao, M. R. Sabuncu, J. Guttag, A. V. Dalca, *VoxelMorph: a
learning framework for deformable medical image registration*, IEEE TMI 38(8), 2019
(arXiv:1809.05231); CVPR 2018 for the first version. O. Ronneberger, P. Fischer, T. Brox, *U-Net:
convolutional networks for biomedical image segmentation*, MICCAI 2015.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_model_dtype

__all__ = ["UNet", "VM1_DECODER", "VM2_DECODER", "VM_ENCODER"]

#: the VoxelMorph paper's encoder widths
VM_ENCODER = (16, 32, 32, 32)
#: decoder widths of the paper's "VM-1" (smaller) and "VM-2" (default) models
VM1_DECODER = (32, 32, 32, 32, 8, 8)
VM2_DECODER = (32, 32, 32, 32, 32, 16, 16)
#: leaky ReLU slope of the paper
_SLOPE = 0.2


def check_widths(fn: str, encoder, decoder) -> tuple[tuple, tuple]:
    """Validate U-Net widths: positive ints, at least one encoder level and as many decoder convs."""
    out = []
    for name, values in (("encoder", encoder), ("decoder", decoder)):
        values = tuple(values) if isinstance(values, (tuple, list)) else values
        if (not isinstance(values, tuple) or not values
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)):
            raise ValueError(f"{fn}: {name} must be a non-empty sequence of positive ints, got {values!r}")
        out.append(values)
    if len(out[1]) < len(out[0]):
        raise ValueError(f"{fn}: decoder needs at least one width per encoder level "
                         f"(len(encoder) = {len(out[0])}), got {len(out[1])}: {out[1]!r}")
    return out[0], out[1]


def _conv_block(conv, c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(conv(c_in, c_out, 3, stride=stride, padding=1), nn.LeakyReLU(_SLOPE))


class UNet(nn.Module):
    """VoxelMorph's U-Net: ``(N, in_channels, *spatial)`` → ``(N, decoder[-1], *spatial)``.

    Args:
        ndim: 2 or 3 spatial dimensions.
        in_channels: input channels (VoxelMorph: moving and fixed stacked, ``2 * C``).
        encoder: widths of the stride-2 encoder convolutions (one resolution level each).
        decoder: widths of the decoder convolutions: one per encoder level on the way up, then
            any number at full resolution.

    >>> net = UNet(2, in_channels=2)
    >>> net(torch.rand(1, 2, 37, 50)).shape
    torch.Size([1, 16, 37, 50])
    """

    def __init__(self, ndim: int = 2, in_channels: int = 2, encoder=VM_ENCODER, decoder=VM2_DECODER):
        super().__init__()
        fn = "UNet"
        if isinstance(ndim, bool) or ndim not in (2, 3):
            raise ValueError(f"{fn}: ndim must be 2 or 3, got {ndim!r}")
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"{fn}: in_channels must be a positive int, got {in_channels!r}")
        encoder, decoder = check_widths(fn, encoder, decoder)
        self.ndim, self.in_channels = ndim, in_channels
        self.encoder_widths, self.decoder_widths = encoder, decoder
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        levels = len(encoder)
        # encoder: level k (1..L) at 1/2^k resolution
        skip_channels, c = [in_channels], in_channels
        self.down = nn.ModuleList()
        for width in encoder:
            self.down.append(_conv_block(conv, c, width, stride=2))
            skip_channels.append(width)
            c = width
        # decoder, upward path: conv at level L-k, upsample, concatenate the skip of level L-k-1
        self.up = nn.ModuleList()
        for k, width in enumerate(decoder[:levels]):
            self.up.append(_conv_block(conv, c, width, stride=1))
            c = width + skip_channels[levels - 1 - k]
        # decoder, full resolution
        self.full = nn.ModuleList()
        for width in decoder[levels:]:
            self.full.append(_conv_block(conv, c, width, stride=1))
            c = width
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"UNet.forward: x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != self.ndim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet.forward: x must have shape (N, {self.in_channels}, "
                             f"{', '.join('HW' if self.ndim == 2 else 'DHW')}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"UNet.forward: x must be a floating-point tensor, got dtype {x.dtype}")
        check_model_dtype("UNet.forward", "x", x, self)
        if x.numel() == 0:
            raise ValueError(f"UNet.forward: x must not be empty, got shape {tuple(x.shape)}")
        # the finiteness check reads a value back from the device: skipped inside torch.compile
        if not torch.compiler.is_compiling() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"UNet.forward: x contains NaN or Inf values (shape {tuple(x.shape)})")
        # a model converted to channels_last (model.to(memory_format=...)) gets its input in that layout too:
        # a 1- or 2-channel input reads as plain contiguous, and every skip concatenation at its
        # resolution would then fall back to the plain layout and be copied back before each convolution
        layout = torch.channels_last if self.ndim == 2 else torch.channels_last_3d
        weight = self.down[0][0].weight                    # the first convolution (check_widths: >= 1 level)
        if not weight.is_contiguous() and weight.is_contiguous(memory_format=layout):
            x = x.contiguous(memory_format=layout)
        skips = [x]
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()                                        # the deepest level is x itself
        for block in self.up:
            x = block(x)
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
            x = torch.cat([x, skip], dim=1)
        for block in self.full:
            x = block(x)
        return x

    def extra_repr(self) -> str:
        return f"ndim={self.ndim}, encoder={self.encoder_widths}, decoder={self.decoder_widths}"
