"""A stacked autoencoder (SAE) on flattened image patches: learned descriptors for registration.

Introduced in lesson 04 (deep iterative registration I, learned features). The network is a
stack of fully connected layers ``input → hidden[0] → … → code`` with a mirrored decoder. It is
trained without labels in two stages, both through the one generic loop :func:`course_lib.train.fit`
(:func:`course_lib.train.train_sae` runs them; the model itself does not train):

1. **greedy layer-wise pre-training** (Hinton & Salakhutdinov 2006; Bengio et al. 2007): layer
   ``k`` is trained as a *shallow* autoencoder ``h_k → h_{k+1} → ĥ_k`` on the codes ``h_k`` of the
   layers below it (frozen), see :meth:`StackedAutoencoder.layer_loss` and
   :meth:`StackedAutoencoder.layerwise_parameters`;
2. **fine-tuning end to end**: the whole encoder–decoder on the input reconstruction,
   see :meth:`StackedAutoencoder.loss`.

The code :meth:`StackedAutoencoder.encode` of a patch is then used as a descriptor in the
feature-based registration pipeline of :mod:`course_lib.features` (Wu et al. 2013, 2016).

Shapes: patches are ``(P, F)`` with ``F = input_size`` (e.g. ``F = (2r+1)²`` for 2D patches,
``(2r+1)³`` for 3D patches: one code path, the network only sees flattened vectors). A patch
batch ``(P, C, *patch)`` as returned by :func:`course_lib.features.sample_patches` is accepted
and flattened. Codes are ``(P, code_size)``.

References: G. Wu, M. Kim, Q. Wang, Y. Gao, S. Liao, D. Shen, *Unsupervised deep feature learning
for deformable registration of MR brain images*, MICCAI 2013; G. Wu, M. Kim, Q. Wang, B. C. Munsell,
D. Shen, *Scalable high-performance image registration framework by unsupervised deep feature
representations learning*, IEEE TBME 63(7), 2016; G. E. Hinton, R. R. Salakhutdinov, *Reducing the
dimensionality of data with neural networks*, Science 2006; Y. Bengio, P. Lamblin, D. Popovici,
H. Larochelle, *Greedy layer-wise training of deep networks*, NIPS 2007; A. Ng, *Sparse
autoencoder*, CS294A lecture notes 2011 (KL sparsity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_int

__all__ = ["SAEConfig", "StackedAutoencoder"]

_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
_SPARSITY = ("none", "kl", "l1")


@dataclass
class SAEConfig:
    """Flat configuration of a :class:`StackedAutoencoder` (saved with the weights).

    Attributes:
        input_size: length ``F`` of a flattened patch (``(2r+1)^ndim`` for single-channel patches).
        hidden: widths of the hidden layers between input and code, e.g. ``(256, 64)``.
        code_size: width of the code (the descriptor length).
        activation: ``"sigmoid"`` (as in Wu et al.), ``"tanh"`` or ``"relu"``; used on every
            encoder layer and on every decoder layer except the last (linear, since normalized
            patches are signed).
        sparsity: ``"none"``, ``"kl"`` (KL divergence of the mean activation of each code unit from
            ``sparsity_target``; needs activations in (0, 1), tanh is mapped by ``(h + 1) / 2``)
            or ``"l1"`` (mean absolute activation).
        sparsity_weight: weight β of the sparsity term in the loss.
        sparsity_target: target mean activation ρ of the KL penalty.
    """

    input_size: int = 121
    hidden: tuple = (256, 64)
    code_size: int = 32
    activation: str = "sigmoid"
    sparsity: str = "none"
    sparsity_weight: float = 0.0
    sparsity_target: float = 0.05

    def __post_init__(self):
        fn = "SAEConfig"
        if not isinstance(self.hidden, (list, tuple)):
            raise ValueError(f"{fn}: hidden must be a sequence of positive ints, got {self.hidden!r}")
        self.hidden = tuple(self.hidden)
        for name in ("input_size", "code_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")
        if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in self.hidden):
            raise ValueError(f"{fn}: hidden must be a sequence of positive ints, got {self.hidden!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"{fn}: activation must be one of {tuple(_ACTIVATIONS)}, got {self.activation!r}")
        if self.sparsity not in _SPARSITY:
            raise ValueError(f"{fn}: sparsity must be one of {_SPARSITY}, got {self.sparsity!r}")
        if self.sparsity == "kl" and self.activation == "relu":
            raise ValueError(f"{fn}: sparsity='kl' needs activation 'sigmoid' or 'tanh' (values in a "
                             f"bounded range), got activation={self.activation!r}; use sparsity='l1'")
        for name in ("sparsity_weight", "sparsity_target"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{fn}: {name} must be a finite number, got {v!r}")
        if self.sparsity_weight < 0:
            raise ValueError(f"{fn}: sparsity_weight must be >= 0, got {self.sparsity_weight!r}")
        if not 0 < self.sparsity_target < 1:
            raise ValueError(f"{fn}: sparsity_target must be in (0, 1), got {self.sparsity_target!r}")

    @property
    def widths(self) -> tuple[int, ...]:
        """``(input_size, *hidden, code_size)``: the width of every level of the encoder."""
        return (self.input_size, *self.hidden, self.code_size)


class StackedAutoencoder(nn.Module):
    """Fully connected stacked autoencoder ``F → hidden… → code → …hidden → F``.

    Encoder layer ``k`` maps level ``k`` to level ``k+1`` (``Linear`` + activation); decoder layer
    ``k`` maps back from level ``k+1`` to level ``k`` (``Linear`` + activation, except decoder 0,
    which is linear because it outputs a signed, normalized patch). Reconstruction loss
    ``L = mean((x̂ - x)²) + β · sparsity(code)``.

    >>> sae = StackedAutoencoder(SAEConfig(input_size=81, hidden=(32,), code_size=8))
    >>> sae.encode(torch.zeros(5, 81)).shape, sae(torch.zeros(5, 1, 9, 9)).shape
    (torch.Size([5, 8]), torch.Size([5, 81]))
    """

    def __init__(self, config: SAEConfig):
        super().__init__()
        if not isinstance(config, SAEConfig):
            raise TypeError(f"StackedAutoencoder: config must be an SAEConfig, got {type(config).__name__}")
        self.config = config
        w = config.widths
        act = _ACTIVATIONS[config.activation]
        self.encoders = nn.ModuleList(nn.Sequential(nn.Linear(w[k], w[k + 1]), act())
                                      for k in range(len(w) - 1))
        self.decoders = nn.ModuleList(
            nn.Linear(w[1], w[0]) if k == 0 else nn.Sequential(nn.Linear(w[k + 1], w[k]), act())
            for k in range(len(w) - 1))

    @property
    def n_layers(self) -> int:
        """Number of encoder layers (= number of greedy pre-training stages)."""
        return len(self.encoders)

    # -- input checks ---------------------------------------------------------------------------
    def _check(self, fn: str, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"StackedAutoencoder.{fn}: patches must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(f"StackedAutoencoder.{fn}: patches must be (P, {self.config.input_size}) or "
                             f"(P, C, *patch), got shape {tuple(x.shape)}")
        x = x.flatten(1)                                              # (P, F)
        if x.numel() == 0:
            raise ValueError(f"StackedAutoencoder.{fn}: patches must not be empty, got shape {tuple(x.shape)}")
        if x.shape[1] != self.config.input_size:
            raise ValueError(f"StackedAutoencoder.{fn}: patches must have {self.config.input_size} "
                             f"features per patch (input_size), got {x.shape[1]} (shape {tuple(x.shape)})")
        dtype = self.encoders[0][0].weight.dtype
        if x.dtype != dtype:
            raise TypeError(f"StackedAutoencoder.{fn}: patches must have dtype {dtype} (the weights' dtype), "
                            f"got {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"StackedAutoencoder.{fn}: patches contain NaN or Inf values")
        return x

    # -- the network ----------------------------------------------------------------------------
    def encode(self, patches: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        """Codes ``(P, code_size)`` of ``patches`` ``(P, F)`` (or the level-``depth`` activations
        ``(P, widths[depth])`` after the first ``depth`` encoder layers)."""
        h = self._check("encode", patches)
        depth = self.n_layers if depth is None else check_int("StackedAutoencoder.encode", "depth", depth)
        if not 0 <= depth <= self.n_layers:
            raise ValueError(f"StackedAutoencoder.encode: depth must be in [0, {self.n_layers}], got {depth}")
        return self._encode(h, depth)

    def _encode(self, h: torch.Tensor, depth: int) -> torch.Tensor:
        for enc in self.encoders[:depth]:
            h = enc(h)
        return h

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstructed patches ``(P, F)`` from codes ``(P, code_size)``."""
        fn = "StackedAutoencoder.decode"
        if not isinstance(codes, torch.Tensor):
            raise TypeError(f"{fn}: codes must be a torch.Tensor, got {type(codes).__name__}")
        if codes.dim() != 2 or codes.shape[1] != self.config.code_size or codes.shape[0] == 0:
            raise ValueError(f"{fn}: codes must be (P, {self.config.code_size}), got {tuple(codes.shape)}")
        dtype = self.encoders[0][0].weight.dtype
        if codes.dtype != dtype:
            raise TypeError(f"{fn}: codes must have dtype {dtype} (the weights' dtype), got {codes.dtype}")
        if not bool(torch.isfinite(codes).all()):
            raise ValueError(f"{fn}: codes contain NaN or Inf values")
        return self._decode(codes)

    def _decode(self, h: torch.Tensor) -> torch.Tensor:
        for dec in reversed(self.decoders):
            h = dec(h)
        return h

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``(P, F)`` of ``patches`` ``(P, F)``."""
        x = self._check("forward", patches)
        return self._decode(self._encode(x, self.n_layers))

    # -- losses ---------------------------------------------------------------------------------
    def sparsity_penalty(self, h: torch.Tensor) -> torch.Tensor:
        """Sparsity of activations ``h`` ``(P, width)``: ``Σ_j KL(ρ ‖ ρ̂_j)`` with ``ρ̂_j`` the mean
        activation of unit ``j`` over the batch, or ``mean |h|`` (L1); 0 for ``"none"``."""
        cfg = self.config
        if cfg.sparsity == "none" or cfg.sparsity_weight == 0:
            return h.new_zeros(())
        if cfg.sparsity == "l1":
            return h.abs().mean()
        if cfg.activation == "tanh":
            h = (h + 1) / 2
        rho = torch.tensor(cfg.sparsity_target, dtype=h.dtype, device=h.device)
        rho_hat = h.mean(0).clamp(1e-6, 1 - 1e-6)
        return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()

    def layer_loss(self, k: int, patches: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Greedy stage ``k``: layer ``k`` as a shallow autoencoder on the frozen level-``k`` codes.

        ``h = encode(patches, depth=k)`` (no gradient), ``z = encoder_k(h)``,
        ``loss = mean((decoder_k(z) - h)²) + β · sparsity(z)``. Returns ``(loss, {"mse", "sparsity"})``.
        """
        k = check_int("StackedAutoencoder.layer_loss", "k", k)
        if not 0 <= k < self.n_layers:
            raise ValueError(f"StackedAutoencoder.layer_loss: k must be an int in [0, {self.n_layers - 1}], got {k!r}")
        x = self._check("layer_loss", patches)
        with torch.no_grad():
            h = self._encode(x, k)                                  # (P, widths[k])
        z = self.encoders[k](h)                                     # (P, widths[k+1])
        mse = F.mse_loss(self.decoders[k](z), h)
        sp = self.sparsity_penalty(z)
        return mse + self.config.sparsity_weight * sp, {"mse": mse.item(), "sparsity": sp.item()}

    def loss(self, patches: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Fine-tuning: ``mean((x̂ - x)²) + β · sparsity(code)`` end to end; ``(loss, {"mse", "sparsity"})``."""
        x = self._check("loss", patches)
        z = self._encode(x, self.n_layers)
        mse = F.mse_loss(self._decode(z), x)
        sp = self.sparsity_penalty(z)
        return mse + self.config.sparsity_weight * sp, {"mse": mse.item(), "sparsity": sp.item()}

    def layerwise_parameters(self, k: int) -> list[nn.Parameter]:
        """The parameters trained in greedy stage ``k``: encoder ``k`` and decoder ``k``."""
        k = check_int("StackedAutoencoder.layerwise_parameters", "k", k)
        if not 0 <= k < self.n_layers:
            raise ValueError(f"StackedAutoencoder.layerwise_parameters: k must be an int in "
                             f"[0, {self.n_layers - 1}], got {k!r}")
        return [*self.encoders[k].parameters(), *self.decoders[k].parameters()]

    def extra_repr(self) -> str:
        c = self.config
        return (f"widths={c.widths}, activation={c.activation!r}, sparsity={c.sparsity!r}, "
                f"sparsity_weight={c.sparsity_weight}")
