"""Trained models kept between lessons: a saved model is reused only when its recipe matches.

Part of :mod:`course_lib.train`. Lessons 04–10 train models that the capstone (lesson 11) compares.
:func:`cached_model` saves each one under ``data/cache/models/`` with its **recipe**: the plain data
that determines its weights (config, steps, seeds, learning rate, data, ``COURSE_SEED``), to which it
adds the environment that changes floating-point results (torch version, device type, thread
count). A later call with the same recipe loads the weights instead of training; any difference
retrains and overwrites. Loading reads tensors and plain data only (``weights_only=True``).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch

from .._checks import check_callable
from .checkpoint import _first_not_plain, load_checkpoint, save_checkpoint

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _plain(x):
    """A canonical plain-data copy: dataclasses become dicts (with their class name), tuples lists."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {"class": type(x).__name__, **{k: _plain(v) for k, v in dataclasses.asdict(x).items()}}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def environment(model: torch.nn.Module | None = None) -> dict:
    """What changes trained weights besides the recipe: torch version, thread count and (given a
    model) the type of the device its parameters are on."""
    env = {"torch": str(torch.__version__), "threads": torch.get_num_threads()}
    if model is not None:
        env["device"] = next((p.device.type for p in model.parameters()), "cpu")
    return env


def _check_recipe(fn: str, recipe) -> dict:
    if not isinstance(recipe, dict) or not recipe:
        raise TypeError(f"{fn}: recipe must be a non-empty dict of plain data (config, steps, seed, ...), "
                        f"got {type(recipe).__name__}")
    recipe = _plain(recipe)
    bad = _first_not_plain(recipe, "recipe")
    if bad:
        raise TypeError(f"{fn}: recipe must hold plain data only (numbers, strings, lists, str-keyed dicts, "
                        f"dataclass configs); found {bad}")
    if any(isinstance(v, torch.Tensor) for v in _leaves(recipe)):
        raise TypeError(f"{fn}: recipe must not hold tensors (compare them by a seed or a name instead)")
    return recipe


def _leaves(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _leaves(v)
    elif isinstance(x, list):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


def cached_model(name: str, recipe: dict, build, train, directory=None, device=None):
    """A model trained by ``recipe``: loaded from ``directory/name.pt`` if saved with the same recipe,
    else built, trained and saved.

    Args:
        name: file name without extension (letters, digits, ``_ . + -``), e.g. ``"08_lncc_seed0"``.
        recipe: plain data that determines the weights, e.g. ``{"config": cfg, "steps": 400, "seed": 0,
            "lr": 3e-3, "data": "axial 2 mm, simulator 2", "course_seed": config.course_seed()}``.
            Dataclass configs are stored as dicts. :func:`environment` is added to it (a key
            ``"environment"`` of your own is replaced).
        build: ``() -> torch.nn.Module``, the untrained model (seeded inside, so it is the same each time).
        train: ``model -> history`` (a dict of plain data, or None): trains the model in place.
        directory: where checkpoints live; default ``data.cache_dir() / "models"``.
        device: where the returned model lives (default: where ``build`` put it).

    Returns:
        ``(model, info)`` with ``info = {"path", "loaded" (bool), "history"}``.

    A file at the path that is not a checkpoint of plain data is refused with an error (it could
    run code), never silently overwritten: delete it to retrain.
    """
    fn = "cached_model"
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{fn}: name must be a file name of letters, digits and _ . + - (no path), got {name!r}")
    recipe = _check_recipe(fn, recipe)
    check_callable(fn, "build", build, "a callable () -> torch.nn.Module")
    check_callable(fn, "train", train, "a callable model -> history dict or None")
    if directory is None:
        from ..data import cache_dir                     # lazy: train does not need data otherwise
        directory = cache_dir() / "models"
    if not isinstance(directory, (str, Path)):
        raise TypeError(f"{fn}: directory must be a str, a pathlib.Path or None, got {type(directory).__name__}")
    path = Path(directory) / f"{name}.pt"
    model = build()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{fn}: build() must return a torch.nn.Module, got {type(model).__name__}")
    recipe = {**recipe, "environment": environment(model)}
    if path.is_file():
        saved = load_checkpoint(path)                    # weights_only: refuses anything that could run code
        if saved.get("recipe") == recipe:
            model.load_state_dict(saved["model"])
            return (model.to(device) if device is not None else model,
                    {"path": path, "loaded": True, "history": saved.get("history")})
    history = train(model)
    if history is not None and not isinstance(history, dict):
        raise TypeError(f"{fn}: train(model) must return a history dict or None, got {type(history).__name__}")
    save_checkpoint(path, model, history=history, recipe=recipe)
    return model.to(device) if device is not None else model, {"path": path, "loaded": False, "history": history}
