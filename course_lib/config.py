"""Profiles (quick CPU vs full GPU), the device, and seeding. Introduced in lesson 00.

``profile()`` is the one switch of the course: every size, step count and sample count that a
lesson uses comes from the frozen dataclass it returns. It reads ``COURSE_PROFILE``
(``quick`` or ``full``); without it, ``full`` when CUDA is available, else ``quick``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Profile", "profile", "device", "seed_everything", "PROFILES"]


@dataclass(frozen=True)
class Profile:
    """Sizes and budgets of one profile.

    Attributes:
        name: ``"quick"`` (laptop CPU, minutes) or ``"full"`` (one GPU).
        resolution_3d: MNI template resolution (mm) used for 3D lessons.
        size_2d: ``(H, W)`` of 2D slices (MNI 2 mm, axial/coronal, padded or cropped).
        size_3d: ``(D, H, W)`` of 3D volumes (a crop of the template at ``resolution_3d``).
        n_train: number of training pairs/subjects that lessons generate.
        n_test: number of held-out evaluation pairs.
        train_steps: default number of optimisation steps for the lessons' networks.
        batch_size: default batch size for training.
        reg_steps: iterations per pyramid level for classical (iterative) registration.
        n_starts: random initial misalignments in capture-range experiments (>= 20).
    """

    name: str
    resolution_3d: int
    size_2d: tuple[int, int]
    size_3d: tuple[int, int, int]
    n_train: int
    n_test: int
    train_steps: int
    batch_size: int
    reg_steps: int
    n_starts: int


PROFILES = {
    "quick": Profile(
        name="quick", resolution_3d=2, size_2d=(96, 112), size_3d=(80, 96, 80),
        n_train=64, n_test=8, train_steps=300, batch_size=8, reg_steps=60, n_starts=20,
    ),
    "full": Profile(
        name="full", resolution_3d=1, size_2d=(96, 112), size_3d=(160, 192, 160),
        n_train=400, n_test=20, train_steps=5000, batch_size=1, reg_steps=200, n_starts=50,
    ),
}


def profile(name: str | None = None) -> Profile:
    """Return the active :class:`Profile`.

    Args:
        name: ``"quick"`` or ``"full"``; default: ``$COURSE_PROFILE``, else ``"full"`` when CUDA
            is available and ``"quick"`` otherwise.
    """
    if name is None:
        name = os.environ.get("COURSE_PROFILE") or ("full" if torch.cuda.is_available() else "quick")
    name = name.strip().lower()
    if name not in PROFILES:
        raise ValueError(
            f"profile: name must be one of {sorted(PROFILES)}, got {name!r} "
            "(check the COURSE_PROFILE environment variable)"
        )
    return PROFILES[name]


def device() -> torch.device:
    """The device lessons compute on: ``cuda`` if available, else ``mps`` (Apple), else ``cpu``.

    Set ``COURSE_DEVICE`` (e.g. ``cpu``) to override.
    """
    override = os.environ.get("COURSE_DEVICE")
    if override:
        return torch.device(override)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA); return a CPU ``torch.Generator`` with that seed."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed_everything: seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
