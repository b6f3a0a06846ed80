"""Checkpoints: weights with their config dataclass, loaded without running code.

Part of :mod:`course_lib.train`.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import torch

from .._checks import check_int


def save_checkpoint(path, model: torch.nn.Module, config=None, optimizer=None, step: int = 0,
                    history: dict | None = None) -> Path:
    """Save weights with the model's config dataclass (as a dict), optimizer state and history."""
    fn = "save_checkpoint"
    if not isinstance(path, (str, Path)):
        raise TypeError(f"{fn}: path must be a str or pathlib.Path, got {type(path).__name__}")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{fn}: model must be a torch.nn.Module, got {type(model).__name__}")
    if config is not None and not (dataclasses.is_dataclass(config) and not isinstance(config, type)):
        raise TypeError(f"{fn}: config must be a dataclass instance, got {type(config).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{fn}: optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    check_int(fn, "step", step, minimum=0)
    if history is not None and not isinstance(history, dict):
        raise TypeError(f"{fn}: history must be a dict or None, got {type(history).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "model": model.state_dict(),
        "config": dataclasses.asdict(config) if config is not None else None,
        "config_class": type(config).__name__ if config is not None else None,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": step,
        "history": history,
    }, path)
    return path


def load_checkpoint(path, model: torch.nn.Module | None = None, optimizer=None,
                    map_location="cpu") -> dict:
    """Load a checkpoint; restore ``model`` (and ``optimizer``) in place when given.

    Returns the checkpoint dict (``config`` is the saved dict: rebuild the dataclass with
    ``MyConfig(**ckpt["config"])``).

    The file is read with ``torch.load(weights_only=True)``: tensors, numbers, strings and
    containers only, so a checkpoint from elsewhere cannot run code when it is loaded.
    """
    if not isinstance(path, (str, Path)):
        raise TypeError(f"load_checkpoint: path must be a str or pathlib.Path, got {type(path).__name__}")
    if model is not None and not isinstance(model, torch.nn.Module):
        raise TypeError(f"load_checkpoint: model must be a torch.nn.Module or None, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"load_checkpoint: optimizer must be a torch.optim.Optimizer or None, "
                        f"got {type(optimizer).__name__}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"load_checkpoint: no checkpoint file at {path}")
    try:
        ckpt = torch.load(Path(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"load_checkpoint: {path} holds objects other than tensors, numbers, strings and "
                         f"containers; refusing to unpickle them (they could run code): {err}") from err
    if model is not None:
        model.load_state_dict(ckpt["model"])
    if optimizer is not None and ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt
