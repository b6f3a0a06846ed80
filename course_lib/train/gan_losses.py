"""Losses and stabilisers of adversarial training, for the step functions of lesson 10.

Part of :mod:`course_lib.train`, used with :func:`~course_lib.train.fit_adversarial` and
:class:`course_lib.networks.Discriminator`. Every function takes the discriminator's **logits**
(no sigmoid applied), of any shape (a patch map ``(N, 1, *grid)`` or one score per sample);
each term is a mean over its own tensor, so real and fake batches may differ in size.

Two GAN losses (``kind``), written with ``r = D(real)``, ``f = D(fake)`` and targets
``t_real = 1 − s`` (``s`` = one-sided label smoothing), ``t_fake = 0``:

* ``"bce"`` (Goodfellow et al. 2014, as in Fan et al. 2018):
  ``L_D = BCE(r, t_real) + BCE(f, 0)`` (a sum of two means: 2·ln 2 ≈ 1.386 when D outputs
  logit 0 everywhere, i.e. chance) and the non-saturating ``L_G = BCE(f, 1)``, with
  ``BCE(z, t) = −t·log σ(z) − (1 − t)·log(1 − σ(z))``.
* ``"lsgan"`` (least squares, Mao et al. 2017, the 0-1 coding ``a = 0, b = c = 1``):
  ``L_D = ½·mean((r − t_real)²) + ½·mean(f²)`` and ``L_G = ½·mean((f − 1)²)``; the outputs are
  read as raw scores (decision threshold ½). A fake far on the "real" side of the boundary still
  gets a gradient, where the sigmoid of BCE saturates.

Stabilisers (each optional; lesson 10 shows what each one does):

* :func:`discriminator_targets` — **one-sided label smoothing** (Salimans et al. 2016): real
  targets ``1 − s``, fake targets stay 0, so D is never rewarded for unbounded confidence on real
  samples while fakes keep their full gradient.
* :func:`r1_penalty` — **R1 gradient penalty** on real samples (Mescheder et al. 2018).
* :func:`discriminator_lr_factor` — a discriminator **learning rate gated by its loss** (Fan et
  al. 2018's training code keeps D from winning outright); ``fit_adversarial(d_threshold=...)``.
* Spectral normalisation (Miyato et al. 2018) is an option of the discriminator
  (``DiscriminatorConfig(spectral_norm=True)``); warm-up steps are options of
  :func:`~course_lib.train.fit_adversarial`.

References: I. Goodfellow et al., *Generative adversarial nets*, NeurIPS 2014; J. Fan, X. Cao,
Q. Wang, P.-T. Yap, D. Shen, *Adversarial similarity network for evaluating image alignment in
deep learning based registration*, MICCAI 2018; X. Mao et al., *Least squares generative
adversarial networks*, ICCV 2017; T. Salimans et al., *Improved techniques for training GANs*,
NeurIPS 2016; L. Mescheder, A. Geiger, S. Nowozin, *Which training methods for GANs do actually
converge?*, ICML 2018; T. Miyato et al., *Spectral normalization for generative adversarial
networks*, ICLR 2018.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_number, check_option, check_tensor

__all__ = ["discriminator_targets", "discriminator_loss", "generator_loss", "discriminator_stats",
           "r1_penalty", "discriminator_lr_factor"]

#: the GAN losses: binary cross-entropy on logits, least squares (LSGAN)
GAN_KINDS = ("bce", "lsgan")
#: largest one-sided label smoothing: at 0.5 the real target would say nothing
_MAX_SMOOTHING = 0.5


def _logits(fn: str, name: str, x) -> torch.Tensor:
    return check_tensor(fn, name, x, floating=True, finite=True, nonempty=True)


def _smoothing(fn: str, smoothing) -> float:
    s = check_number(fn, "smoothing", smoothing, minimum=0)
    if s >= _MAX_SMOOTHING:
        raise ValueError(f"{fn}: smoothing must be in [0, {_MAX_SMOOTHING}), got {s:g}")
    return s


def _targets(fn: str, real_logits, fake_logits, smoothing) -> tuple[torch.Tensor, torch.Tensor]:
    _logits(fn, "real_logits", real_logits)
    _logits(fn, "fake_logits", fake_logits)
    s = _smoothing(fn, smoothing)
    return torch.full_like(real_logits, 1.0 - s), torch.zeros_like(fake_logits)


def discriminator_targets(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                          smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of the discriminator with **one-sided label smoothing** (Salimans et al. 2016).

    Returns ``(t_real, t_fake)`` shaped like ``real_logits`` and ``fake_logits``: ``t_real = 1 − s``
    everywhere, ``t_fake = 0`` (only the real side is smoothed: smoothing the fakes too would move
    D's optimum towards the fakes wherever real samples are rare).

    Args:
        real_logits, fake_logits: D's outputs on real and on fake samples, any shape.
        smoothing: ``s`` in [0, 0.5).

    >>> t_real, t_fake = discriminator_targets(torch.zeros(2, 1, 3, 3), torch.zeros(4), smoothing=0.1)
    >>> round(t_real.unique().item(), 6), t_real.shape, t_fake.unique().item(), t_fake.shape
    (0.9, torch.Size([2, 1, 3, 3]), 0.0, torch.Size([4]))
    """
    return _targets("discriminator_targets", real_logits, fake_logits, smoothing)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "bce",
                       smoothing: float = 0.0) -> torch.Tensor:
    """The discriminator's loss (scalar): real samples towards ``1 − smoothing``, fakes towards 0.

    ``"bce"``: ``BCE(r, 1 − s) + BCE(f, 0)``; ``"lsgan"``: ``½·mean((r − (1 − s))²) + ½·mean(f²)``
    (formulas in the module docstring). Lower is better for D.

    Args:
        real_logits: ``D(real)``, any shape (a patch map ``(N, 1, *grid)``).
        fake_logits: ``D(fake)``, any shape; detach the generator's output (or let
            :func:`~course_lib.train.fit_adversarial` freeze the generator) when training D.
        kind: ``"bce"`` or ``"lsgan"``.
        smoothing: one-sided label smoothing ``s`` in [0, 0.5) (:func:`discriminator_targets`).

    >>> round(discriminator_loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)).item(), 4)  # chance: 2 ln 2
    1.3863
    """
    fn = "discriminator_loss"
    check_option(fn, "kind", kind, GAN_KINDS)
    t_real, t_fake = _targets(fn, real_logits, fake_logits, smoothing)
    if kind == "bce":
        return (F.binary_cross_entropy_with_logits(real_logits, t_real)
                + F.binary_cross_entropy_with_logits(fake_logits, t_fake))
    return 0.5 * ((real_logits - t_real) ** 2).mean() + 0.5 * (fake_logits ** 2).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """The generator's adversarial loss (scalar): make D call the fakes real.

    ``"bce"``: the non-saturating ``BCE(f, 1) = mean(−log σ(f))`` (Goodfellow et al. 2014; Fan et
    al.'s ``BCE(D(W, F), 1)``), not the saturating ``−BCE(f, 0)`` whose gradient vanishes while
    D rejects the fakes with confidence. ``"lsgan"``: ``½·mean((f − 1)²)`` (Mao et al. 2017).
    No label smoothing here: it is one-sided, for D's real targets only.

    Args:
        fake_logits: ``D(fake)``, any shape, with the graph back to the generator.
        kind: ``"bce"`` or ``"lsgan"`` (the same as the discriminator's loss).
    """
    fn = "generator_loss"
    _logits(fn, "fake_logits", fake_logits)
    check_option(fn, "kind", kind, GAN_KINDS)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    return 0.5 * ((fake_logits - 1.0) ** 2).mean()


@torch.no_grad()
def discriminator_stats(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "bce") -> dict:
    """How well D separates real from fake, as plain numbers to log in a step's history.

    Returns ``{"d_acc": a, "d_real": r, "d_fake": f}``: ``a`` the balanced accuracy over patches
    (the mean of the share of real patches called real and the share of fake patches called fake;
    0.5 is chance, 1 a discriminator that wins), ``r`` and ``f`` D's mean output on real and on fake
    samples read as a probability (``"bce"``: ``σ(logit)``, threshold 0.5 ↔ logit 0; ``"lsgan"``:
    the raw score, threshold 0.5).

    Args:
        real_logits, fake_logits: D's outputs on real and on fake samples, any shapes.
        kind: ``"bce"`` or ``"lsgan"``, the loss D is trained with.
    """
    fn = "discriminator_stats"
    _logits(fn, "real_logits", real_logits)
    _logits(fn, "fake_logits", fake_logits)
    check_option(fn, "kind", kind, GAN_KINDS)
    score = torch.sigmoid if kind == "bce" else (lambda z: z)
    r, f = score(real_logits.float()), score(fake_logits.float())
    acc = 0.5 * ((r > 0.5).float().mean() + (f < 0.5).float().mean())
    return {"d_acc": acc.item(), "d_real": r.mean().item(), "d_fake": f.mean().item()}


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor, gamma: float = 10.0) -> torch.Tensor:
    """R1 gradient penalty on real samples (Mescheder et al. 2018): ``(γ/2)·E_n ‖∇_x D(x_n)‖²``.

    It pushes D's output to be flat around the real data, so D cannot win by a steep step at the
    data and the generator gets gradients that point somewhere; Mescheder et al. show that
    training converges locally with it (and need not without). For a patch map, ``D(x_n)`` is the
    **sum** of sample ``n``'s logits: where the patches' receptive fields do not overlap, the
    penalty is the sum of the per-patch penalties. The gradient is taken with ``create_graph=True``,
    so the penalty can be added to D's loss and back-propagated into D's weights.

    Args:
        real_logits: ``D(real_inputs)``, ``(N, ...)``, computed **after**
            ``real_inputs.requires_grad_(True)``. D must not mix samples (no BatchNorm in train
            mode), or the gradient of one sample's logits would reach the others' inputs.
        real_inputs: the real samples ``(N, C, *S)`` (or the part of D's input to penalise, e.g.
            the image of an (image, fixed) pair), a tensor that requires grad.
        gamma: the weight ``γ`` (> 0; Mescheder et al. use 10 for many data sets).

    Returns:
        a scalar with the dtype of ``real_inputs``' gradient.
    """
    fn = "r1_penalty"
    _logits(fn, "real_logits", real_logits)
    check_tensor(fn, "real_inputs", real_inputs, ndims=(4, 5), floating=True, finite=True, nonempty=True)
    check_number(fn, "gamma", gamma, minimum=0, positive=True)
    if real_logits.dim() == 0 or real_logits.shape[0] != real_inputs.shape[0]:
        raise ValueError(f"{fn}: real_logits must have the batch size of real_inputs ({real_inputs.shape[0]}) "
                         f"as its first axis, got shapes {tuple(real_logits.shape)} and {tuple(real_inputs.shape)}")
    if not real_inputs.requires_grad:
        raise ValueError(f"{fn}: real_inputs must require grad: call real_inputs.requires_grad_(True) "
                         f"before real_logits = D(real_inputs)")
    grad = None
    if real_logits.requires_grad:
        grad, = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True, allow_unused=True)
    if grad is None:
        raise ValueError(f"{fn}: real_logits does not depend on real_inputs (shapes {tuple(real_logits.shape)} "
                         f"and {tuple(real_inputs.shape)}): compute real_logits = D(real_inputs) from this tensor")
    return 0.5 * gamma * grad.pow(2).flatten(1).sum(1).mean()


def discriminator_lr_factor(d_loss, threshold: float, floor: float = 0.0) -> float:
    """Gate the discriminator's learning rate by its own loss (after Fan et al. 2018's code).

    Returns ``1`` when ``d_loss > threshold`` (D is still losing or guessing: train it at full
    rate) and ``floor`` otherwise (D already separates real from fake: ``floor = 0`` skips its
    update, ``0 < floor < 1`` takes it with the learning rate scaled by ``floor``). A discriminator
    that wins outright gives the generator saturated, useless gradients; the gate stops D at a
    chosen strength and lets the generator catch up. With the ``"bce"`` loss, chance is
    ``2·ln 2 ≈ 1.39``, and a threshold of e.g. 0.5 stops D once it is right with about 78 %
    confidence on both sides (``−2·ln 0.78 ≈ 0.5``).

    :func:`~course_lib.train.fit_adversarial` applies it at every D step with
    ``d_threshold=threshold, d_floor=floor``, on the loss of the batch the step is about to use.

    Args:
        d_loss: the discriminator's loss on the current batch (a number or one-element tensor).
        threshold: the loss at or below which D's update is gated.
        floor: the learning-rate factor when gated, in [0, 1].

    >>> discriminator_lr_factor(1.2, threshold=0.5), discriminator_lr_factor(0.3, threshold=0.5, floor=0.1)
    (1.0, 0.1)
    """
    fn = "discriminator_lr_factor"
    loss = check_number(fn, "d_loss", d_loss)
    threshold = check_number(fn, "threshold", threshold)
    floor = check_number(fn, "floor", floor, minimum=0, maximum=1)
    return 1.0 if loss > threshold else floor
