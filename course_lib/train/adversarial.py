"""Adversarial training: the companion of :func:`~course_lib.train.fit` for a generator and a discriminator.

Introduced in lesson 10 (adversarial registration: Fan et al. 2018, Yan et al. 2018, Hu et al.
2018). Like ``fit``, it knows nothing about registration: two step functions supplied by the
caller turn a batch into the discriminator's and the generator's losses; the loop alternates
them with two Adam optimizers, a progress bar, a history and checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .._checks import check_callable, check_int, check_number
from .checkpoint import load_checkpoint, save_checkpoint
from .gan_losses import discriminator_lr_factor
from .loop import _check_batches, _check_config, _check_loop_options, _cycle
from .stack import ModelStack

__all__ = ["fit_adversarial"]

#: history names the loop writes itself (a step function may not log under them)
_RESERVED = ("d_loss", "g_loss", "d_lr_factor", "time")


def fit_adversarial(generator: torch.nn.Module, discriminator: torch.nn.Module, g_step: Callable,
                    d_step: Callable, batches, steps: int, lr_g: float = 1e-3, lr_d: float = 1e-3,
                    betas=(0.9, 0.999), seed: int | None = None, progress: bool = True,
                    desc: str = "adversarial", warmup_d: int = 0, warmup_g: int = 0,
                    d_threshold: float | None = None, d_floor: float = 0.0, grad_clip: float | None = None,
                    callback: Callable | None = None, callback_every: int = 0, checkpoint=None,
                    checkpoint_every: int = 0, config_g=None, config_d=None,
                    lr_schedule: Callable[[int], float] | None = None) -> dict:
    """Train a generator against a discriminator, alternating their steps; return the history.

    Each step ``i`` (0-based) draws one batch and runs, on that batch,

    1. the **discriminator phase**: ``d_step(generator, discriminator, batch, i)`` with the
       generator's weights frozen (no graph, no gradient for them), then one Adam step of the
       discriminator only, at ``lr_d`` times the gate below;
    2. the **generator phase**: ``g_step(generator, discriminator, batch, i)`` with the
       discriminator's weights frozen (gradients flow *through* D to the generator's output, but
       D's weights get none), then one Adam step of the generator only.

    Each phase touches only its own network, whatever the step function computes; frozen means
    ``requires_grad=False`` for the phase (weights the caller froze stay frozen).

    Stabilisers:

    * **Warm-up**: the first ``warmup_d`` steps run the discriminator phase only (D learns to
      tell the untrained generator's output from real samples before G listens to it); the next
      ``warmup_g`` steps run the generator phase only (e.g. a similarity loss alone, ``i`` tells
      ``g_step`` where it is; D then meets a generator that is already roughly right). Both count
      in ``steps``.
    * **Discriminator gated by its loss** (after Fan et al. 2018's code): with ``d_threshold``,
      D's step on a batch whose D loss is ``<= d_threshold`` is skipped (``d_floor = 0``) or taken
      with the learning rate times ``d_floor`` (:func:`~course_lib.train.discriminator_lr_factor`).
    * Label smoothing, the least-squares loss, the R1 penalty and spectral normalisation belong to
      the step functions and the discriminator (:mod:`~course_lib.train.gan_losses`).

    Args:
        generator: the registration network (any ``torch.nn.Module``), trained in place.
        discriminator: the discriminator (any ``torch.nn.Module``, e.g.
            :class:`course_lib.networks.Discriminator`); no weight may be shared with the generator.
        g_step: ``g_step(generator, discriminator, batch, i) -> loss`` or ``-> (loss, {name: float})``.
        d_step: ``d_step(generator, discriminator, batch, i) -> loss`` or ``-> (loss, {name: float})``,
            e.g. with :func:`~course_lib.train.discriminator_loss` and, to log D's accuracy,
            :func:`~course_lib.train.discriminator_stats`.
        batches: an iterable of batches (cycled) or a zero-argument callable returning one.
        steps: total number of steps (warm-up and a resumed checkpoint's steps included).
        lr_g, lr_d: the two Adam learning rates.
        betas: Adam's ``(β1, β2)`` for both optimizers (default: Adam's, as :func:`fit`; DCGAN,
            Radford et al. 2016, uses ``(0.5, 0.999)``).
        seed: seeds torch before training when given.
        progress, desc: a tqdm progress bar and its label.
        warmup_d, warmup_g: D-only steps, then G-only steps, at the start.
        d_threshold: gate D's learning rate by its loss (None: never gated).
        d_floor: D's learning-rate factor while gated, in [0, 1].
        grad_clip: clip each network's global gradient norm when given (a :class:`ModelStack`:
            each member's own norm).
        callback: ``callback(generator, discriminator, step_index, history)`` every ``callback_every`` steps.
        checkpoint: a file path. If it exists, training **resumes** from it (both networks, both
            optimizers, step count, history); both are saved there every ``checkpoint_every``
            steps (when > 0) and at the end, as one :class:`torch.nn.ModuleDict`
            ``{"generator", "discriminator"}`` with the optimizers and ``config_g`` / ``config_d``
            under the same names (:func:`save_checkpoint`; loaded with ``weights_only=True``).
        config_g, config_d: the networks' config dataclasses, saved with the checkpoint.
        lr_schedule: ``lr_schedule(i) -> factor`` for both learning rates (e.g. :func:`decay_schedule`).

    Returns:
        ``{"d_loss": [...], "g_loss": [...], "d_lr_factor": [...], <logged names>: [...], "time": s}``,
        one entry per step: NaN where a phase did not run (warm-up) or a name was not logged;
        ``d_lr_factor`` is the gate's factor for D's step (1, or ``d_floor`` when gated: 0 =
        skipped), on top of ``lr_schedule``.

    Every argument is checked before the first step.

    Example: Fan et al. 2018's adversarial similarity, sketched (``net`` a
    :class:`~course_lib.networks.VoxelMorph`, ``disc`` a :class:`~course_lib.networks.Discriminator`
    with ``in_channels=2``)::

        def d_step(net, disc, batch, i):
            moving, fixed = batch
            alpha = 0.2 if i < steps // 2 else 0.1           # the reference's fixed weight: 0.8, then 0.9
            reference = alpha * moving + (1 - alpha) * fixed
            warped = net(moving, fixed).warped               # the generator is frozen in this phase
            real, fake = disc(reference, fixed), disc(warped, fixed)
            return discriminator_loss(real, fake), discriminator_stats(real, fake)

        def g_step(net, disc, batch, i):
            moving, fixed = batch
            out = net(moving, fixed)
            return generator_loss(disc(out.warped, fixed)) + lam * diffusion(out.flow)

        history = fit_adversarial(net, disc, g_step, d_step, pairs, steps, lr_g=1e-3, lr_d=1e-4)
    """
    _check_arguments(generator, discriminator, g_step, d_step, batches, steps, lr_g, lr_d, betas, seed,
                     progress, desc, warmup_d, warmup_g, d_threshold, d_floor, grad_clip, callback,
                     callback_every, checkpoint, checkpoint_every, config_g, config_d, lr_schedule)
    if seed is not None:
        torch.manual_seed(seed)
    betas = tuple(float(b) for b in betas)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr_g, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=betas)
    pair = torch.nn.ModuleDict({"generator": generator, "discriminator": discriminator})
    optimizers = {"generator": opt_g, "discriminator": opt_d}
    base_g, base_d = [g["lr"] for g in opt_g.param_groups], [g["lr"] for g in opt_d.param_groups]
    configs = None if config_g is None and config_d is None else {"generator": config_g, "discriminator": config_d}
    history: dict = {"d_loss": [], "g_loss": [], "d_lr_factor": []}
    start_step, elapsed = 0, 0.0
    if checkpoint is not None and Path(checkpoint).exists():
        ckpt = load_checkpoint(checkpoint, pair, optimizers, map_location=next(generator.parameters()).device)
        start_step = int(ckpt.get("step", 0))
        history = dict(ckpt.get("history") or history)
        elapsed = float(history.pop("time", 0.0))
        if start_step > steps:
            raise ValueError(f"fit_adversarial: checkpoint {checkpoint} is already at step {start_step} "
                             f"> steps={steps}")

    def save(i):
        save_checkpoint(checkpoint, pair, configs, optimizers, step=i,
                        history={**history, "time": elapsed + time.perf_counter() - start})

    generator.train()
    discriminator.train()
    source = _cycle(batches)
    start = time.perf_counter()
    # leave=True, as fit: a bar that closes itself leaves a broken widget in a saved notebook
    bar = tqdm(range(start_step, steps), desc=desc, disable=not progress, leave=True, mininterval=0.5)
    for i in bar:
        factor = 1.0
        if lr_schedule is not None:
            factor = check_number("fit_adversarial", f"lr_schedule({i})", lr_schedule(i), minimum=0)
        batch = next(source)
        n = len(history["d_loss"])                              # entries so far (resumed runs included)
        logged: dict = {}
        if i < warmup_d or i >= warmup_d + warmup_g:            # ---------------- discriminator phase
            with _frozen(generator):
                d_loss, logs = _loss("d_step", d_step(generator, discriminator, batch, i), i)
            gate = 1.0 if d_threshold is None else discriminator_lr_factor(d_loss.item(), d_threshold, d_floor)
            if gate > 0:
                _update(opt_d, base_d, discriminator, d_loss, factor * gate, grad_clip)
            logged.update(d_loss=d_loss.item(), d_lr_factor=gate, **_named("d_step", logs))
        if i >= warmup_d:                                       # ---------------- generator phase
            with _frozen(discriminator):
                g_loss, logs = _loss("g_step", g_step(generator, discriminator, batch, i), i)
            _update(opt_g, base_g, generator, g_loss, factor, grad_clip)
            clash = sorted(set(_named("g_step", logs)) & set(logged))
            if clash:
                raise ValueError(f"fit_adversarial: d_step and g_step both log {clash}; give them distinct names")
            logged.update(g_loss=g_loss.item(), **logs)
        for k, v in logged.items():
            history.setdefault(k, [math.nan] * n).append(float(v))
        for values in history.values():                         # a phase or a name that did not run
            if len(values) == n:
                values.append(math.nan)
        if i % 10 == 0:
            bar.set_postfix(d=f"{history['d_loss'][-1]:.4g}", g=f"{history['g_loss'][-1]:.4g}")
        if callback is not None and callback_every and (i + 1) % callback_every == 0:
            callback(generator, discriminator, i + 1, history)
        if checkpoint is not None and checkpoint_every and (i + 1) % checkpoint_every == 0 and i + 1 < steps:
            save(i + 1)
    if checkpoint is not None:
        save(steps)
    history["time"] = elapsed + time.perf_counter() - start
    generator.eval()
    discriminator.eval()
    return history


@contextlib.contextmanager
def _frozen(module: torch.nn.Module):
    """``requires_grad=False`` for the module's trainable weights inside the block, restored after."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _loss(name: str, out, i: int) -> tuple[torch.Tensor, dict]:
    """Split a step's output into (scalar loss, logs) and check it."""
    loss, logs = out if isinstance(out, tuple) else (out, {})
    fn = "fit_adversarial"
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise TypeError(f"{fn}: {name} must return a one-element loss tensor (or (loss, dict)), got "
                        + (f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__))
    if not isinstance(logs, dict):
        raise TypeError(f"{fn}: {name} must return loss or (loss, {{name: float}}), "
                        f"got a {type(logs).__name__} as logs")
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{fn}: the loss of {name} became {loss.item()} at step {i}")
    if not loss.requires_grad:
        net = "discriminator" if name == "d_step" else "generator"
        raise ValueError(f"{fn}: the loss of {name} does not depend on the {net}'s trainable weights (step {i})")
    return loss.reshape(()), logs


def _named(name: str, logs: dict) -> dict:
    bad = sorted(k for k in logs if k in _RESERVED or not isinstance(k, str))
    if bad:
        raise ValueError(f"fit_adversarial: {name} logs under reserved names {bad} (reserved: {_RESERVED})")
    return logs


def _update(opt: torch.optim.Optimizer, base_lrs: list, model: torch.nn.Module, loss: torch.Tensor,
            factor: float, grad_clip: float | None) -> None:
    """One optimizer step of ``model`` on ``loss`` at the base learning rates times ``factor``."""
    for g, base in zip(opt.param_groups, base_lrs):
        g["lr"] = base * factor
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        if isinstance(model, ModelStack):
            model.clip_grad_norm_(grad_clip)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()


def _check_arguments(generator, discriminator, g_step, d_step, batches, steps, lr_g, lr_d, betas, seed,
                     progress, desc, warmup_d, warmup_g, d_threshold, d_floor, grad_clip, callback,
                     callback_every, checkpoint, checkpoint_every, config_g, config_d, lr_schedule) -> None:
    fn = "fit_adversarial"
    for name, model in (("generator", generator), ("discriminator", discriminator)):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"{fn}: {name} must be a torch.nn.Module, got {type(model).__name__}")
        if next(model.parameters(), None) is None:
            raise ValueError(f"{fn}: {name} has no parameters to train")
    shared = {id(p) for p in generator.parameters()} & {id(p) for p in discriminator.parameters()}
    if shared:
        raise ValueError(f"{fn}: generator and discriminator share {len(shared)} parameter tensor(s); "
                         f"each phase must update one network only")
    check_callable(fn, "g_step", g_step, "a callable g_step(generator, discriminator, batch, i) -> loss")
    check_callable(fn, "d_step", d_step, "a callable d_step(generator, discriminator, batch, i) -> loss")
    _check_batches(fn, batches)
    check_int(fn, "steps", steps, minimum=1)
    check_number(fn, "lr_g", lr_g, minimum=0, positive=True)
    check_number(fn, "lr_d", lr_d, minimum=0, positive=True)
    if isinstance(betas, (str, bytes)) or not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"{fn}: betas must be a pair of numbers (beta1, beta2), got {betas!r}")
    for k, b in enumerate(betas):
        v = check_number(fn, f"betas[{k}]", b, minimum=0)
        if v >= 1:
            raise ValueError(f"{fn}: betas[{k}] must be in [0, 1), got {v:g}")
    check_int(fn, "warmup_d", warmup_d, minimum=0)
    check_int(fn, "warmup_g", warmup_g, minimum=0)
    if warmup_d + warmup_g > steps:
        raise ValueError(f"{fn}: warmup_d + warmup_g must be <= steps={steps}, got {warmup_d} + {warmup_g}")
    check_number(fn, "d_threshold", d_threshold, optional=True)
    check_number(fn, "d_floor", d_floor, minimum=0, maximum=1)
    _check_loop_options(fn, seed, progress, desc, grad_clip, callback,
                        "callback(generator, discriminator, step, history)", callback_every, checkpoint,
                        checkpoint_every, lr_schedule)
    _check_config(fn, "config_g", config_g)
    _check_config(fn, "config_d", config_d)
