"""The one generic training loop, plus batched seeds, checkpoint save/load and SAE training.

Introduced in lesson 04 and used by every learned method. ``fit`` knows nothing about
registration: a ``step`` function turns a batch into a loss (and optional logged numbers).
Modules: :mod:`~course_lib.train.loop` (``fit``, ``cycle``, ``decay_schedule``,
``recalibrate_batchnorm``), :mod:`~course_lib.train.stack` (``ModelStack``),
:mod:`~course_lib.train.checkpoint` (``save_checkpoint``, ``load_checkpoint``) and
:mod:`~course_lib.train.sae` (``train_sae``); every name is importable from here.
"""

from __future__ import annotations

from .checkpoint import load_checkpoint, save_checkpoint
from .loop import cycle, decay_schedule, fit, recalibrate_batchnorm
from .sae import train_sae
from .stack import ModelStack

__all__ = ["fit", "cycle", "decay_schedule", "recalibrate_batchnorm", "ModelStack", "save_checkpoint",
           "load_checkpoint", "train_sae"]
