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
========== ===================================================================== ==========

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
from .train import decay_schedule, fit

__all__ = ["LOSSES", "VoxelMorphRecipe", "voxelmorph_loss", "build_voxelmorph", "train_voxelmorph",
           "multiscale_dice_loss"]

LOSSES = ("mse", "lncc", "mi", "labels", "semi", "dual", "supervised")
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

    def __post_init__(self):
        fn = "VoxelMorphRecipe"
        check_option(fn, "loss", self.loss, LOSSES)
        for name in ("lam", "label_weight", "field_weight", "lr", "clip"):
            check_number(fn, name, getattr(self, name), minimum=0)
        check_number(fn, "decay", self.decay, minimum=0, maximum=1)
        check_number(fn, "flow_init_std", self.flow_init_std, minimum=0, maximum=1)
        check_int(fn, "steps", self.steps, minimum=1)
        check_int(fn, "seed", self.seed, minimum=0)
        if not isinstance(self.diffeomorphic, bool):
            raise TypeError(f"{fn}: diffeomorphic must be a bool, got {type(self.diffeomorphic).__name__}")

    @property
    def needs_labels(self) -> bool:
        """Whether training reads label maps (``labels``, ``semi``)."""
        return self.loss in _LABELS

    @property
    def needs_truth(self) -> bool:
        """Whether training reads the true displacement (``dual``, ``supervised``)."""
        return self.loss in _TRUTH

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


def voxelmorph_loss(recipe: VoxelMorphRecipe, model: VoxelMorph, batch: dict, label_maps=None):
    """The recipe's training loss on one batch: ``(scalar loss, {term: float})``.

    Args:
        recipe: a :class:`VoxelMorphRecipe`.
        model: the :class:`~course_lib.networks.VoxelMorph` being trained.
        batch: ``moving``, ``fixed`` ``(N, 1, *S)``; ``fixed_mask`` and ``displacement`` for
            ``dual``/``supervised``; ``moving_labels``/``fixed_labels`` (integer) for ``labels``/``semi``.
        label_maps: for ``labels``/``semi``: integer labels ``(N, 1, *S)`` -> float maps ``(N, C, *S)``
            of the structures in the loss (lesson 09's ``label_maps``).
    """
    fn = "voxelmorph_loss"
    if not isinstance(recipe, VoxelMorphRecipe):
        raise TypeError(f"{fn}: recipe must be a VoxelMorphRecipe, got {type(recipe).__name__}")
    need = ["moving", "fixed"]
    need += ["fixed_mask", "displacement"] if recipe.needs_truth else []
    need += ["moving_labels", "fixed_labels"] if recipe.needs_labels else []
    missing = [k for k in need if k not in batch]
    if missing:
        raise KeyError(f"{fn}: loss {recipe.loss!r} needs batch keys {need}; missing {missing}")
    if recipe.needs_labels:
        check_callable(fn, "label_maps", label_maps, "a callable integer labels -> float label maps")
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
    if recipe.needs_labels:
        lab = multiscale_dice_loss(out.warped_labels, label_maps(batch["fixed_labels"]))
        terms.append(("label", (recipe.label_weight if recipe.loss == "semi" else 1.0) * lab))
    if recipe.loss == "dual":
        terms.append(("field", recipe.field_weight * _field_mse(out.displacement, batch["displacement"],
                                                                batch["fixed_mask"])))
    terms.append(("smoothness", recipe.lam * regularizers.diffusion(out.flow)))
    loss = sum(t for _, t in terms)
    logs.update({k: t.item() for k, t in terms})
    return loss, logs


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
                     progress: bool = False) -> dict:
    """Train ``model`` in place with the recipe (Adam, clipping, decaying rate) on ``batches``.

    ``batches``: a list of batch dicts (cycled) or a callable returning a fresh batch (as
    :func:`course_lib.train.fit` takes them). Returns the history of :func:`course_lib.train.fit`.
    """
    if not isinstance(recipe, VoxelMorphRecipe):
        raise TypeError(f"train_voxelmorph: recipe must be a VoxelMorphRecipe, got {type(recipe).__name__}")

    def step(net, batch):
        return voxelmorph_loss(recipe, net, batch, label_maps)

    schedule = decay_schedule(recipe.steps, recipe.decay) if recipe.decay < 1 else None
    return fit(model, step, batches, steps=recipe.steps, lr=recipe.lr, seed=recipe.seed, grad_clip=recipe.clip,
               lr_schedule=schedule, progress=progress)
