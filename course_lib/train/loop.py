"""The one generic training loop, its learning-rate schedule and BatchNorm recalibration.

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

from .._checks import check_callable, check_int, check_number
from .checkpoint import load_checkpoint, save_checkpoint
from .stack import ModelStack

def cycle(batches) -> Iterable:
    """Repeat an iterable (e.g. a DataLoader) forever; a callable is called for each batch."""
    _check_batches("cycle", batches)
    return _cycle(batches)


def _check_batches(fn: str, batches) -> None:
    if isinstance(batches, torch.Tensor) or not (callable(batches) or hasattr(batches, "__iter__")):
        raise TypeError(f"{fn}: batches must be an iterable of batches (e.g. a list or a DataLoader) or a "
                        f"zero-argument callable returning one, got {type(batches).__name__}")


def _cycle(batches) -> Iterable:
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
        checkpoint=None, checkpoint_every: int = 0, config=None,
        lr_schedule: Callable[[int], float] | None = None) -> dict:
    """Train ``model`` for ``steps`` optimisation steps and return its history.

    Args:
        model: the module to train (set to ``train()`` mode here).
        step: ``step(model, batch) -> loss`` or ``-> (loss, {name: float})``.
        batches: an iterable of batches (cycled) or a zero-argument callable returning one.
        steps: total number of optimisation steps (including those of a resumed checkpoint).
        lr: Adam learning rate when ``optimizer`` is None.
        seed: seeds torch before training when given.
        progress: show a tqdm progress bar.
        grad_clip: clip the global gradient norm when given (for a :class:`ModelStack`, each
            member's own gradient norm, as if it were trained alone).
        callback: ``callback(model, step_index, history)`` every ``callback_every`` steps.
        checkpoint: a file path. If it exists, training **resumes** from it (weights, optimizer
            state, step count, history); the model is saved there every ``checkpoint_every``
            steps (when > 0) and at the end, with ``config`` (the model's config dataclass).
            A resumed run draws fresh batches: it continues the optimisation, not the exact
            sequence of batches an uninterrupted run would have seen.
        config: the model's config dataclass, saved with the checkpoint.
        lr_schedule: ``lr_schedule(i) -> factor``: step ``i`` (0-based) uses the optimizer's
            learning rate times ``factor`` (e.g. :func:`decay_schedule`). A function of the step
            index only, so a resumed run continues the schedule exactly where it stopped.

    Returns:
        ``{"loss": [...], <logged names>: [...], "time": seconds}`` (over all steps so far when
        resumed).

    Every argument is checked before the first step (a negative ``grad_clip`` would flip the
    gradient, so it is an error, not a silent uphill run).
    """
    _check_fit_arguments(model, step, batches, steps, lr, optimizer, seed, progress, desc, grad_clip,
                         callback, callback_every, checkpoint, checkpoint_every, config, lr_schedule)
    if seed is not None:
        torch.manual_seed(seed)
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    base_lrs = [g["lr"] for g in opt.param_groups]           # before a checkpoint overwrites them
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
    source = _cycle(batches)
    start = time.perf_counter()
    # leave=True: a bar that closes itself (leave=False) closes its widget, and a notebook saved after
    # the run then shows "Error displaying widget: model not found" where the bar was
    bar = tqdm(range(start_step, steps), desc=desc, disable=not progress, leave=True, mininterval=0.5)
    for i in bar:
        if lr_schedule is not None:
            factor = check_number("fit", f"lr_schedule({i})", lr_schedule(i), minimum=0)
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base * factor
        out = step(model, next(source))
        loss, logs = (out if isinstance(out, tuple) else (out, {}))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"fit: loss became {loss.item()} at step {i}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            if isinstance(model, ModelStack):
                model.clip_grad_norm_(grad_clip)                 # each member's own norm
            else:
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


def _check_fit_arguments(model, step, batches, steps, lr, optimizer, seed, progress, desc, grad_clip,
                         callback, callback_every, checkpoint, checkpoint_every, config, lr_schedule) -> None:
    fn = "fit"
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{fn}: model must be a torch.nn.Module, got {type(model).__name__}")
    if next(model.parameters(), None) is None:
        raise ValueError(f"{fn}: model has no parameters to train")
    check_callable(fn, "step", step, "a callable step(model, batch) -> loss")
    _check_batches(fn, batches)
    check_int(fn, "steps", steps, minimum=1)
    if optimizer is None:
        check_number(fn, "lr", lr, minimum=0, positive=True)
    elif not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{fn}: optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    _check_loop_options(fn, seed, progress, desc, grad_clip, callback, "callback(model, step, history)",
                        callback_every, checkpoint, checkpoint_every, lr_schedule)
    _check_config(fn, "config", config)


def _check_loop_options(fn, seed, progress, desc, grad_clip, callback, callback_signature, callback_every,
                        checkpoint, checkpoint_every, lr_schedule) -> None:
    # the options every training loop shares (fit, fit_adversarial)
    check_int(fn, "seed", seed, optional=True)
    if not isinstance(progress, bool):
        raise TypeError(f"{fn}: progress must be a bool, got {type(progress).__name__}")
    if not isinstance(desc, str):
        raise TypeError(f"{fn}: desc must be a str, got {type(desc).__name__}")
    check_number(fn, "grad_clip", grad_clip, minimum=0, positive=True, optional=True)
    if callback is not None:
        check_callable(fn, "callback", callback, f"a callable {callback_signature} or None")
    check_int(fn, "callback_every", callback_every, minimum=0)
    if checkpoint is not None and not isinstance(checkpoint, (str, Path)):
        raise TypeError(f"{fn}: checkpoint must be a str or pathlib.Path (or None), got {type(checkpoint).__name__}")
    check_int(fn, "checkpoint_every", checkpoint_every, minimum=0)
    if lr_schedule is not None:
        check_callable(fn, "lr_schedule", lr_schedule, "a callable lr_schedule(step) -> factor or None")


def _check_config(fn, name, config) -> None:
    if config is not None and not (dataclasses.is_dataclass(config) and not isinstance(config, type)):
        raise TypeError(f"{fn}: {name} must be a dataclass instance or None, got {type(config).__name__}")

def decay_schedule(steps: int, decay_from: float = 0.75, final: float = 0.1) -> Callable[[int], float]:
    """A learning-rate schedule for :func:`fit`: constant, then a linear decay over the last steps.

    Step ``i`` gets the factor 1 while ``i < decay_from * steps``, then a factor falling linearly
    to ``final`` at the last step. Why: with a constant rate, a short training ends wherever the
    last noisy steps left it, and the final model of a run is a random draw from that noise (lesson
    08 measures it); decaying over the last quarter lets it settle, while the constant phase keeps
    the speed of the early training.

    Args:
        steps: the total number of training steps (>= 1), as given to ``fit``.
        decay_from: the fraction of ``steps`` after which the decay starts, in [0, 1).
        final: the factor at the last step, in [0, 1].
    """
    fn = "decay_schedule"
    check_int(fn, "steps", steps, minimum=1)
    check_number(fn, "decay_from", decay_from, minimum=0)
    check_number(fn, "final", final, minimum=0, maximum=1)
    if decay_from >= 1:
        raise ValueError(f"{fn}: decay_from must be in [0, 1), got {decay_from!r}")
    start = decay_from * steps
    span = max(steps - 1 - start, 1e-12)

    def schedule(i: int) -> float:
        if i < start:
            return 1.0
        return 1.0 - (1.0 - final) * min(1.0, (i - start) / span)

    return schedule


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, forward: Callable, batches, n_batches: int = 32) -> int:
    """Re-estimate every BatchNorm layer's running statistics with the model's **final** weights.

    During training, BatchNorm keeps an exponential moving average (momentum 0.1) of batch
    statistics computed while the weights were still changing, and uses it in ``eval()`` mode. After
    a short training with a large learning rate, that average can lag the final weights so far that
    the model which does well on its training batches (train mode: batch statistics) fails on the
    same images in eval mode. This runs ``forward(model, batch)`` in train mode without gradients on
    ``n_batches`` batches and replaces the running mean and variance by their plain average over
    them ("precise BatchNorm"; Wu & Johnson, *Rethinking "Batch" in BatchNorm*, 2021). The
    weights are not touched; the model is left in ``eval()`` mode.

    Args:
        model: a module with BatchNorm layers (none: nothing to do, returns 0).
        forward: ``forward(model, batch)``: the training forward pass on one batch (its output is
            ignored).
        batches: an iterable of batches (cycled) or a zero-argument callable returning one, as in
            :func:`fit`; use batches from the training distribution.
        n_batches: how many batches to average over (>= 1).

    Returns:
        the number of BatchNorm layers recalibrated.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"recalibrate_batchnorm: model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(forward):
        raise TypeError(f"recalibrate_batchnorm: forward must be callable (model, batch) -> output, "
                        f"got {type(forward).__name__}")
    check_int("recalibrate_batchnorm", "n_batches", n_batches, minimum=1)
    _check_batches("recalibrate_batchnorm", batches)
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        model.eval()
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None                               # None: a cumulative (plain) average
    model.train()
    try:
        source = _cycle(batches)
        for _ in range(n_batches):
            forward(model, next(source))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return len(norms)
