SETUP = r'''
# NBVAL_IGNORE_OUTPUT
%matplotlib inline
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from course_lib import classical, config, data, metrics, regularizers, similarity, spatial, train, viz
from course_lib.metrics import paired_difference, robust_difference
from course_lib.networks import (AffineRegressor, Discriminator, DiscriminatorConfig, RegressorConfig, VoxelMorph,
                                 VoxelMorphConfig)
from course_lib.networks.unet import VM1_DECODER, VM_ENCODER

P = config.profile()            # quick on a CPU, full on a GPU (COURSE_PROFILE overrides)
DEVICE = config.device()
config.seed_everything(0)
plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80})
T_START = time.time()
print(f"profile={P.name}  device={DEVICE}  torch={torch.__version__}")
'''

DATA = r'''
QUICK = P.name == "quick"
if QUICK:
    # 4 mm axial slices (48 x 64): 2 mm slices averaged over 2 x 2 blocks. Forty trainings must fit a
    # laptop's minutes; lessons 08-09 train at 2 mm. The simulator's sizes are in voxels: half of lesson
    # 08's, so the deformations are the same in millimetres.
    TEMPLATE = data.coarsen(data.template_slices("axial", size=(96, 128)), 2)
    SIM = dict(magnitude=2.0, spacing=6, subject_magnitude=1.0)
    SPACING = 4.0                                   # mm per voxel
    STEPS = 2 * P.train_steps // 3                  # 200 training steps per model
    BATCH = P.batch_size // 2                       # 4 pairs per step
    POOL = STEPS // 2                               # batches simulated per seed, cycled
else:
    TEMPLATE = data.template_volume(resolution=P.resolution_3d, size=P.size_3d)
    SIM = dict(magnitude=4.0, spacing=12, subject_magnitude=2.0)
    SPACING = float(P.resolution_3d)
    STEPS = P.train_steps // 10                     # 500 per model on a GPU
    BATCH = 1
    POOL = 0                                        # fresh pairs at every step
TEMPLATE = TEMPLATE.to(DEVICE)
SHAPE, NDIM = TEMPLATE.shape, TEMPLATE.ndim
N_TEST = 16 if QUICK else P.n_test                  # held-out pairs (never depend on COURSE_SEED)
SEEDS = (0, 1, 2)                                   # training seeds of every recipe (offset by COURSE_SEED)
LR = 3e-3 if QUICK else 1e-3                        # Adam, every VoxelMorph (lesson 08's)
LAM = 0.1                                           # diffusion weight next to a similarity (lesson 08's LNCC model)
CLIP = 1.0                                          # gradient-norm clipping of both networks
LAYOUT = torch.channels_last if NDIM == 2 else torch.contiguous_format


def pair(i, contrast=None):
    # held-out pair i as a batch of one: moving, fixed, their labels and masks, the true displacement d.
    # No intensity augmentation (see section 1); contrast="pd" gives a PD-like moving image.
    return data.pair_batch(1, data.SPLIT_SEEDS["test"] + i, template=TEMPLATE, device=DEVICE, augment=False,
                           contrast=contrast, **SIM)


TEST = [pair(i) for i in range(N_TEST)]
TEST_PD = [pair(i, "pd") for i in range(N_TEST)]


def training_batches(seed, contrast=None):
    # the training pairs of one seed, the same for every recipe: a list of POOL batches (quick), else a callable
    g = torch.Generator().manual_seed(data.SPLIT_SEEDS["train"] + config.train_seed(seed))

    def draw():
        b = data.pair_batch(BATCH, g, template=TEMPLATE, device=DEVICE, augment=False, contrast=contrast, **SIM)
        return {k: (v.contiguous(memory_format=LAYOUT) if v.dim() == NDIM + 2 and k != "displacement" else v)
                for k, v in b.items()}
    return [draw() for _ in range(POOL)] if POOL else draw


def evaluate(register, pairs):
    # register(pair) -> backward field u (1, ndim, *S). Per pair: Dice (mean over the fixed image's labels),
    # EPE (voxels, fixed brain), folding %, SDlogJ, bending energy
    rows = []
    for p in pairs:
        u = register(p).detach()
        rows.append([float(metrics.dice(spatial.warp_labels(p["moving_labels"], u), p["fixed_labels"]).nanmean()),
                     float(metrics.epe(u, p["displacement"], mask=p["fixed_mask"])),
                     100 * float(metrics.folding_fraction(u, p["fixed_mask"])),
                     float(metrics.sdlogj(u, p["fixed_mask"])), float(regularizers.bending_energy(u))])
    return dict(zip(("Dice", "EPE", "fold %", "SDlogJ", "bending"), np.array(rows).T))


RESULTS = {"unregistered": evaluate(lambda p: torch.zeros_like(p["displacement"]), TEST),
           "true field": evaluate(lambda p: p["displacement"], TEST)}
print(f"{N_TEST} held-out pairs of {' x '.join(map(str, SHAPE))} voxels ({SPACING:g} mm); {len(SEEDS)} seeds x "
      f"{STEPS} steps of {BATCH} pairs per recipe")
print(f"Dice unregistered {RESULTS['unregistered']['Dice'].mean():.3f}, with the true field "
      f"{RESULTS['true field']['Dice'].mean():.3f}")
'''

AFFINE = r'''
def affine_only(p):
    res = classical.register_affine(p["moving"], p["fixed"], similarity=similarity.ncc, model="affine",
                                    levels=2, steps=P.reg_steps)
    return spatial.affine_to_displacement(res.matrix, SHAPE)


RESULTS["affine only"] = evaluate(affine_only, TEST)
print(f"affine only (classical, NCC): held-out Dice {RESULTS['affine only']['Dice'].mean():.3f}")
'''
