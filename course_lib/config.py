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

__all__ = ["Profile", "profile", "device", "seed_everything", "PROFILES", "course_seed", "train_seed",
           "record_checkpoint", "CHECKPOINT_VALUES"]

#: multiplier of ``COURSE_SEED`` in :func:`train_seed` (a prime, so offset seeds of different
#: course seeds do not collide for the small seeds lessons use)
_SEED_STRIDE = 7919
#: the measured quantities behind each checkpoint of the running lesson (see :func:`record_checkpoint`)
CHECKPOINT_VALUES: dict = {}


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
    elif not isinstance(name, str):
        raise ValueError(f"profile: name must be one of {sorted(PROFILES)} or None, got {name!r}")
    name = name.strip().lower()
    if name not in PROFILES:
        raise ValueError(
            f"profile: name must be one of {sorted(PROFILES)}, got {name!r} "
            "(check the COURSE_PROFILE environment variable)"
        )
    return PROFILES[name]


def device() -> torch.device:
    """The device lessons compute on: ``cuda`` if available, else ``mps`` (Apple), else ``cpu``.

    Set ``COURSE_DEVICE`` to override: ``cpu``, ``cuda``, ``cuda:<index>`` or ``mps`` (it must be
    available on this machine).
    """
    override = os.environ.get("COURSE_DEVICE", "").strip()
    if override:
        allowed = "'cpu', 'cuda', 'cuda:<index>' or 'mps'"
        try:
            dev = torch.device(override)
        except (RuntimeError, ValueError):
            dev = None
        if dev is None or dev.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"device: COURSE_DEVICE must be {allowed}, got {override!r}")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device: COURSE_DEVICE={override!r} but CUDA is not available here; use 'cpu'")
        if dev.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                      and torch.backends.mps.is_available()):
            raise ValueError(f"device: COURSE_DEVICE={override!r} but MPS is not available here; use 'cpu'")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def course_seed() -> int:
    """The training-seed offset ``COURSE_SEED`` (an int in [0, 99]; default 0).

    It changes every *training* seed of the course (initial weights, training batches, exercise
    data) through :func:`train_seed` and :func:`seed_everything`, never the held-out pairs, so a
    lesson re-run with another ``COURSE_SEED`` tests its claims on the same data with other
    training runs (``benchmarks/robustness.py`` does exactly that).
    """
    return _course_seed("course_seed")


def _course_seed(fn: str) -> int:
    """Read ``COURSE_SEED``; errors name the public function ``fn`` that read it, and the variable."""
    raw = os.environ.get("COURSE_SEED", "").strip() or "0"
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{fn}: COURSE_SEED must be an integer in [0, 99], got {raw!r}") from None
    if not 0 <= value <= 99:
        raise ValueError(f"{fn}: COURSE_SEED must be an integer in [0, 99], got {value}")
    return value


def train_seed(seed: int) -> int:
    """A lesson's training seed ``seed`` offset by ``COURSE_SEED``: ``seed + 7919 * COURSE_SEED``.

    Use it for everything a training run draws (``torch.manual_seed`` before building a model,
    the generator of training batches); use plain seeds for held-out data. With the default
    ``COURSE_SEED=0`` it returns ``seed`` unchanged. Results stay below 10**6, inside the
    ``train`` block of :data:`course_lib.data.SPLIT_SEEDS`, for seeds below 200000.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"train_seed: seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"train_seed: seed must be >= 0, got {seed}")
    return seed + _SEED_STRIDE * _course_seed("train_seed")


def record_checkpoint(check: str, **values: float) -> None:
    """Record the measured quantities behind checkpoint ``check`` (e.g. ``"09.1"``).

    Checkpoint cells call it *before* their assertion, so the value is kept whether the checkpoint
    passes or fails; ``benchmarks/robustness.py`` reads :data:`CHECKPOINT_VALUES` at the end of a
    run. Values must be finite or NaN floats (ints and bools are converted).
    """
    if not isinstance(check, str) or not check:
        raise TypeError(f"record_checkpoint: check must be a non-empty str, got {check!r}")
    clean = {}
    for name, v in values.items():
        if isinstance(v, torch.Tensor):
            if v.numel() != 1:
                raise ValueError(f"record_checkpoint: {name} must be a scalar, got shape {tuple(v.shape)}")
            v = v.item()
        if not isinstance(v, (int, float, np.floating, np.integer)):
            raise TypeError(f"record_checkpoint: {name} must be a number, got {type(v).__name__}")
        clean[name] = float(v)
    CHECKPOINT_VALUES[check] = clean


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) with ``train_seed(seed)``; return a CPU
    ``torch.Generator`` with that seed.

    The seed is offset by ``COURSE_SEED`` (see :func:`course_seed`): what a lesson draws from the
    global generators is training randomness. Held-out data uses explicit generators.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed_everything: seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed_everything: seed must be >= 0, got {seed}")
    seed = seed + _SEED_STRIDE * _course_seed("seed_everything")
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
