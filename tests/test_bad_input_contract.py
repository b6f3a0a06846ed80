"""The bad-input contract, for every public name of every module (issue 16).

``tests/test_bad_input.py`` checks hand-picked cases and their exact messages. This file walks
every name in the ``__all__`` of every ``course_lib`` module (and of every ``course_lib.networks``
submodule) and puts each public function, class and method through the same families of bad
arguments, **one bad argument at a time on an otherwise valid call**:

wrong ndim (one axis fewer / more), wrong channel count, mismatched shapes, mismatched batch,
wrong dtype (integer for real, real for labels; float64 against float32), NaN, Inf, an empty
tensor, a list or ``None`` where a tensor is needed, zero / negative / non-integer / string sizes
and counts, NaN / Inf / negative / string numbers, unknown option strings, wrong object types.

Each bad call must raise the exception its family names (``TypeError`` for a wrong type,
``ValueError`` for a wrong value, see :mod:`course_lib._checks`) with a message that names the
public function (or ``Class.method``) and the argument. The only bad calls that may return are
declared below, each with its reason: documented broadcasting, documented dtype promotion (the
result must then have the promoted dtype), and documented permissive inputs (the plotting
functions draw array-likes of any real dtype, NaN blank). Every public name is either walked or
listed in :data:`NOT_WALKED` with the reason, and a test checks that nothing is forgotten.

Run ``python tests/test_bad_input_contract.py`` to print the counts per module.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from course_lib import classical, config, data, features, metrics  # noqa: E402
from course_lib import regularizers as reg  # noqa: E402
from course_lib import rotations as rot  # noqa: E402
from course_lib import similarity as sim  # noqa: E402
from course_lib import spatial, train, viz  # noqa: E402
from course_lib.networks import (AffineRegressor, Discriminator, DiscriminatorConfig,  # noqa: E402
                                 PatchSimilarityConfig, PatchSimilarityNet, RegressorConfig, SAEConfig,
                                 StackedAutoencoder, UNet, VoxelMorph, VoxelMorphConfig)
from course_lib.networks import similarity_net  # noqa: E402

MODULES = ["config", "data", "spatial", "similarity", "regularizers", "metrics", "classical", "features",
           "rotations", "train", "viz", "evaluation", "recipes", "networks.autoencoder", "networks.discriminator", "networks.regressor",
           "networks.similarity_net", "networks.unet", "networks.voxelmorph"]

# ------------------------------------------------------------------------------------------ fixtures
# tiny inputs: the whole walk must stay well under 30 s on one CPU thread
torch.manual_seed(0)
H, W = 12, 14
N = 2                                                       # batch of the batched specs


def _img(n=N, c=1, *s):
    return torch.rand(n, c, *(s or (H, W)))


IMG, IMG_B = _img(), _img()                                 # (2, 1, 12, 14)
IMG1 = _img(1)                                              # one image (1, 1, 12, 14)
IMG3D = _img(1, 1, 6, 7, 8)
U = 0.3 * torch.randn(N, 2, H, W)                           # displacement (2, 2, 12, 14)
U1 = U[:1]
LAB = torch.randint(0, 3, (N, 1, H, W))
LAB[:, :, 2:5, 2:5] = 1
LAB[:, :, 6:9, 6:10] = 2
MASK = torch.ones(N, 1, H, W)
EYE = torch.eye(3).repeat(N, 1, 1)                          # (2, 3, 3) identity affine
PARAMS6 = 0.01 * torch.randn(N, 6)
ANG = 0.1 * torch.randn(N, 1)
TRANS = torch.randn(N, 2)
PTS = torch.tensor([[3.0, 4.0], [5.5, 6.0], [8.0, 3.0], [4.0, 9.0], [7.0, 7.5], [9.0, 10.0]])
PTS_B = PTS + torch.tensor([0.5, -0.25])
DESC_A, DESC_B = torch.randn(6, 5), torch.randn(7, 5)
R3 = rot.axis_angle_to_matrix(0.3 * torch.randn(N, 3, dtype=torch.float32))
RV = 0.3 * torch.randn(N, 3)
Q = torch.nn.functional.normalize(torch.randn(N, 4), dim=1)
ANATOMY = data.Anatomy(image=IMG1, tissues=_img(1, 3), mask=torch.ones(1, 1, H, W), labels=LAB[:1])
TMP = Path(__import__("tempfile").mkdtemp(prefix="contract_"))

# tiny networks
SAE = StackedAutoencoder(SAEConfig(input_size=9, hidden=(4,), code_size=2))
PATCHES = torch.rand(5, 9)
REG = AffineRegressor(RegressorConfig(ndim=2, widths=(2,), growth=2, head=(4,))).eval()
PSN = PatchSimilarityNet(PatchSimilarityConfig(ndim=2, patch_size=9, channels=(2,), hidden=2))
LSIM = PSN.as_similarity()
PATCH_A, PATCH_B = torch.rand(3, 1, 9, 9), torch.rand(3, 1, 9, 9)
UNET = UNet(2, in_channels=2, encoder=(2,), decoder=(2,))
VM = VoxelMorph(VoxelMorphConfig(ndim=2, encoder=(2,), decoder=(2,), diffeomorphic=True, int_steps=1))
LIN = torch.nn.Linear(2, 1)


DISC = Discriminator(DiscriminatorConfig(ndim=2, in_channels=2, widths=(2, 2), head_width=2, input_size=(H, W)))
LIN_D = torch.nn.Linear(1, 1)                               # the discriminator of the adversarial walk
R1_CONV = torch.nn.Conv2d(1, 1, 3, padding=1)
R1_X = torch.rand(N, 1, H, W, requires_grad=True)
R1_LOGITS = R1_CONV(R1_X)                                   # (2, 1, 12, 14), differentiable in R1_X
LOGITS, LOGITS_B = torch.randn(N, 1, 3, 4), torch.randn(N, 1, 3, 4)
ANY_SHAPE = "documented: logits of any shape (a patch map or one score per sample)"


def _fit_step(model, batch):
    return (model(batch) ** 2).mean()


def _adv_step(generator, discriminator, batch, i):
    return (discriminator(generator(batch)) ** 2).mean()


BATCHES = [torch.rand(3, 2)]


# ------------------------------------------------------------------------------------------ argument kinds
class A:
    """One argument of a valid call: its value, its kind (which picks the bad-value families) and
    flags: ``optional`` (None is valid), ``paired`` (its spatial shape must match the other paired
    arguments), ``batched`` (its batch must match theirs), ``channels`` (its channel count is fixed)."""

    def __init__(self, value, kind, optional=False, paired=False, batched=False, channels=False, caxis=None):
        self.value, self.kind, self.optional, self.caxis = value, kind, optional, caxis
        self.paired, self.batched, self.channels = paired, batched, channels


def img(v=None, **kw):
    return A(IMG if v is None else v, "tensor", **kw)


def P(v, **kw):             # paired + batched tensor
    return A(v, "tensor", paired=True, batched=True, **kw)


TE, VE = TypeError, ValueError


def _poke(v, value):
    """``v`` with its first element set to ``value``."""
    v = v.clone()
    v.view(-1)[0] = value
    return v


def _channels(v, axis=None):
    """One more channel (images, labels, fields: axis 1; point sets, parameters: last axis)."""
    axis = axis if axis is not None else (1 if v.dim() >= 3 else -1)
    return torch.cat([v, v.narrow(axis, 0, 1)], dim=axis)


def tensor_families(a: A):
    v = a.value
    more = v[None, None] if v.dim() == 4 else v[None]      # a 4D image + 1 axis would be a valid 3D image
    out = [("ndim-", v[0] if v.dim() > 1 else v[None], VE), ("ndim+", more, VE),
           ("empty", v.narrow(-1, 0, 0), VE), ("list", v.tolist(), TE), ("string", "tensor", TE)]
    if not a.optional:
        out.append(("none", None, TE))
    if a.channels:
        out.append(("channels", _channels(v, a.caxis), VE))
    if a.paired:
        out.append(("mismatch", torch.cat([v, v.narrow(-1, 0, 1)], dim=-1), VE))
    if a.batched and v.shape[0] == N:
        out.append(("batch", torch.cat([v, v[:1]]), VE))
        out.append(("batch1", v[:1], VE))
    if v.is_floating_point():
        out += [("int-dtype", v.round().long(), TE), ("nan", _poke(v, float("nan")), VE),
                ("inf", _poke(v, float("inf")), VE)]
        if v.dtype == torch.float32:
            out.append(("float64", v.double(), None))       # expectation set by the spec's dtype rule
    elif v.dtype != torch.bool:
        out.append(("float-dtype", v.float(), TE))
    return out


NUMBER_FAMILIES = {
    "count": [("zero", 0, VE), ("negative", -1, VE), ("float", 2.5, TE), ("string", "3", TE), ("none", None, TE)],
    "index": [("negative", -1, VE), ("float", 2.5, TE), ("string", "3", TE), ("none", None, TE)],
    "int": [("float", 2.5, TE), ("string", "3", TE), ("none", None, TE)],
    "pos": [("zero", 0.0, VE), ("negative", -1.0, VE), ("nan", math.nan, VE), ("inf", math.inf, VE),
            ("string", "a", TE), ("none", None, TE)],
    "nonneg": [("negative", -1.0, VE), ("nan", math.nan, VE), ("inf", math.inf, VE), ("string", "a", TE),
               ("none", None, TE)],
    "real": [("nan", math.nan, VE), ("inf", math.inf, VE), ("string", "a", TE), ("none", None, TE)],
    "option": [("unknown", "bogus", VE), ("none", None, VE), ("int", 7, VE)],
    "seed": [("float", 1.5, TE), ("string", "7", TE), ("none", None, TE)],
    "callable": [("int", 3, TE), ("none", None, TE)],
    "object": [("int", 3, TE), ("none", None, TE)],
    "bool": [("string", "yes", TE), ("none", None, TE)],
    "str": [("int", 3, TE), ("none", None, TE)],
    "path": [("int", 3, TE), ("none", None, TE)],
    "dtype": [("string", "float32", TE), ("none", None, TE)],
    "device": [("int-type", 3.5, TE), ("unknown", "nope", VE)],
    "resolution": [("unknown", 3, VE), ("float", 2.5, TE), ("string", "2", TE), ("none", None, TE)],
    "seq": [("string", "ab", TE), ("int", 3, TE), ("none", None, TE)],
    "dict": [("int", 3, TE), ("none", None, TE), ("list", [1, 2], TE)],
    "array": [("ndim-", np.zeros(4), VE), ("empty", np.zeros((0, 3)), VE), ("string", "image", TE),
              ("none", None, TE)],
    "template": [("int", 3, TE), ("channels", data.Anatomy(IMG1, IMG1, ANATOMY.mask, LAB[:1]), VE),
                 ("int-dtype", data.Anatomy(LAB[:1], ANATOMY.tissues, ANATOMY.mask, LAB[:1]), TE),
                 ("mismatch", data.Anatomy(IMG1, ANATOMY.tissues, ANATOMY.mask, LAB[:1, :, :-1]), VE)],
}


def size_families(v):
    v = tuple(v)
    return [("zero", (0,) + v[1:], VE), ("negative", (-1,) + v[1:], VE), ("length", v[1:], VE),
            ("float", (2.5,) + v[1:], TE), ("string", "ab", TE), ("none", None, TE)]


def families(a: A):
    if a.kind == "tensor":
        fam = tensor_families(a)
    elif a.kind == "size":
        fam = size_families(a.value)
    else:
        fam = list(NUMBER_FAMILIES[a.kind])
    if a.optional:
        fam = [f for f in fam if f[0] != "none"]
    return fam


# ------------------------------------------------------------------------------------------ the table
@dataclasses.dataclass
class Spec:
    """A public function, class or method and a valid call of it.

    ``dtype``: what float64 against float32 must do: ``"promote"`` (return the promoted dtype),
    ``"first"`` (documented: keep the dtype of the resampled image), ``"weights"`` (networks:
    ``TypeError``), ``"any"`` (the dtype of this argument is free: it is not combined with another).
    ``allow``: ``{(argument, family): reason}`` bad-looking calls that are valid and documented.
    ``errors``: ``{(argument, family): exception}`` where a family's usual exception differs.
    ``skip``: families that do not apply to an argument, with the reason.
    """

    name: str
    fn: object
    args: dict
    dtype: str = "promote"
    allow: dict = dataclasses.field(default_factory=dict)
    errors: dict = dataclasses.field(default_factory=dict)
    skip: dict = dataclasses.field(default_factory=dict)
    names: tuple = ()           # other names the message may use for the function (module twins)


BROADCAST = "documented broadcasting: a batch of 1 is repeated for every sample"
PERMISSIVE_VIZ = {"list": "documented: viz draws nested lists (array-likes)",
                  "int-dtype": "documented: viz draws any real dtype",
                  "float-dtype": "documented: viz draws any real dtype",
                  "float64": "documented: viz draws any real dtype",
                  "nan": "documented: viz draws NaN voxels blank",
                  "inf": "documented: viz draws Inf like matplotlib (clipped to the colour range)",
                  "batch1": "viz shows the first image of a batch", "batch": "viz shows the first image of a batch"}
INIT_DTYPE = "documented: init is cast to the images' dtype (the dtype of the optimisation)"
SAMPLED = "documented: patches sampled from an image keep the image's dtype (points set where)"
VOLUME = "documented: one axis fewer than a 4D batch is a valid 3D volume (D, H, W)"
CONFIG_VE = "config dataclasses raise ValueError for every bad field, whatever its type"


def viz_allow(*names):
    return {(n, f): r for n in names for f, r in PERMISSIVE_VIZ.items()}


def config_errors(*fields):
    return {(f, fam): VE for f in fields for fam in ("float", "string", "none", "int", "str", "unknown")}


def _spec(_name, _fn, **kwargs):
    """``_spec(name, fn, arg=A(...), ..., dtype="promote", allow={...}, errors={...}, skip={...})``:
    keyword values that are :class:`A` are the arguments of the call, the others set the rules."""
    args = {k: v for k, v in kwargs.items() if isinstance(v, A)}
    rules = {k: v for k, v in kwargs.items() if not isinstance(v, A)}
    return Spec(_name, _fn, args, rules.get("dtype", "promote"), rules.get("allow", {}), rules.get("errors", {}),
                rules.get("skip", {}), rules.get("names", ()))


SPECS = [
    # ---------------------------------------------------------------- config
    _spec("profile", config.profile, name=A("quick", "option", optional=True)),
    _spec("seed_everything", config.seed_everything, seed=A(0, "index")),
    _spec("train_seed", config.train_seed, seed=A(0, "index")),
    _spec("record_checkpoint", config.record_checkpoint, check=A("99.9", "str")),
    # ---------------------------------------------------------------- data
    _spec("load_mni152", data.load_mni152, resolution=A(2, "resolution")),
    _spec("load_atlas", data.load_atlas, name=A("AAL", "option"), resolution=A(2, "resolution")),
    _spec("template_volume", data.template_volume, resolution=A(2, "resolution"), size=A((20, 24, 20), "size", optional=True),
          atlas=A("AAL", "option")),
    _spec("template_slices", data.template_slices, axis=A("axial", "option"), index=A(44, "index", optional=True),
          size=A((32, 40), "size"), atlas=A("AAL", "option")),
    _spec("coarsen", data.coarsen, anatomy=A(ANATOMY, "object"), factor=A(2, "count")),
    _spec("random_velocity", data.random_velocity, shape=A((H, W), "size"), generator=A(0, "seed"),
          magnitude=A(2.0, "nonneg"), spacing=A(4, "count"), n=A(1, "count"), device=A(None, "device", optional=True)),
    _spec("random_affine", data.random_affine, shape=A((H, W), "size"), generator=A(0, "seed"),
          rotation=A(10.0, "nonneg"), translation=A(2.0, "nonneg"), scale=A(0.05, "nonneg"),
          shear=A(0.03, "nonneg"), n=A(2, "count")),
    _spec("augment_intensity", data.augment_intensity, dtype="any", image=P(IMG), generator=A(0, "seed"),
          gamma=A(0.3, "nonneg"), bias=A(0.2, "nonneg"), noise=A(0.02, "nonneg"), mask=P(MASK, optional=True),
          allow={("mask", "batch1"): BROADCAST, ("mask", "int-dtype"): "mask: any dtype, > 0 is inside",
                 ("mask", "float64"): "mask: any dtype, > 0 is inside"}),
    _spec("synthesize_contrast", data.synthesize_contrast, tissues=A(_img(N, 3), "tensor", channels=True),
          kind=A("t2", "option"), generator=A(0, "seed"), noise=A(0.02, "nonneg"), blur=A(0.5, "nonneg"),
          dtype="any"),
    _spec("synthesize_subject", data.synthesize_subject, seed=A(3, "seed"), template=A(ANATOMY, "template", optional=True),
          magnitude=A(2.0, "nonneg"), spacing=A(6, "count"), affine=A(False, "bool"), augment=A(True, "bool"),
          skip={("seed", "none"): "None is not valid, tested as the generic none family of seeds"}),
    _spec("pair_batch", data.pair_batch, n=A(1, "count"), generator=A(0, "seed"),
          template=A(ANATOMY, "template", optional=True), device=A(None, "device", optional=True),
          magnitude=A(2.0, "nonneg"), spacing=A(6, "count"), subject_magnitude=A(1.0, "nonneg"),
          affine=A(False, "bool"), affine_kwargs=A(None, "dict", optional=True), augment=A(True, "bool"),
          contrast=A(None, "option", optional=True), labels=A(True, "bool")),
    _spec("PairDataset", data.PairDataset, n=A(1, "count"), split=A("test", "option"),
          template=A(ANATOMY, "template", optional=True), magnitude=A(2.0, "nonneg"), spacing=A(6, "count"),
          subject_magnitude=A(1.0, "nonneg"), affine=A(False, "bool"), affine_kwargs=A(None, "dict", optional=True),
          augment=A(False, "bool"), contrast=A(None, "option", optional=True), cache=A(False, "bool"),
          template_name=A("tiny", "str")),
    _spec("label_groups", data.label_groups, names=A({1: "Frontal_Sup_L", 2: "Caudate_R"}, "dict"),
          present=A([1], "seq", optional=True)),
    _spec("prepare", data.prepare, resolutions=A((2,), "seq"), atlases=A(("AAL",), "seq"), quiet=A(True, "bool")),
    _spec("verify_cache", data.verify_cache, reference=A(None, "path", optional=True), rtol=A(1e-4, "pos")),
    # ---------------------------------------------------------------- spatial
    _spec("identity_grid", spatial.identity_grid, shape=A((H, W), "size"), dtype=A(torch.float32, "dtype")),
    _spec("to_normalized_grid", spatial.to_normalized_grid, coords=A(U, "tensor", channels=True),
          sizes=A((H, W), "size", optional=True), dtype="any"),
    _spec("warp", spatial.warp, dtype="first", image=P(IMG), displacement=P(U, channels=True),
          mode=A("linear", "option"), padding=A("border", "option"),
          allow={("image", "batch1"): BROADCAST, ("displacement", "batch1"): BROADCAST},
          errors={("image", "int-dtype"): TE}),
    _spec("warp_labels", spatial.warp_labels, labels=P(LAB, channels=True), displacement=P(U, channels=True),
          mode=A("linear", "option"),
          allow={("labels", "batch1"): BROADCAST, ("displacement", "batch1"): BROADCAST},
          ),
    _spec("Warp", spatial.Warp, mode=A("linear", "option"), padding=A("border", "option")),
    _spec("Warp.forward", spatial.Warp(), dtype="first", image=P(IMG), displacement=P(U, channels=True),
          allow={("image", "batch1"): BROADCAST, ("displacement", "batch1"): BROADCAST}),
    _spec("affine_matrix", spatial.affine_matrix, params=A(PARAMS6, "tensor", channels=True), dtype="any"),
    _spec("rotation_matrix", spatial.rotation_matrix, angles=A(ANG, "tensor", channels=True), dtype="any"),
    _spec("rigid_matrix", spatial.rigid_matrix, angles=A(ANG, "tensor", channels=True),
          translation=A(TRANS, "tensor", channels=True, batched=True), center=A([5.5, 6.5], "seq")),
    _spec("warp_affine", spatial.warp_affine, dtype="first", image=A(IMG, "tensor", batched=True), matrix=A(EYE, "tensor", batched=True, channels=True),
          mode=A("linear", "option"), padding=A("border", "option"),
          allow={("image", "batch1"): BROADCAST, ("matrix", "batch1"): BROADCAST}),
    _spec("affine_to_displacement", spatial.affine_to_displacement, matrix=A(EYE, "tensor", channels=True),
          shape=A((H, W), "size"), dtype="any"),
    _spec("compose", spatial.compose, first=P(U, channels=True), second=P(0.5 * U, channels=True),
          allow={("first", "batch1"): BROADCAST, ("second", "batch1"): BROADCAST}),
    _spec("integrate_velocity", spatial.integrate_velocity, velocity=A(U, "tensor", channels=True),
          steps=A(3, "index"), dtype="any"),
    _spec("jacobian_determinant", spatial.jacobian_determinant, displacement=A(U, "tensor", channels=True), dtype="any"),
    _spec("resize_displacement", spatial.resize_displacement, displacement=A(U, "tensor", channels=True),
          size=A((6, 7), "size"), dtype="any"),
    _spec("gaussian_blur", spatial.gaussian_blur, image=img(), sigma=A(1.0, "nonneg"), truncate=A(3.0, "pos"),
          dtype="any"),
    _spec("resize_image", spatial.resize_image, image=img(), size=A((6, 7), "size"), mode=A("linear", "option"),
          dtype="any"),
    _spec("transform_points", spatial.transform_points, points=A(PTS[None].repeat(N, 1, 1), "tensor", batched=True,
                                                                  channels=True, caxis=-1),
          displacement=A(U, "tensor", channels=True, batched=True),
          allow={("points", "batch1"): "documented: (N, P, ndim) with N = 1 or the field's batch"}),
    # ---------------------------------------------------------------- similarity
    *[_spec(n, f, a=P(IMG), b=P(IMG_B), **extra) for n, f, extra in [
        ("ssd", sim.ssd, {}), ("ncc", sim.ncc, dict(eps=A(1e-8, "pos"))),
        ("lncc", sim.lncc, dict(window=A(5, "count"), eps=A(1e-5, "pos"))),
        ("mutual_information", sim.mutual_information, dict(bins=A(8, "count"), sigma=A(None, "pos", optional=True),
                                                            vmin=A(None, "real", optional=True),
                                                            vmax=A(None, "real", optional=True))),
        ("nmi", sim.nmi, dict(bins=A(8, "count"), sigma=A(None, "pos", optional=True))),
        ("soft_dice", sim.soft_dice, dict(eps=A(1e-6, "pos")))]],
    _spec("as_loss", sim.as_loss, similarity=A(sim.ncc, "callable")),
    _spec("NCC", sim.NCC, eps=A(1e-8, "pos")),
    _spec("LNCC", sim.LNCC, window=A(5, "count"), eps=A(1e-5, "pos")),
    _spec("MutualInformation", sim.MutualInformation, bins=A(8, "count"), sigma=A(0.1, "pos", optional=True)),
    _spec("NMI", sim.NMI, bins=A(8, "count")),
    _spec("SoftDice", sim.SoftDice, eps=A(1e-6, "pos")),
    *[_spec(f"{c.__name__}.forward", c(), a=P(IMG), b=P(IMG_B))
      for c in (sim.SSD, sim.NCC, sim.LNCC, sim.MutualInformation, sim.NMI, sim.SoftDice)],
    # ---------------------------------------------------------------- regularizers
    _spec("diffusion", reg.diffusion, displacement=A(U, "tensor", channels=True), dtype="any"),
    _spec("bending_energy", reg.bending_energy, displacement=A(U, "tensor", channels=True), dtype="any"),
    _spec("Diffusion.forward", reg.Diffusion(), displacement=A(U, "tensor", channels=True), dtype="any"),
    _spec("BendingEnergy.forward", reg.BendingEnergy(), displacement=A(U, "tensor", channels=True), dtype="any"),
    # ---------------------------------------------------------------- metrics
    _spec("dice", metrics.dice, pred=P(LAB, channels=True), target=P(LAB.flip(-1), channels=True),
          labels=A([1, 2], "seq", optional=True)),
    _spec("hd95", metrics.hd95, pred=P(LAB, channels=True), target=P(LAB.flip(-1), channels=True),
          labels=A([1, 2], "seq", optional=True), spacing=A(1.0, "pos")),
    _spec("tre", metrics.tre, points_a=A(PTS, "tensor", paired=True, channels=True),
          points_b=A(PTS_B, "tensor", paired=True, channels=True), spacing=A(1.0, "pos"),
          skip={("points_a", "ndim-"): "documented: points are (..., P, ndim), any leading axes",
                ("points_b", "ndim-"): "documented: points are (..., P, ndim), any leading axes",
                ("points_a", "ndim+"): "documented: points are (..., P, ndim), any leading axes",
                ("points_b", "ndim+"): "documented: points are (..., P, ndim), any leading axes"}),
    _spec("epe", metrics.epe, displacement=P(U, channels=True), truth=P(U.flip(-1), channels=True),
          mask=P(MASK, optional=True, channels=True), spacing=A(1.0, "pos"),
          allow={("displacement", "batch1"): BROADCAST, ("truth", "batch1"): BROADCAST, ("mask", "batch1"): BROADCAST,
                 ("mask", "int-dtype"): "documented: mask is bool or 0/1 of any dtype",
                 ("mask", "float64"): "documented: mask is bool or 0/1 of any dtype"}),
    _spec("dsc30", metrics.dsc30, scores=A(torch.tensor([[0.8, 0.7], [0.6, 0.9]]), "tensor"), dtype="any",
          skip={("scores", "ndim-"): "documented: (N,) per-case scores are valid too"},
          allow={("scores", "nan"): "documented: NaN marks a label a case lacks (as dice returns); the case "
                                    "mean ignores it, a case of NaN only is a ValueError (tested in test_metrics)"}),
    _spec("folding_fraction", metrics.folding_fraction, displacement=P(U, channels=True),
          mask=P(MASK, optional=True, channels=True), dtype="any",
          allow={("mask", "batch1"): BROADCAST, ("mask", "int-dtype"): "documented: mask is bool or 0/1 of any dtype",
                 ("mask", "float64"): "documented: mask is bool or 0/1 of any dtype"}),
    _spec("sdlogj", metrics.sdlogj, displacement=P(U, channels=True), mask=P(MASK, optional=True, channels=True),
          eps=A(1e-9, "pos"), dtype="any",
          allow={("mask", "batch1"): BROADCAST, ("mask", "int-dtype"): "documented: mask is bool or 0/1 of any dtype",
                 ("mask", "float64"): "documented: mask is bool or 0/1 of any dtype"}),
    _spec("present_labels", metrics.present_labels, target=A(LAB, "tensor"),
          skip={("target", f): "documented: a label map of any shape" for f in ("ndim-", "ndim+")},
          allow={("target", "empty"): "an empty map has no labels: returns []"}),
    _spec("one_hot", metrics.one_hot, labels=A(LAB, "tensor", channels=True), values=A([1, 2], "seq"),
          dtype=A(torch.float32, "dtype")),
    _spec("robust_difference", metrics.robust_difference, a=A([1.0, 2.0, 3.0], "seq"), b=A([1.5, 2.0, 2.5], "seq"),
          k=A(2.0, "pos")),
    _spec("paired_difference", metrics.paired_difference, a=A([1.0, 2.0, 3.0], "seq"), b=A([1.5, 2.0, 2.5], "seq"),
          confidence=A(0.95, "pos")),
    # ---------------------------------------------------------------- classical
    _spec("register_affine", classical.register_affine, moving=P(IMG), fixed=P(IMG_B),
          similarity=A(sim.ssd, "callable"), model=A("affine", "option"), levels=A(1, "count"), steps=A(1, "count"),
          lr=A(0.01, "nonneg"), init=A(EYE, "tensor", optional=True, channels=True, batched=True),
          allow={("init", "float64"): INIT_DTYPE}),
    _spec("pyramid", classical.pyramid, image=img(), levels=A(2, "count"), min_size=A(4, "count"), dtype="any"),
    _spec("params_to_matrix", classical.params_to_matrix, theta=A(PARAMS6, "tensor", channels=True),
          model=A("affine", "option"), shape=A((H, W), "size"), dtype="any"),
    _spec("n_params", spatial.n_params, model=A("affine", "option"), ndim=A(2, "int")),
    _spec("rescale_matrix", classical.rescale_matrix, matrix=A(EYE, "tensor", channels=True),
          from_shape=A((H, W), "size"), to_shape=A((6, 7), "size"), dtype="any"),
    _spec("register_dense", classical.register_dense, moving=P(IMG), fixed=P(IMG_B),
          similarity=A(sim.ssd, "callable"), model=A("displacement", "option"), regularizer=A(reg.diffusion, "callable"),
          weight=A(0.1, "nonneg"), levels=A(1, "count"), steps=A(1, "count"), lr=A(0.1, "nonneg"),
          spacing=A(4, "count"), diffeomorphic=A(False, "bool"),
          init=A(0.1 * U, "tensor", optional=True, channels=True, batched=True, paired=True),
          allow={("init", "float64"): INIT_DTYPE}),
    _spec("bspline_field", classical.bspline_field, coeffs=A(torch.zeros(N, 2, *classical.bspline_grid_size((H, W), 4)),
                                                              "tensor", channels=True),
          shape=A((H, W), "size"), spacing=A(4, "count"), full_shape=A((H, W), "size", optional=True), dtype="any"),
    _spec("bspline_grid_size", classical.bspline_grid_size, shape=A((H, W), "size"), spacing=A(4, "count")),
    # ---------------------------------------------------------------- features
    _spec("detect_keypoints", features.detect_keypoints, image=img(IMG1), n=A(10, "count"), sigma=A(1.0, "nonneg"),
          min_distance=A(2, "index"), mask=A(torch.ones(1, 1, H, W), "tensor", optional=True, paired=True),
          border=A(2, "index"), dtype="any",
          allow={("mask", "int-dtype"): "mask: any dtype, > 0 is inside", ("mask", "float64"): "mask: any dtype"}),
    _spec("sample_patches", features.sample_patches, image=img(IMG1), points=A(PTS, "tensor", channels=True),
          radius=A(2, "index"), allow={("points", "float64"): SAMPLED}),
    _spec("patch_descriptor", features.patch_descriptor, image=img(IMG1), points=A(PTS, "tensor", channels=True),
          radius=A(2, "index"), allow={("points", "float64"): SAMPLED}),
    _spec("gradient_histogram_descriptor", features.gradient_histogram_descriptor, image=img(IMG1),
          points=A(PTS, "tensor", channels=True), radius=A(3, "index"), cells=A(2, "count"), bins=A(4, "count"),
          allow={("points", "float64"): SAMPLED}),
    _spec("match_descriptors", features.match_descriptors, desc_a=A(DESC_A, "tensor", channels=True),
          desc_b=A(DESC_B, "tensor", channels=True), ratio=A(0.9, "pos"), cross_check=A(True, "bool"),
          dtype="indices"),
    _spec("fit_affine", features.fit_affine, src=A(PTS, "tensor", paired=True, channels=True),
          dst=A(PTS_B, "tensor", paired=True, channels=True)),
    _spec("ransac_affine", features.ransac_affine, src=A(PTS, "tensor", paired=True, channels=True),
          dst=A(PTS_B, "tensor", paired=True, channels=True), iterations=A(5, "count"), threshold=A(2.0, "pos"),
          seed=A(0, "int")),
    _spec("tps_displacement", features.tps_displacement, points=A(PTS, "tensor", paired=True, channels=True),
          values=A(PTS_B - PTS, "tensor", paired=True, channels=True), shape=A((H, W), "size"),
          smoothing=A(0.0, "nonneg")),
    # ---------------------------------------------------------------- rotations
    _spec("euler_to_matrix", rot.euler_to_matrix, angles=A(RV, "tensor", channels=True), dtype="any"),
    _spec("matrix_to_euler", rot.matrix_to_euler, matrix=A(R3, "tensor", channels=True), dtype="any"),
    _spec("axis_angle_to_matrix", rot.axis_angle_to_matrix, rotvec=A(RV, "tensor", channels=True), dtype="any"),
    _spec("matrix_to_axis_angle", rot.matrix_to_axis_angle, matrix=A(R3, "tensor", channels=True), dtype="any"),
    _spec("quaternion_to_matrix", rot.quaternion_to_matrix, quaternion=A(Q, "tensor", channels=True), dtype="any"),
    _spec("matrix_to_quaternion", rot.matrix_to_quaternion, matrix=A(R3, "tensor", channels=True), dtype="any"),
    _spec("axis_angle_to_quaternion", rot.axis_angle_to_quaternion, rotvec=A(RV, "tensor", channels=True), dtype="any"),
    _spec("quaternion_to_axis_angle", rot.quaternion_to_axis_angle, quaternion=A(Q, "tensor", channels=True), dtype="any"),
    _spec("random_rotation_vectors", rot.random_rotation_vectors, n=A(3, "count"), max_angle=A(1.0, "nonneg"),
          generator=A(None, "object", optional=True), dtype=A(torch.float64, "dtype"), min_angle=A(0.0, "nonneg")),
    _spec("random_quaternions", rot.random_quaternions, n=A(3, "count"), generator=A(None, "object", optional=True),
          dtype=A(torch.float64, "dtype")),
    _spec("geodesic_distance", rot.geodesic_distance, r1=P(R3, channels=True), r2=P(R3.flip(0), channels=True)),
    _spec("GeodesicLoss", rot.GeodesicLoss, reduction=A("mean", "option")),
    _spec("GeodesicLoss.forward", rot.GeodesicLoss(), input=P(R3, channels=True), target=P(R3.flip(0), channels=True)),
    # ---------------------------------------------------------------- train
    _spec("fit", train.fit, model=A(LIN, "object"), step=A(_fit_step, "callable"), batches=A(BATCHES, "object"),
          steps=A(1, "count"), lr=A(1e-3, "pos"), optimizer=A(None, "object", optional=True),
          seed=A(None, "int", optional=True), progress=A(False, "bool"), desc=A("train", "str"),
          grad_clip=A(1.0, "pos", optional=True), callback=A(None, "callable", optional=True),
          callback_every=A(0, "index"), checkpoint=A(None, "path", optional=True), checkpoint_every=A(0, "index"),
          config=A(None, "object", optional=True), lr_schedule=A(None, "callable", optional=True)),
    _spec("cycle", train.cycle, batches=A(BATCHES, "object")),
    _spec("fit_adversarial", train.fit_adversarial, generator=A(LIN, "object"), discriminator=A(LIN_D, "object"),
          g_step=A(_adv_step, "callable"), d_step=A(_adv_step, "callable"), batches=A(BATCHES, "object"),
          steps=A(1, "count"), lr_g=A(1e-3, "pos"), lr_d=A(1e-3, "pos"), betas=A((0.9, 0.999), "seq"),
          seed=A(None, "int", optional=True), progress=A(False, "bool"), desc=A("adversarial", "str"),
          warmup_d=A(0, "index"), warmup_g=A(0, "index"), d_threshold=A(None, "real", optional=True),
          d_floor=A(0.0, "nonneg"), grad_clip=A(1.0, "pos", optional=True),
          callback=A(None, "callable", optional=True), callback_every=A(0, "index"),
          checkpoint=A(None, "path", optional=True), checkpoint_every=A(0, "index"),
          config_g=A(None, "object", optional=True), config_d=A(None, "object", optional=True),
          lr_schedule=A(None, "callable", optional=True)),
    *[_spec(n, f, real_logits=A(LOGITS, "tensor"), fake_logits=A(LOGITS_B, "tensor"), **extra,
            skip={(a, fam): ANY_SHAPE for a in ("real_logits", "fake_logits") for fam in ("ndim-", "ndim+")})
      for n, f, extra in [
          ("discriminator_targets", train.discriminator_targets, dict(smoothing=A(0.1, "nonneg"), dtype="any")),
          ("discriminator_loss", train.discriminator_loss, dict(kind=A("bce", "option"), smoothing=A(0.1, "nonneg"))),
          ("discriminator_stats", train.discriminator_stats, dict(kind=A("lsgan", "option")))]],
    _spec("generator_loss", train.generator_loss, fake_logits=A(LOGITS, "tensor"), kind=A("lsgan", "option"),
          skip={("fake_logits", fam): ANY_SHAPE for fam in ("ndim-", "ndim+")}),
    _spec("r1_penalty", train.r1_penalty, real_logits=A(R1_LOGITS, "tensor"), real_inputs=A(R1_X, "tensor"),
          gamma=A(10.0, "pos"),
          allow={("real_logits", "float64"): "documented: the penalty has the dtype of real_inputs' gradient"},
          errors={("real_inputs", "float64"): VE}),       # a cast copy is a tensor real_logits does not depend on
    _spec("discriminator_lr_factor", train.discriminator_lr_factor, d_loss=A(1.0, "real"), threshold=A(0.5, "real"),
          floor=A(0.0, "nonneg")),
    _spec("decay_schedule", train.decay_schedule, steps=A(10, "count"), decay_from=A(0.5, "nonneg"),
          final=A(0.1, "nonneg")),
    _spec("recalibrate_batchnorm", train.recalibrate_batchnorm, model=A(LIN, "object"),
          forward=A(lambda m, b: m(b), "callable"), batches=A(BATCHES, "object"), n_batches=A(1, "count")),
    _spec("ModelStack", train.ModelStack, models=A([torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)], "object")),
    _spec("ModelStack.clip_grad_norm_", train.ModelStack([torch.nn.Linear(2, 1)]).clip_grad_norm_, max_norm=A(1.0, "pos")),
    _spec("save_checkpoint", train.save_checkpoint, path=A(TMP / "ckpt.pt", "path"), model=A(LIN, "object"),
          config=A(None, "object", optional=True), optimizer=A(None, "object", optional=True), step=A(0, "index"),
          history=A(None, "dict", optional=True)),
    _spec("load_checkpoint", train.load_checkpoint, path=A(TMP / "ckpt.pt", "path"), model=A(LIN, "object", optional=True),
          optimizer=A(None, "object", optional=True)),
    # ---------------------------------------------------------------- viz (drawing on one shared axis)
    _spec("to_slice", viz.to_slice, x=A(IMG, "tensor"), axis=A(2, "index"), index=A(None, "index", optional=True),
          channel=A(0, "index"), allow=viz_allow("x"), dtype="any",
          skip={("x", "ndim-"): VOLUME}),
    _spec("show", viz.show, x=A(IMG, "tensor"), dtype="any", allow=viz_allow("x"),
          skip={("x", "ndim-"): VOLUME}),
    _spec("show_row", viz.show_row, images=A({"a": IMG}, "dict"), size=A(1.0, "pos")),
    _spec("overlay", viz.overlay, image=A(IMG, "tensor", paired=True), labels=A(LAB, "tensor", paired=True),
          alpha=A(0.4, "nonneg"), dtype="any", allow=viz_allow("image", "labels"),
          skip={(n, "ndim-"): VOLUME for n in ("image", "labels")}),
    _spec("checkerboard", viz.checkerboard, a=A(IMG, "tensor", paired=True), b=A(IMG_B, "tensor", paired=True),
          tiles=A(4, "count"), dtype="any", allow=viz_allow("a", "b"),
          skip={(n, "ndim-"): VOLUME for n in ("a", "b")}),
    _spec("mark_orientation", viz.mark_orientation, axis=A(2, "int"), color=A("yellow", "str")),
    _spec("plot_grid", viz.plot_grid, displacement=A(U, "tensor", channels=True), step=A(4, "count"),
          frame=A("moving", "option"),
          image=A(IMG, "tensor", optional=True), dtype="any", allow=viz_allow("displacement", "image"),
          skip={("displacement", "ndim-"): "a (2, H, W) field is valid input", ("image", "ndim-"): VOLUME}),
    _spec("plot_field", viz.plot_field, displacement=A(U, "tensor", channels=True), step=A(4, "count"),
          dtype="any", allow=viz_allow("displacement"),
          skip={("displacement", "ndim-"): "a (2, H, W) field is valid input"}),
    _spec("plot_jacobian", viz.plot_jacobian, displacement=A(U, "tensor", channels=True), vmax=A(2.0, "pos"),
          dtype="any", allow={("displacement", "list"): "documented: viz draws nested lists",
                              ("displacement", "float64"): "documented: viz draws any real dtype",
                              ("displacement", "int-dtype"): "an integer field is drawn as floats"}),
    _spec("slice_viewer", viz.slice_viewer, images=A({"a": IMG3D}, "dict"), size=A(2.0, "pos")),
    _spec("compare_viewer", viz.compare_viewer, moving=A(IMG, "tensor", paired=True), fixed=A(IMG_B, "tensor", paired=True),
          warped=A(IMG, "tensor", paired=True), size=A(2.0, "pos"), dtype="any",
          allow=viz_allow("moving", "fixed", "warped"),
          skip={(n, "ndim-"): VOLUME for n in ("moving", "fixed", "warped")}),
    _spec("registration_viewer", viz.registration_viewer, moving=P(IMG), fixed=P(IMG_B), warped=P(IMG),
          displacement=P(U, channels=True), size=A(2.0, "pos"), step=A(4, "count"), dtype="any",
          allow={(n, f): "viewer draws any real dtype (cast to float32 for display)"
                 for n in ("moving", "fixed", "warped") for f in ("int-dtype", "nan", "inf", "float64")}
          | {("displacement", "float64"): "cast to float32 for display"}),
    # ---------------------------------------------------------------- networks
    _spec("SAEConfig", SAEConfig, input_size=A(9, "count"), hidden=A((4,), "seq"), code_size=A(2, "count"),
          activation=A("sigmoid", "option"), sparsity=A("none", "option"), sparsity_weight=A(0.0, "nonneg"),
          sparsity_target=A(0.05, "pos"),
          errors=config_errors("input_size", "hidden", "code_size", "sparsity_weight", "sparsity_target")),
    _spec("StackedAutoencoder", StackedAutoencoder, config=A(SAEConfig(9, (4,), 2), "object")),
    _spec("StackedAutoencoder.encode", SAE.encode, dtype="weights", patches=A(PATCHES, "tensor", channels=True),
          depth=A(None, "index", optional=True),
          skip={("patches", "ndim+"): "documented: (P, C, *patch) batches are flattened"}),
    _spec("StackedAutoencoder.decode", SAE.decode, dtype="weights", codes=A(torch.rand(5, 2), "tensor", channels=True)),
    _spec("StackedAutoencoder.forward", SAE, dtype="weights", patches=A(PATCHES, "tensor", channels=True),
          skip={("patches", "ndim+"): "documented: (P, C, *patch) batches are flattened"}),
    _spec("StackedAutoencoder.loss", SAE.loss, dtype="weights", patches=A(PATCHES, "tensor", channels=True),
          skip={("patches", "ndim+"): "documented: (P, C, *patch) batches are flattened"}),
    _spec("StackedAutoencoder.layer_loss", SAE.layer_loss, dtype="weights", k=A(0, "index"),
          patches=A(PATCHES, "tensor", channels=True),
          skip={("patches", "ndim+"): "documented: (P, C, *patch) batches are flattened"}),
    _spec("StackedAutoencoder.layerwise_parameters", SAE.layerwise_parameters, k=A(0, "index")),
    _spec("train_sae", train.train_sae, model=A(SAE, "object"), batches=A([PATCHES], "object"),
          layer_steps=A(1, "index"), finetune_steps=A(1, "index"), lr=A(1e-3, "pos"),
          finetune_lr=A(None, "pos", optional=True), seed=A(0, "int", optional=True), progress=A(False, "bool")),
    _spec("RegressorConfig", RegressorConfig, ndim=A(2, "option"), in_channels=A(1, "count"), widths=A((2,), "seq"),
          growth=A(2, "count"), head=A((4,), "seq"), output=A("affine", "option"),
          errors=config_errors("ndim", "in_channels", "widths", "growth", "head")),
    _spec("DiscriminatorConfig", DiscriminatorConfig, ndim=A(2, "option"), in_channels=A(2, "count"),
          widths=A((2,), "seq"), head_width=A(2, "count"), slope=A(0.2, "nonneg"), min_size=A(2, "count"),
          input_size=A((H, W), "size", optional=True), spectral_norm=A(False, "bool"),
          errors=config_errors("ndim", "in_channels", "widths", "head_width", "slope", "min_size", "input_size")),
    _spec("Discriminator", Discriminator, config=A(DiscriminatorConfig(widths=(2,), head_width=2, input_size=(H, W)),
                                                   "object", optional=True)),
    _spec("Discriminator.forward", DISC, dtype="weights", x=P(IMG, channels=True),
          y=P(IMG_B, channels=True, optional=True)),
    _spec("Discriminator.output_shape", DISC.output_shape, spatial=A((H, W), "size")),
    _spec("AffineRegressor", AffineRegressor, config=A(RegressorConfig(widths=(2,), growth=2, head=(4,)), "object")),
    _spec("AffineRegressor.forward", REG, dtype="weights", moving=P(IMG, channels=True), fixed=P(IMG_B, channels=True)),
    _spec("AffineRegressor.encode", REG.encode, dtype="weights", image=A(IMG, "tensor", channels=True)),
    _spec("AffineRegressor.matrix", REG.matrix, params=A(PARAMS6, "tensor", channels=True), shape=A((H, W), "size"),
          dtype="any"),
    _spec("PatchSimilarityConfig", PatchSimilarityConfig, ndim=A(2, "option"), patch_size=A(9, "count"),
          channels=A((2,), "seq"), hidden=A(2, "count"),
          errors=config_errors("ndim", "patch_size", "channels", "hidden")),
    _spec("PatchSimilarityNet", PatchSimilarityNet, config=A(PatchSimilarityConfig(patch_size=9, channels=(2,), hidden=2),
                                                             "object")),
    _spec("PatchSimilarityNet.logits", PSN.logits, dtype="weights", a=P(PATCH_A, channels=True), b=P(PATCH_B, channels=True)),
    _spec("PatchSimilarityNet.forward", PSN, dtype="weights", a=P(PATCH_A, channels=True), b=P(PATCH_B, channels=True)),
    _spec("PatchSimilarityNet.score_map", PSN.score_map, dtype="weights", a=P(IMG, channels=True), b=P(IMG_B, channels=True)),
    _spec("PatchSimilarityNet.as_similarity", PSN.as_similarity, score=A("logit", "option"),
          threshold=A(0.05, "real", optional=True), names=("LearnedSimilarity",)),
    _spec("LearnedSimilarity", similarity_net.LearnedSimilarity, net=A(PSN, "object"), score=A("logit", "option"),
          threshold=A(0.05, "real", optional=True)),
    _spec("LearnedSimilarity.forward", LSIM, dtype="weights", a=P(IMG, channels=True), b=P(IMG_B, channels=True)),
    _spec("LearnedSimilarity.weights", LSIM.weights, b=A(IMG_B, "tensor", channels=True), dtype="any",
          ),
    _spec("UNet", UNet, ndim=A(2, "option"), in_channels=A(2, "count"), encoder=A((2,), "seq"), decoder=A((2,), "seq"),
          errors=config_errors("ndim", "in_channels", "encoder", "decoder")),
    _spec("UNet.forward", UNET, dtype="weights", x=A(_img(N, 2), "tensor", channels=True)),
    _spec("VoxelMorphConfig", VoxelMorphConfig, ndim=A(2, "option"), in_channels=A(1, "count"), encoder=A((2,), "seq"),
          decoder=A((2,), "seq"), diffeomorphic=A(False, "bool"), int_steps=A(3, "index"), int_downsize=A(2, "count"),
          flow_init_std=A(1e-5, "nonneg"),
          errors=config_errors("ndim", "in_channels", "encoder", "decoder", "int_steps", "int_downsize",
                               "flow_init_std") | {("flow_init_std", "negative"): VE}),
    _spec("VoxelMorph", VoxelMorph, config=A(VoxelMorphConfig(encoder=(2,), decoder=(2,)), "object", optional=True)),
    _spec("VoxelMorph.forward", VM, dtype="weights", moving=P(IMG, channels=True), fixed=P(IMG_B, channels=True),
          labels=A(LAB, "tensor", optional=True, paired=True, batched=True),
          allow={("labels", "float-dtype"): "documented: float labels are one-hot maps, warped linearly",
                 ("labels", "channels"): "float one-hot labels may have L channels"}),
    _spec("VoxelMorph.integrate", VM.integrate, velocity=A(U, "tensor", channels=True), dtype="any"),
    _spec("VoxelMorph.register", VM.register, dtype="weights", moving=P(IMG, channels=True), fixed=P(IMG_B, channels=True)),
]

#: hand-written bad calls that the families cannot express (environment variables, keywords)
def _env(var, value, call):
    def run():
        old = __import__("os").environ.get(var)
        __import__("os").environ[var] = value
        try:
            return call()
        finally:
            if old is None:
                del __import__("os").environ[var]
            else:
                __import__("os").environ[var] = old
    return run


EXTRA = [  # (function name, argument name, family, call, exception)
    ("device", "COURSE_DEVICE", "unknown", _env("COURSE_DEVICE", "nope", config.device), VE),
    ("profile", "COURSE_PROFILE", "unknown", _env("COURSE_PROFILE", "slow", config.profile), VE),
    ("course_seed", "COURSE_SEED", "string", _env("COURSE_SEED", "x", config.course_seed), VE),
    ("train_seed", "COURSE_SEED", "negative", _env("COURSE_SEED", "-1", lambda: config.train_seed(0)), VE),
    ("seed_everything", "COURSE_SEED", "string", _env("COURSE_SEED", "1.5", lambda: config.seed_everything(0)), VE),
    ("record_checkpoint", "x", "string", lambda: config.record_checkpoint("99.9", x="a"), TE),
    *[(c.__name__, "bogus", "unknown-keyword", lambda c=c: c(bogus=1), TE)
      for c in (sim.SSD, sim.NCC, sim.LNCC, sim.MutualInformation, sim.NMI, sim.SoftDice)],
    ("LNCC", "window", "even", lambda: sim.LNCC(window=4), VE),
    ("lncc", "window", "even", lambda: sim.lncc(IMG, IMG, window=4), VE),
    ("lncc", "a", "channels", lambda: sim.lncc(_img(N, 2), _img(N, 2)), VE),
    ("mutual_information", "vmin", "order", lambda: sim.mutual_information(IMG, IMG, vmin=1.0, vmax=0.0), VE),
    ("diffusion", "displacement", "size-1", lambda: reg.diffusion(torch.zeros(1, 2, 1, W)), VE),
    ("bending_energy", "displacement", "size-2", lambda: reg.bending_energy(torch.zeros(1, 2, 2, W)), VE),
    ("jacobian_determinant", "displacement", "size-1", lambda: spatial.jacobian_determinant(torch.zeros(1, 2, 1, W)), VE),
    ("warp", "displacement", "3d-field-2d-image", lambda: spatial.warp(IMG, torch.zeros(N, 3, 4, H, W)), VE),
    ("warp", "mode", "int-image-linear", lambda: spatial.warp(LAB, U), TE),
    ("hd95", "spacing", "length", lambda: metrics.hd95(LAB, LAB, spacing=(1.0, 1.0, 1.0)), VE),
    ("hd95", "labels", "absent", lambda: metrics.hd95(LAB, LAB, labels=[7]), VE),
    ("dice", "labels", "empty", lambda: metrics.dice(LAB, LAB, labels=[]), VE),
    ("n_params", "ndim", "ndim-4", lambda: spatial.n_params("affine", 4), VE),
    ("params_to_matrix", "theta", "width-5", lambda: classical.params_to_matrix(torch.zeros(1, 5), "affine", (H, W)), VE),
    ("params_to_matrix", "theta", "int-dtype", lambda: classical.params_to_matrix(torch.ones(1, 6, dtype=torch.int64),
                                                                               "affine", (H, W)), TE),
    ("register_affine", "steps", "list-length", lambda: classical.register_affine(IMG, IMG, levels=2, steps=[1]), VE),
    ("register_affine", "levels", "negative", lambda: classical.register_affine(IMG, IMG, levels=-1, steps=1), VE),
    ("register_dense", "steps", "negative", lambda: classical.register_dense(IMG, IMG, levels=1, steps=-1), VE),
    ("fit_affine", "src", "4d-points", lambda: features.fit_affine(torch.rand(6, 4), torch.rand(6, 4)), VE),
    ("ransac_affine", "src", "too-few", lambda: features.ransac_affine(PTS[:2], PTS_B[:2]), VE),
    ("AffineRegressor.matrix", "params", "int-dtype", lambda: REG.matrix(torch.zeros(1, 6, dtype=torch.int64), (H, W)), TE),
    ("StackedAutoencoder.encode", "depth", "too-deep", lambda: SAE.encode(PATCHES, depth=5), VE),
    ("PairDataset.__getitem__", "i", "float", lambda: data.PairDataset(1, "test", ANATOMY, cache=False)[0.5], TE),
    ("PairDataset.batch", "indices", "out-of-range", lambda: data.PairDataset(1, "test", ANATOMY, cache=False).batch([3]), VE),
    ("fit_adversarial", "warmup_g", "over-steps", lambda: train.fit_adversarial(
        LIN, LIN_D, _adv_step, _adv_step, BATCHES, 2, warmup_d=1, warmup_g=2, progress=False), VE),
    ("fit_adversarial", "discriminator", "shared", lambda: train.fit_adversarial(
        LIN, torch.nn.Sequential(LIN, LIN_D), _adv_step, _adv_step, BATCHES, 1, progress=False), VE),
    ("r1_penalty", "real_inputs", "no-grad", lambda: train.r1_penalty(R1_LOGITS, R1_X.detach()), VE),
    ("r1_penalty", "real_logits", "unrelated", lambda: train.r1_penalty(R1_CONV(R1_X.detach()), R1_X), VE),
    ("discriminator_loss", "smoothing", "half", lambda: train.discriminator_loss(LOGITS, LOGITS, smoothing=0.5), VE),
    ("Discriminator.forward", "x", "too-small", lambda: DISC(torch.rand(1, 2, 4, W)), VE),
    ("Discriminator.forward", "y", "channels-sum", lambda: DISC(IMG, _img(N, 2)), VE),
    ("fit", "grad_clip", "negative", lambda: train.fit(LIN, _fit_step, BATCHES, 1, grad_clip=-1.0, progress=False), VE),
    ("compare_viewer", "warped", "mismatch-2d-3d", lambda: viz.compare_viewer(IMG, IMG, IMG3D), VE),
    ("registration_viewer", "displacement", "nan",
     lambda: viz.registration_viewer(IMG, IMG, IMG, _poke(U, float("nan"))), VE),
]

#: public names that the walk does not call, each with the reason
NOT_WALKED = {
    # constants and records
    "config.Profile": "frozen record built by profile(); its fields are the course's constants",
    "config.PROFILES": "constant", "config.CHECKPOINT_VALUES": "constant (a dict filled by record_checkpoint)",
    "config.course_seed": "no arguments: its input is COURSE_SEED, walked in EXTRA",
    "config.device": "no arguments: its input is COURSE_DEVICE, walked in EXTRA",
    "data.Anatomy": "plain record; checked where it is used (template= of synthesize_subject, pair_batch, PairDataset)",
    "data.Subject": "plain record returned by synthesize_subject",
    "data.cache_dir": "no arguments (reads COURSE_DATA_DIR, any path is valid)",
    "data.cache_summaries": "no arguments",
    "data.SPLIT_SEEDS": "constant", "data.ATLASES": "constant", "data.STRUCTURE_GROUPS": "constant",
    "data.REFERENCE": "constant",
    "spatial.ALIGN_CORNERS": "constant",
    "similarity.SSD": "no keyword arguments (SSD(bogus=1) is walked in EXTRA)",
    "similarity.SIMILARITIES": "constant",
    "regularizers.Diffusion": "no arguments (its forward is walked)",
    "regularizers.BendingEnergy": "no arguments (its forward is walked)",
    "metrics.SeedDifference": "plain record returned by robust_difference",
    "metrics.PairedDifference": "plain record returned by paired_difference",
    "classical.AffineResult": "plain record returned by register_affine",
    "classical.DenseResult": "plain record returned by register_dense",
    "networks.unet.VM1_DECODER": "constant", "networks.unet.VM2_DECODER": "constant",
    "networks.unet.VM_ENCODER": "constant",
    "networks.voxelmorph.VoxelMorphOutput": "plain record returned by VoxelMorph.forward",
    "train.cached_model": "takes a name, a recipe dict and two callables, not the walk's tensors: every argument "
                          "walked by hand in tests/test_model_cache.py",
    "train.environment": "an optional model only (any nn.Module is valid)",
    "evaluation.Evaluation": "plain record returned by evaluate",
    "evaluation.evaluate": "takes a callable and a list of pair dicts, not the walk's tensors: every argument, "
                           "every key of a pair and every bad register() result in tests/test_evaluation.py",
    "evaluation.pareto_front": "takes two dicts method -> number: walked by hand in tests/test_evaluation.py",
    "evaluation.label_centroids": "a label map of batch one and optional labels: walked by hand in "
                                  "tests/test_evaluation.py (dtype, batch, empty, absent label)",
    "recipes.LOSSES": "constant",
    "recipes.VoxelMorphRecipe": "a frozen record of plain options: every bad option walked by hand in tests/test_recipes.py",
    "recipes.voxelmorph_loss": "takes a recipe, a model and a batch dict: wrong recipe type, missing batch keys and a "
                               "missing label_maps walked by hand in tests/test_recipes.py",
    "recipes.build_voxelmorph": "takes a recipe: a wrong type walked by hand in tests/test_recipes.py",
    "recipes.train_voxelmorph": "takes a model, a recipe and batches (checked by train.fit): a wrong recipe walked by "
                                "hand in tests/test_recipes.py",
    "recipes.multiscale_dice_loss": "two label-map stacks: a shape mismatch walked by hand in tests/test_recipes.py",
    "recipes.fan_reference": "two images and a step: a shape mismatch and a bad step walked by hand in tests/test_recipes.py",
    "recipes.build_discriminator": "takes a recipe and a size: a recipe without a discriminator and a bad size walked by "
                                   "hand in tests/test_recipes.py",
    "recipes.discriminator_step": "takes a recipe, two models and a batch dict (the checks of voxelmorph_loss): a "
                                  "missing discriminator walked by hand in tests/test_recipes.py",
}
#: methods walked besides the names of __all__ (no public method is left out on purpose)
UNREACHABLE = {
    "StackedAutoencoder.sparsity_penalty": "an internal term of loss/layer_loss on activations the model made "
                                          "itself; its input is never user data",
    "ModelStack.forward": "takes one member's inputs (*inputs) and passes them on unchanged: the member's own "
                          "forward checks them (walked for every network)",
    "ModelStack.unstack": "no arguments",
    "ModelStack.train": "torch.nn.Module.train (mode: bool), extended to the stacked architecture",
}


# ------------------------------------------------------------------------------------------ the walk
def _names_in(message: str, fn: str, arg: str, also=()) -> bool:
    if not any(message.startswith(f + ":") or f"{f}:" in message for f in (fn, *also)):
        return False
    if len(arg) > 2:
        return re.search(rf"(?<![A-Za-z0-9_]){re.escape(arg)}(?![A-Za-z0-9_])", message) is not None
    # one-letter names (a, b, x, k, n, i): as the subject of the message, in a pair, or quoted
    return re.search(rf"(: {arg}\b|\({arg}\b|\band {arg}\b|\b{arg} and\b|\b{arg}\[|{arg}=)", message) is not None


def _dtype_of(result):
    if isinstance(result, torch.Tensor):
        return result.dtype
    if isinstance(result, (tuple, list)) and result and isinstance(result[0], torch.Tensor):
        return result[0].dtype
    if dataclasses.is_dataclass(result):
        for f in dataclasses.fields(result):
            v = getattr(result, f.name)
            if isinstance(v, torch.Tensor):
                return v.dtype
    return None


def _expectation(spec: Spec, arg: str, family: str, exc):
    """``("error", exception)`` or ``("allowed", reason)`` for one bad call."""
    if (arg, family) in spec.allow:
        return "allowed", spec.allow[(arg, family)]
    if (arg, family) in spec.errors:
        return "error", spec.errors[(arg, family)]
    if family == "float64":
        others = [a for n, a in spec.args.items() if n != arg and isinstance(a.value, torch.Tensor)
                  and a.value.is_floating_point()]
        if spec.dtype == "weights":
            return "error", TE
        if spec.dtype == "first":
            return "allowed", "documented: warp returns the image's dtype, the field sets the sampling precision"
        if spec.dtype in ("any", "indices") or not others:
            return "allowed", "one floating input: any floating dtype is valid"
        return "allowed", "promote"
    return "error", exc


def _call(spec: Spec, kwargs: dict):
    out = spec.fn(**kwargs)
    plt.close("all")
    return out


def walk(specs=SPECS, extra=EXTRA):
    """Run every bad call; return ``(counts, problems, rows)``."""
    counts = {"calls": 0, "clear errors": 0, "allowed": 0, "valid calls": 0}
    problems, rows = [], []
    for spec in specs:
        valid = {n: a.value for n, a in spec.args.items()}
        try:
            _call(spec, valid)
            counts["valid calls"] += 1
        except Exception as err:  # noqa: BLE001 - reported below
            problems.append(f"{spec.name}: the valid call failed: {type(err).__name__}: {err}")
            continue
        for arg, a in spec.args.items():
            for family, bad, exc in families(a):
                if (arg, family) in spec.skip:
                    continue
                kind, want = _expectation(spec, arg, family, exc)
                counts["calls"] += 1
                label = f"{spec.name}({arg}: {family})"
                try:
                    result = _call(spec, {**valid, arg: bad})
                except (TypeError, ValueError) as err:
                    plt.close("all")
                    msg = str(err)
                    if kind == "allowed":
                        problems.append(f"{label}: declared allowed ({want}) but raised {type(err).__name__}: {msg}")
                    elif type(err) is not want and not isinstance(err, want):
                        problems.append(f"{label}: expected {want.__name__}, got {type(err).__name__}: {msg}")
                    elif not _names_in(msg, spec.name, arg, spec.names):
                        problems.append(f"{label}: message does not name the function and the argument: {msg}")
                    else:
                        counts["clear errors"] += 1
                        rows.append((spec.name, arg, family, type(err).__name__))
                    continue
                except Exception as err:  # noqa: BLE001
                    plt.close("all")
                    problems.append(f"{label}: opaque {type(err).__name__}: {err}")
                    continue
                if kind == "error":
                    problems.append(f"{label}: returned silently, expected {want.__name__}")
                    continue
                if want == "promote" and _dtype_of(result) not in (None, torch.float64):
                    problems.append(f"{label}: mixed float32/float64 returned {_dtype_of(result)}, not float64")
                    continue
                counts["allowed"] += 1
                rows.append((spec.name, arg, family, "allowed"))
    for name, arg, family, call, exc in extra:
        counts["calls"] += 1
        label = f"{name}({arg}: {family})"
        try:
            call()
            problems.append(f"{label}: returned silently, expected {exc.__name__}")
        except (TypeError, ValueError) as err:
            if not isinstance(err, exc):
                problems.append(f"{label}: expected {exc.__name__}, got {type(err).__name__}: {err}")
            elif not _names_in(str(err), name, arg):
                problems.append(f"{label}: message does not name the function and the argument: {err}")
            else:
                counts["clear errors"] += 1
                rows.append((name, arg, family, type(err).__name__))
        except Exception as err:  # noqa: BLE001
            problems.append(f"{label}: opaque {type(err).__name__}: {err}")
        finally:
            plt.close("all")
    counts["not walked"] = len(NOT_WALKED) + len(UNREACHABLE)
    return counts, problems, rows


def public_names() -> list[str]:
    out = []
    for mod in MODULES:
        m = importlib.import_module(f"course_lib.{mod}")
        out += [f"{mod}.{name}" for name in m.__all__]
    return out


def _walked_names() -> set[str]:
    return {s.name for s in SPECS} | {e[0] for e in EXTRA}


# ------------------------------------------------------------------------------------------ the tests
def test_every_public_name_is_walked_or_listed_with_a_reason():
    walked = _walked_names()
    missing = [q for q in public_names() if q.rsplit(".", 1)[1] not in walked and q not in NOT_WALKED]
    assert not missing, f"public names neither walked nor listed in NOT_WALKED: {missing}"
    stale = [q for q in NOT_WALKED if q not in public_names()]
    assert not stale, f"NOT_WALKED lists names that are not public: {stale}"


def test_every_public_method_of_the_public_classes_is_walked():
    walked = _walked_names()
    missing = []
    for q in public_names():
        mod, name = q.rsplit(".", 1)
        obj = getattr(importlib.import_module(f"course_lib.{mod}"), name)
        if not isinstance(obj, type) or not issubclass(obj, torch.nn.Module):
            continue
        for meth, value in vars(obj).items():
            if callable(value) and not meth.startswith("_") and meth != "extra_repr":
                full = f"{name}.{meth}"
                if full not in walked and full not in UNREACHABLE:
                    missing.append(full)
    assert not missing, f"public methods neither walked nor listed in UNREACHABLE: {missing}"


def test_every_bad_argument_gets_a_clear_error_or_is_declared_allowed(capsys):
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    counts, problems, _ = walk()
    seconds = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\nbad-input contract: {counts['calls']} bad calls on {counts['valid calls']} valid calls: "
              f"{counts['clear errors']} clear errors, {counts['allowed']} declared allowed, "
              f"{counts['not walked']} names not walked (listed with reasons), {len(problems)} problems, "
              f"{seconds:.1f} s")
    assert not problems, f"{len(problems)} calls break the contract:\n  " + "\n  ".join(problems)
    assert seconds < 30, f"the walk took {seconds:.1f} s (budget 30 s)"


if __name__ == "__main__":
    torch.set_num_threads(1)
    counts, problems, rows = walk()
    per_module: dict = {}
    print(counts)
    for p in problems:
        print("PROBLEM", p)
    sys.exit(1 if problems else 0)
