"""Checkpoints: weights with their config dataclass, loaded without running code.

Part of :mod:`course_lib.train`.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import torch

from .._checks import check_int


def _is_config(c) -> bool:
    return dataclasses.is_dataclass(c) and not isinstance(c, type)


def _first_not_plain(x, where: str = "history") -> str | None:
    """Where ``x`` holds something other than plain data (None, bool, numbers, strings, tensors, and
    lists, tuples or str-keyed dicts of them), as a path like ``history['loss'][3]``; else None.
    A checkpoint of plain data loads with ``weights_only=True``; anything else could not."""
    if x is None or type(x) in (bool, int, float, str) or isinstance(x, torch.Tensor):
        return None                     # exact types: a str or float subclass (numpy.float64) would not load
    if isinstance(x, (list, tuple)):
        return next((p for i, v in enumerate(x) if (p := _first_not_plain(v, f"{where}[{i}]"))), None)
    if isinstance(x, dict):
        if not all(isinstance(k, str) for k in x):
            return f"{where} (a dict with non-string keys)"
        return next((p for k, v in x.items() if (p := _first_not_plain(v, f"{where}[{k!r}]"))), None)
    return f"{where} (a {type(x).__name__})"


def save_checkpoint(path, model: torch.nn.Module, config=None, optimizer=None, step: int = 0,
                    history: dict | None = None, recipe: dict | None = None) -> Path:
    """Save weights with the model's config dataclass (as a dict), optimizer state and history.

    ``recipe`` (plain data, like ``history``) records how the weights were made (see
    :func:`course_lib.train.cached_model`).

    Several networks trained together (lesson 10's generator and discriminator) go in one file:
    ``model`` a :class:`torch.nn.ModuleDict`, ``optimizer`` a dict ``{name: Optimizer}`` and
    ``config`` a dict ``{name: dataclass or None}``; they are stored as dicts of plain data.
    """
    fn = "save_checkpoint"
    if not isinstance(path, (str, Path)):
        raise TypeError(f"{fn}: path must be a str or pathlib.Path, got {type(path).__name__}")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{fn}: model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(config, dict):
        bad = {k: type(c).__name__ for k, c in config.items() if c is not None and not _is_config(c)}
        if bad or not all(isinstance(k, str) for k in config):
            raise TypeError(f"{fn}: config must be a dataclass instance or a dict {{str: dataclass or None}}, "
                            f"got a dict with {bad or 'non-string keys'}")
    elif config is not None and not _is_config(config):
        raise TypeError(f"{fn}: config must be a dataclass instance, got {type(config).__name__}")
    if isinstance(optimizer, dict):
        bad = {k: type(o).__name__ for k, o in optimizer.items() if not isinstance(o, torch.optim.Optimizer)}
        if bad or not optimizer or not all(isinstance(k, str) for k in optimizer):
            raise TypeError(f"{fn}: optimizer must be a torch.optim.Optimizer, a non-empty dict "
                            f"{{str: Optimizer}} or None, got a dict with {bad or 'no entries or non-string keys'}")
    elif optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{fn}: optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    check_int(fn, "step", step, minimum=0)
    if history is not None and not isinstance(history, dict):
        raise TypeError(f"{fn}: history must be a dict or None, got {type(history).__name__}")
    if recipe is not None and not isinstance(recipe, dict):
        raise TypeError(f"{fn}: recipe must be a dict or None, got {type(recipe).__name__}")
    for name, value in (("history", history), ("recipe", recipe)):
        bad = _first_not_plain(value, name)
        if bad:
            raise TypeError(f"{fn}: {name} must hold plain data only (numbers, strings, tensors, lists and dicts of "
                            f"them), so that the file loads without running code; found {bad}")
    if isinstance(config, dict):
        config_data = {k: dataclasses.asdict(c) if c is not None else None for k, c in config.items()}
        config_class = {k: type(c).__name__ if c is not None else None for k, c in config.items()}
    else:
        config_data = dataclasses.asdict(config) if config is not None else None
        config_class = type(config).__name__ if config is not None else None
    if isinstance(optimizer, dict):
        optimizer_data = {k: o.state_dict() for k, o in optimizer.items()}
    else:
        optimizer_data = optimizer.state_dict() if optimizer is not None else None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "model": model.state_dict(),
        "config": config_data,
        "config_class": config_class,
        "optimizer": optimizer_data,
        "step": step,
        "history": history,
        "recipe": recipe,
    }, path)
    return path


def load_checkpoint(path, model: torch.nn.Module | None = None, optimizer=None,
                    map_location="cpu") -> dict:
    """Load a checkpoint; restore ``model`` (and ``optimizer``) in place when given.

    Returns the checkpoint dict (``config`` is the saved dict: rebuild the dataclass with
    ``MyConfig(**ckpt["config"])``). ``optimizer`` is an Optimizer, or a dict ``{name: Optimizer}``
    for a checkpoint saved with one (see :func:`save_checkpoint`).

    The file is read with ``torch.load(weights_only=True)``: tensors, numbers, strings and
    containers only, so a checkpoint from elsewhere cannot run code when it is loaded.
    """
    if not isinstance(path, (str, Path)):
        raise TypeError(f"load_checkpoint: path must be a str or pathlib.Path, got {type(path).__name__}")
    if model is not None and not isinstance(model, torch.nn.Module):
        raise TypeError(f"load_checkpoint: model must be a torch.nn.Module or None, got {type(model).__name__}")
    if isinstance(optimizer, dict):
        if not all(isinstance(o, torch.optim.Optimizer) for o in optimizer.values()):
            raise TypeError("load_checkpoint: optimizer must be a torch.optim.Optimizer, a dict {str: Optimizer} "
                            f"or None, got a dict of {sorted({type(o).__name__ for o in optimizer.values()})}")
    elif optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
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
    saved = ckpt.get("optimizer")
    if optimizer is not None and saved is not None:
        saved_many = "param_groups" not in saved                 # {name: state dict}, not one state dict
        if isinstance(optimizer, dict) != saved_many:
            want = "a dict {name: Optimizer}" if saved_many else "one torch.optim.Optimizer"
            raise ValueError(f"load_checkpoint: optimizer must be {want}, as saved in {path}, "
                             f"got {type(optimizer).__name__}")
        if isinstance(optimizer, dict):
            missing = sorted(set(optimizer) - set(saved))
            if missing:
                raise ValueError(f"load_checkpoint: optimizer names {missing} are not in {path} "
                                 f"(it holds {sorted(saved)})")
            for k, o in optimizer.items():
                o.load_state_dict(saved[k])
        else:
            optimizer.load_state_dict(saved)
    return ckpt
