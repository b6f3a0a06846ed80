"""Training of the stacked autoencoder: greedy layer-wise pre-training, then fine-tuning.

Part of :mod:`course_lib.train` (lesson 04). It lives with the training code, not with the model:
:mod:`course_lib.networks` imports neither ``train`` nor ``classical``.
"""

from __future__ import annotations

import torch

from .._checks import check_int, check_number
from ..networks.autoencoder import StackedAutoencoder
from .loop import fit


def train_sae(model: StackedAutoencoder, batches, layer_steps: int, finetune_steps: int,
              lr: float = 1e-3, finetune_lr: float | None = None, seed: int | None = 0,
              progress: bool = True) -> dict:
    """Greedy layer-wise pre-training, then fine-tuning end to end, all with :func:`course_lib.train.fit`.

    Args:
        model: the autoencoder (trained in place).
        batches: iterable of patch batches ``(B, F)`` (cycled) or a callable returning one.
        layer_steps: optimisation steps per greedy stage (0 skips pre-training).
        finetune_steps: steps of end-to-end fine-tuning (0 skips it).
        lr, finetune_lr: Adam learning rates (``finetune_lr`` defaults to ``lr``).

    Returns:
        ``{"layer0": history, …, "finetune": history}`` (histories of :func:`fit`).
    """
    fn = "train_sae"
    if not isinstance(model, StackedAutoencoder):
        raise TypeError(f"{fn}: model must be a StackedAutoencoder, got {type(model).__name__}")
    layer_steps = check_int(fn, "layer_steps", layer_steps, minimum=0)
    finetune_steps = check_int(fn, "finetune_steps", finetune_steps, minimum=0)
    check_number(fn, "lr", lr, minimum=0, positive=True)
    check_number(fn, "finetune_lr", finetune_lr, minimum=0, positive=True, optional=True)
    check_int(fn, "seed", seed, optional=True)
    if not isinstance(progress, bool):
        raise TypeError(f"{fn}: progress must be a bool, got {type(progress).__name__}")
    if callable(batches) is False and not hasattr(batches, "__iter__"):
        raise TypeError(f"{fn}: batches must be an iterable of patch batches or a callable, got {type(batches).__name__}")
    histories = {}
    if layer_steps > 0:
        for k in range(model.n_layers):
            opt = torch.optim.Adam(model.layerwise_parameters(k), lr=lr)
            histories[f"layer{k}"] = fit(model, lambda m, x, k=k: m.layer_loss(k, x), batches, layer_steps,
                                         optimizer=opt, seed=None if seed is None else seed + k,
                                         progress=progress, desc=f"SAE layer {k}")
    if finetune_steps > 0:
        histories["finetune"] = fit(model, lambda m, x: m.loss(x), batches, finetune_steps,
                                    lr=finetune_lr or lr, seed=None if seed is None else seed + 100,
                                    progress=progress, desc="SAE fine-tune")
    return histories
