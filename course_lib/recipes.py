"""Training recipes of the course's learned deformable methods, in one place (SYLLABUS S5, lesson 11).

Lessons 08-10 teach these models one at a time and write their training steps out, so that a
learner reads them. Lesson 11 compares them all on one benchmark; it needs the same losses as plain
data, so that a trained model can be saved with the recipe that made it and reused only when the
recipe matches (:func:`course_lib.train.cached_model`). A recipe is a :class:`VoxelMorphRecipe`:

========== ===================================================================== ==========
loss        training loss (``u`` the displacement, ``v`` the network's raw field)  lesson
========== ===================================================================== ==========
mse         mean (warped − fixed)² + λ·diffusion(v)                               08
lncc        1 − LNCC₉(warped, fixed) + λ·diffusion(v)                             08
mi          −MI(warped, fixed) (Parzen, 32 bins) + λ·diffusion(v)                 10
labels      multi-scale soft-Dice loss of the warped label maps + λ·diffusion(v)  09 (weak)
semi        lncc + label_weight · labels term + λ·diffusion(v)                    09 (semi)
dual        lncc + field_weight · mean |u − d|² in the brain + λ·diffusion(v)      09 (dual)
supervised  mean |u − d|² in the brain (no similarity, no penalty)                08
adversarial BCE of a discriminator D(warped, fixed) + λ·diffusion(v) (Fan et al.)  10
========== ===================================================================== ==========

**Adversarial recipes** train a second network beside the registration network, with
:func:`course_lib.train.fit_adversarial`:

* ``loss="adversarial"`` (Fan et al. 2018's adversarial similarity): a patch discriminator on
  ``(image, fixed)`` learns to tell the warped moving image (fake) from a blend
  ``α·moving + (1 − α)·fixed`` (real; α = 0.2 for the first half of the steps, then 0.1); the
  network is trained to fool it, plus λ·diffusion.
* ``adversarial_weight > 0`` (Hu et al. 2018's adversarial deformation regulariser), beside any other
  loss: a discriminator on displacement fields learns to tell simulated fields (real, the batch's
  ``displacement``) from the network's (fake); the network's loss gains
  ``adversarial_weight · BCE(D(u), real)``. Lesson 10 uses it with ``semi`` and ``lam=0``.

Only the registration network is returned and saved; the discriminator is a training device.

``diffeomorphic=True`` makes the network predict a stationary velocity that is integrated by scaling
and squaring (lesson 08, section 6). Every model is lesson 08's VM-1 U-Net.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from . import regularizers, similarity
from ._checks import check_callable, check_int, check_number, check_option
from .networks import VoxelMorph, VoxelMorphConfig
from .networks.unet import VM1_DECODER, VM_ENCODER
from .networks import Discriminator, DiscriminatorConfig
from .train import decay_schedule, discriminator_loss, discriminator_stats, fit, fit_adversarial, generator_loss

__all__ = ["LOSSES", "VoxelMorphRecipe", "voxelmorph_loss", "discriminator_step", "build_voxelmorph",
           "build_discriminator", "train_voxelmorph", "multiscale_dice_loss", "fan_reference"]

LOSSES = ("mse", "lncc", "mi", "labels", "semi", "dual", "supervised", "adversarial")
_LABELS = ("labels", "semi")                   # losses that read label maps
_TRUTH = ("dual", "supervised")                # losses that read the true displacement
_SCALES = (1, 2, 4, 8)                         # pooling factors of the multi-scale Dice (lesson 09)


@dataclass(frozen=True)
class VoxelMorphRecipe:
    """Everything that decides a trained VoxelMorph's weights, given its training batches.

    Attributes:
        loss: one of :data:`LOSSES` (see the module's table).
        lam: weight λ of the diffusion penalty (ignored by ``"supervised"``).
        diffeomorphic: predict a velocity and integrate it.
        label_weight: weight of the label term of ``"semi"``.
        field_weight: weight of the field term of ``"dual"``.
        steps, lr: Adam steps and learning rate.
        decay: the learning rate falls to 1/10 over the steps after this fraction (1.0: constant).
        clip: gradient-norm clipping.
        seed: the training seed (``config.train_seed(k)``): initial weights and batch order.
        flow_init_std: initial weight scale of the flow head (lesson 08, section 4).
        adversarial_weight: weight of Hu et al.'s adversarial regulariser on the field (0: none).
        lr_d: the discriminator's Adam learning rate (adversarial recipes only).
    """

    loss: str = "lncc"
    lam: float = 0.1
    diffeomorphic: bool = False
    label_weight: float = 1.0
    field_weight: float = 1.0
    steps: int = 200
    lr: float = 3e-3
    decay: float = 0.75
    clip: float = 1.0
    seed: int = 0
    flow_init_std: float = 1e-2
    adversarial_weight: float = 0.0
    lr_d: float = 1e-3

    def __post_init__(self):
        fn = "VoxelMorphRecipe"
        check_option(fn, "loss", self.loss, LOSSES)
        for name in ("lam", "label_weight", "field_weight", "lr", "clip", "adversarial_weight", "lr_d"):
            check_number(fn, name, getattr(self, name), minimum=0)
        check_number(fn, "decay", self.decay, minimum=0, maximum=1)
        check_number(fn, "flow_init_std", self.flow_init_std, minimum=0, maximum=1)
        check_int(fn, "steps", self.steps, minimum=1)
        check_int(fn, "seed", self.seed, minimum=0)
        if not isinstance(self.diffeomorphic, bool):
            raise TypeError(f"{fn}: diffeomorphic must be a bool, got {type(self.diffeomorphic).__name__}")
        if self.loss in ("adversarial", "supervised") and self.adversarial_weight > 0:
            raise ValueError(f"{fn}: adversarial_weight must be 0 with loss={self.loss!r} (one discriminator per "
                             f"recipe, and the supervised loss has no regulariser), got {self.adversarial_weight}")

    @property
    def needs_labels(self) -> bool:
        """Whether training reads label maps (``labels``, ``semi``)."""
        return self.loss in _LABELS

    @property
    def needs_truth(self) -> bool:
        """Whether training reads the true displacement (``dual``, ``supervised``, the field discriminator)."""
        return self.loss in _TRUTH or self.adversarial_weight > 0

    @property
    def discriminator(self) -> str | None:
        """What a discriminator judges: ``"image"`` (``loss="adversarial"``), ``"field"``
        (``adversarial_weight > 0``) or None (no adversarial training)."""
        if self.loss == "adversarial":
            return "image"
        return "field" if self.adversarial_weight > 0 else None

    def as_dict(self) -> dict:
        """Plain data, for :func:`course_lib.train.cached_model`."""
        return {k: (float(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _pool(x: torch.Tensor, factor: int) -> torch.Tensor:
    if factor == 1:
        return x
    return (F.avg_pool2d if x.dim() == 4 else F.avg_pool3d)(x, factor, ceil_mode=True)


def multiscale_dice_loss(warped: torch.Tensor, target: torch.Tensor, scales=_SCALES) -> torch.Tensor:
    """``1 − soft Dice`` of label maps ``(N, C, *S)``, averaged over average-pooled scales (lesson 09)."""
    if warped.shape != target.shape:
        raise ValueError(f"multiscale_dice_loss: warped and target must have the same shape, "
                         f"got {tuple(warped.shape)} and {tuple(target.shape)}")
    return sum(1 - similarity.soft_dice(_pool(warped, s), _pool(target, s)) for s in scales) / len(scales)


def _field_mse(u: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # mean squared end-point error |u - d|^2 (voxels^2) inside the fixed brain
    return (((u - truth) ** 2).sum(1, keepdim=True) * mask).sum() / mask.sum().clamp_min(1)


_MI = similarity.as_loss(similarity.mutual_information)


def fan_reference(moving: torch.Tensor, fixed: torch.Tensor, step: int, steps: int) -> torch.Tensor:
    """Fan et al.'s "real" sample at training step ``step`` of ``steps``: ``α·moving + (1 − α)·fixed``,
    α = 0.2 for the first half of the steps, then 0.1 (lesson 10)."""
    fn = "fan_reference"
    for name, x in (("moving", moving), ("fixed", fixed)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a tensor, got {type(x).__name__}")
    if moving.shape != fixed.shape:
        raise ValueError(f"{fn}: moving and fixed must have the same shape, got {tuple(moving.shape)} and "
                         f"{tuple(fixed.shape)}")
    check_int(fn, "steps", steps, minimum=1)
    check_int(fn, "step", step, minimum=0)
    alpha = 0.2 if step < steps // 2 else 0.1
    return alpha * moving + (1 - alpha) * fixed


def _check_common(fn: str, recipe, batch: dict, label_maps, discriminator, labels: bool = True) -> None:
    if not isinstance(recipe, VoxelMorphRecipe):
        raise TypeError(f"{fn}: recipe must be a VoxelMorphRecipe, got {type(recipe).__name__}")
    if not isinstance(batch, dict):
        raise TypeError(f"{fn}: batch must be a dict of tensors, got {type(batch).__name__}")
    need = ["moving", "fixed"]
    need += ["fixed_mask", "displacement"] if recipe.needs_truth else []
    need += ["moving_labels", "fixed_labels"] if recipe.needs_labels and labels else []
    missing = [k for k in need if k not in batch]
    if missing:
        what = f"loss {recipe.loss!r}" + (f" with adversarial_weight={recipe.adversarial_weight}"
                                         if recipe.adversarial_weight > 0 else "")
        raise KeyError(f"{fn}: {what} needs batch keys {need}; missing {missing}")
    if recipe.needs_labels and labels:
        check_callable(fn, "label_maps", label_maps, "a callable integer labels -> float label maps")
    if recipe.discriminator is not None and not isinstance(discriminator, torch.nn.Module):
        raise TypeError(f"{fn}: recipe {recipe.loss!r} trains against a {recipe.discriminator} discriminator: "
                        f"pass discriminator=build_discriminator(recipe, shape), got {type(discriminator).__name__}")


def voxelmorph_loss(recipe: VoxelMorphRecipe, model: VoxelMorph, batch: dict, label_maps=None,
                    discriminator=None):
    """The recipe's training loss on one batch: ``(scalar loss, {term: float})``.

    Args:
        recipe: a :class:`VoxelMorphRecipe`.
        model: the :class:`~course_lib.networks.VoxelMorph` being trained.
        batch: ``moving``, ``fixed`` ``(N, 1, *S)``; ``fixed_mask`` and ``displacement`` for
            ``dual``/``supervised``; ``moving_labels``/``fixed_labels`` (integer) for ``labels``/``semi``.
        label_maps: for ``labels``/``semi``: integer labels ``(N, 1, *S)`` -> float maps ``(N, C, *S)``
            of the structures in the loss (lesson 09's ``label_maps``).
        discriminator: for adversarial recipes (:attr:`VoxelMorphRecipe.discriminator`), the
            discriminator the network is trained to fool (see :func:`build_discriminator`).
    """
    _check_common("voxelmorph_loss", recipe, batch, label_maps, discriminator)
    moving, fixed = batch["moving"], batch["fixed"]
    logs = {}
    if recipe.needs_labels:
        out = model(moving, fixed, labels=label_maps(batch["moving_labels"]))
    else:
        out = model(moving, fixed)
    if recipe.loss == "supervised":
        loss = _field_mse(out.displacement, batch["displacement"], batch["fixed_mask"])
        return loss, {"field": loss.item()}
    terms = []
    if recipe.loss == "mse":
        terms.append(("similarity", similarity.ssd(out.warped, fixed)))
    elif recipe.loss == "mi":
        terms.append(("similarity", _MI(out.warped, fixed)))
    elif recipe.loss in ("lncc", "semi", "dual"):
        terms.append(("similarity", 1 - similarity.lncc(out.warped, fixed)))
    elif recipe.loss == "adversarial":
        terms.append(("adversarial", generator_loss(discriminator(out.warped, fixed))))
    if recipe.needs_labels:
        lab = multiscale_dice_loss(out.warped_labels, label_maps(batch["fixed_labels"]))
        terms.append(("label", (recipe.label_weight if recipe.loss == "semi" else 1.0) * lab))
    if recipe.loss == "dual":
        terms.append(("field", recipe.field_weight * _field_mse(out.displacement, batch["displacement"],
                                                                batch["fixed_mask"])))
    if recipe.adversarial_weight > 0:
        terms.append(("adversarial", recipe.adversarial_weight * generator_loss(discriminator(out.displacement))))
    terms.append(("smoothness", recipe.lam * regularizers.diffusion(out.flow)))
    loss = sum(t for _, t in terms)
    logs.update({k: t.item() for k, t in terms})
    return loss, logs


def discriminator_step(recipe: VoxelMorphRecipe, model: VoxelMorph, discriminator, batch: dict, step: int):
    """The discriminator's loss of an adversarial recipe on one batch: ``(loss, discriminator_stats)``.

    ``"image"`` (Fan et al.): real = :func:`fan_reference` at ``step`` of ``recipe.steps``, fake = the
    warped moving image, each beside the fixed image. ``"field"`` (Hu et al.): real = the batch's
    simulated ``displacement``, fake = the network's displacement.
    """
    fn = "discriminator_step"
    _check_common(fn, recipe, batch, None, discriminator, labels=False)
    if recipe.discriminator is None:
        raise ValueError(f"{fn}: recipe {recipe.loss!r} with adversarial_weight=0 trains no discriminator")
    out = model(batch["moving"], batch["fixed"])
    if recipe.discriminator == "image":
        real = discriminator(fan_reference(batch["moving"], batch["fixed"], step, recipe.steps), batch["fixed"])
        fake = discriminator(out.warped, batch["fixed"])
    else:
        real, fake = discriminator(batch["displacement"]), discriminator(out.displacement)
    return discriminator_loss(real, fake), discriminator_stats(real, fake)


def build_discriminator(recipe: VoxelMorphRecipe, shape, device=None) -> Discriminator:
    """Lesson 10's patch discriminator for the recipe, with spectral normalisation, built for images of
    spatial size ``shape`` and seeded by ``recipe.seed + 1000``: on (image, fixed) pairs for
    ``loss="adversarial"``, on displacement fields for ``adversarial_weight > 0``."""
    fn = "build_discriminator"
    if not isinstance(recipe, VoxelMorphRecipe):
        raise TypeError(f"{fn}: recipe must be a VoxelMorphRecipe, got {type(recipe).__name__}")
    if recipe.discriminator is None:
        raise ValueError(f"{fn}: recipe {recipe.loss!r} with adversarial_weight=0 trains no discriminator")
    shape = tuple(shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"{fn}: shape must be the 2 or 3 spatial sizes of the images, got {shape}")
    torch.manual_seed(recipe.seed + 1000)
    cfg = DiscriminatorConfig(ndim=len(shape), in_channels=2 if recipe.discriminator == "image" else len(shape),
                              input_size=shape, spectral_norm=True)
    return Discriminator(cfg).to(device)


def build_voxelmorph(recipe: VoxelMorphRecipe, ndim: int, device=None) -> VoxelMorph:
    """Lesson 08's VM-1 network with the recipe's initial weights (seeded by ``recipe.seed``)."""
    if not isinstance(recipe, VoxelMorphRecipe):
        raise TypeError(f"build_voxelmorph: recipe must be a VoxelMorphRecipe, got {type(recipe).__name__}")
    torch.manual_seed(recipe.seed)
    cfg = VoxelMorphConfig(ndim=ndim, diffeomorphic=recipe.diffeomorphic, flow_init_std=recipe.flow_init_std,
                           encoder=VM_ENCODER, decoder=VM1_DECODER)
    model = VoxelMorph(cfg).to(device)
    return model.to(memory_format=torch.channels_last) if ndim == 2 else model


def train_voxelmorph(model: VoxelMorph, recipe: VoxelMorphRecipe, batches, label_maps=None,
                     progress: bool = False, discriminator=None) -> dict:
    """Train ``model`` in place with the recipe (Adam, clipping, decaying rate) on ``batches``.

    ``batches``: a list of batch dicts (cycled) or a callable returning a fresh batch (as
    :func:`course_lib.train.fit` takes them). Returns the history of :func:`course_lib.train.fit`,
    or of :func:`course_lib.train.fit_adversarial` for an adversarial recipe. Its discriminator is
    ``discriminator`` if given, else :func:`build_discriminator` for the size of the first batch
    (a callable ``batches`` needs ``discriminator``: drawing a batch to size it would change the data).
    """
    fn = "train_voxelmorph"
    if not isinstance(recipe, VoxelMorphRecipe):
        raise TypeError(f"{fn}: recipe must be a VoxelMorphRecipe, got {type(recipe).__name__}")
    schedule = decay_schedule(recipe.steps, recipe.decay) if recipe.decay < 1 else None
    if recipe.discriminator is None:
        def step(net, batch):
            return voxelmorph_loss(recipe, net, batch, label_maps)

        return fit(model, step, batches, steps=recipe.steps, lr=recipe.lr, seed=recipe.seed,
                   grad_clip=recipe.clip, lr_schedule=schedule, progress=progress)
    if discriminator is None:
        if callable(batches) or not isinstance(batches, (list, tuple)) or not batches:
            raise ValueError(f"{fn}: an adversarial recipe on a callable or empty batches needs "
                             f"discriminator=build_discriminator(recipe, shape, device)")
        first = batches[0]["fixed"]
        discriminator = build_discriminator(recipe, first.shape[2:], first.device)

    def g_step(net, disc, batch, i):
        return voxelmorph_loss(recipe, net, batch, label_maps, disc)

    def d_step(net, disc, batch, i):
        return discriminator_step(recipe, net, disc, batch, i)

    return fit_adversarial(model, discriminator, g_step, d_step, batches, recipe.steps, lr_g=recipe.lr,
                           lr_d=recipe.lr_d, seed=recipe.seed, grad_clip=recipe.clip, lr_schedule=schedule,
                           progress=progress)
