"""The one generic training loop, plus batched seeds, checkpoint save/load and SAE training.

Introduced in lesson 04 and used by every learned method. ``fit`` knows nothing about
registration: a ``step`` function turns a batch into a loss (and optional logged numbers).
Modules: :mod:`~course_lib.train.loop` (``fit``, ``cycle``, ``decay_schedule``,
``recalibrate_batchnorm``), :mod:`~course_lib.train.stack` (``ModelStack``),
:mod:`~course_lib.train.checkpoint` (``save_checkpoint``, ``load_checkpoint``),
:mod:`~course_lib.train.cache` (``cached_model``: trained models kept between lessons, ``environment``),
:mod:`~course_lib.train.sae` (``train_sae``), and for lesson 10's adversarial registration
:mod:`~course_lib.train.adversarial` (``fit_adversarial``, the companion of ``fit`` for a generator
and a discriminator) and :mod:`~course_lib.train.gan_losses` (``discriminator_loss``,
``generator_loss``, ``discriminator_targets``, ``discriminator_stats``, ``r1_penalty``,
``discriminator_lr_factor``); every name is importable from here.
"""

from __future__ import annotations

from .adversarial import fit_adversarial
from .cache import cached_model, environment
from .checkpoint import load_checkpoint, save_checkpoint
from .gan_losses import (discriminator_loss, discriminator_lr_factor, discriminator_stats, discriminator_targets,
                         generator_loss, r1_penalty)
from .loop import cycle, decay_schedule, fit, recalibrate_batchnorm
from .sae import train_sae
from .stack import ModelStack

__all__ = ["fit", "cycle", "decay_schedule", "recalibrate_batchnorm", "ModelStack", "save_checkpoint",
           "load_checkpoint", "train_sae", "fit_adversarial", "discriminator_loss", "generator_loss",
           "discriminator_targets", "discriminator_stats", "r1_penalty", "discriminator_lr_factor", "cached_model",
           "environment"]
