"""The one generic training loop, plus checkpoint save/load with the config.

Introduced in lesson 04 and used by every learned method. ``fit`` knows nothing about
registration: a ``step`` function turns a batch into a loss (and optional logged numbers).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

__all__ = ["fit", "cycle", "save_checkpoint", "load_checkpoint"]


def cycle(batches) -> Iterable:
    """Repeat an iterable (e.g. a DataLoader) forever; a callable is called for each batch."""
    if callable(batches):
        while True:
            yield batches()
    while True:
        empty = True
        for b in batches:
            empty = False
            yield b
        if empty:
            raise ValueError("cycle: batches is empty")


def fit(model: torch.nn.Module, step: Callable, batches, steps: int, lr: float = 1e-3,
        optimizer: torch.optim.Optimizer | None = None, seed: int | None = None,
        progress: bool = True, desc: str = "train", grad_clip: float | None = None,
        callback: Callable | None = None, callback_every: int = 0,
        checkpoint=None, checkpoint_every: int = 0, config=None) -> dict:
    """Train ``model`` for ``steps`` optimisation steps and return its history.

    Args:
        model: the module to train (set to ``train()`` mode here).
        step: ``step(model, batch) -> loss`` or ``-> (loss, {name: float})``.
        batches: an iterable of batches (cycled) or a zero-argument callable returning one.
        steps: total number of optimisation steps (including those of a resumed checkpoint).
        lr: Adam learning rate when ``optimizer`` is None.
        seed: seeds torch before training when given.
        progress: show a tqdm progress bar.
        grad_clip: clip the global gradient norm when given.
        callback: ``callback(model, step_index, history)`` every ``callback_every`` steps.
        checkpoint: a file path. If it exists, training **resumes** from it (weights, optimizer
            state, step count, history); the model is saved there every ``checkpoint_every``
            steps (when > 0) and at the end, with ``config`` (the model's config dataclass).
            A resumed run draws fresh batches: it continues the optimisation, not the exact
            sequence of batches an uninterrupted run would have seen.

    Returns:
        ``{"loss": [...], <logged names>: [...], "time": seconds}`` (over all steps so far when
        resumed).
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"fit: steps must be a positive int, got {steps!r}")
    if not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise ValueError(f"fit: checkpoint_every must be a non-negative int, got {checkpoint_every!r}")
    if seed is not None:
        torch.manual_seed(seed)
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    history: dict = {"loss": []}
    start_step, elapsed = 0, 0.0
    if checkpoint is not None and Path(checkpoint).exists():
        ckpt = load_checkpoint(checkpoint, model, opt, map_location=next(model.parameters()).device)
        start_step = int(ckpt.get("step", 0))
        history = dict(ckpt.get("history") or {"loss": []})
        elapsed = float(history.pop("time", 0.0))
        if start_step > steps:
            raise ValueError(f"fit: checkpoint {checkpoint} is already at step {start_step} > steps={steps}")

    def save(i):
        save_checkpoint(checkpoint, model, config, opt, step=i,
                        history={**history, "time": elapsed + time.perf_counter() - start})

    model.train()
    source = cycle(batches)
    start = time.perf_counter()
    bar = tqdm(range(start_step, steps), desc=desc, disable=not progress, leave=False, mininterval=0.5)
    for i in bar:
        out = step(model, next(source))
        loss, logs = (out if isinstance(out, tuple) else (out, {}))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"fit: loss became {loss.item()} at step {i}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        history["loss"].append(loss.item())
        for k, v in logs.items():
            history.setdefault(k, []).append(float(v))
        if i % 10 == 0:
            bar.set_postfix(loss=f"{history['loss'][-1]:.4g}")
        if callback is not None and callback_every and (i + 1) % callback_every == 0:
            callback(model, i + 1, history)
        if checkpoint is not None and checkpoint_every and (i + 1) % checkpoint_every == 0 and i + 1 < steps:
            save(i + 1)
    if checkpoint is not None:
        save(steps)
    history["time"] = elapsed + time.perf_counter() - start
    model.eval()
    return history


def save_checkpoint(path, model: torch.nn.Module, config=None, optimizer=None, step: int = 0,
                    history: dict | None = None) -> Path:
    """Save weights with the model's config dataclass (as a dict), optimizer state and history."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if config is not None and not dataclasses.is_dataclass(config):
        raise TypeError(f"save_checkpoint: config must be a dataclass instance, got {type(config).__name__}")
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
    """
    ckpt = torch.load(Path(path), map_location=map_location, weights_only=False)
    if model is not None:
        model.load_state_dict(ckpt["model"])
    if optimizer is not None and ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt
