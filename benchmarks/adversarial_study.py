"""Design study for lesson 10 (adversarial registration): every arm of the lesson, over training seeds.

Lesson 10 must fit 300 s on a 2-core CPU, so its recipes are chosen here first, on the lesson's
data (2D axial slices of the 2 mm template, the held-out test pairs of lessons 08-09), and the
numbers are recorded in ``benchmarks/adversarial_study_quick_cpu.json`` (one entry per part, arm
and seed; a rerun replaces the entries it recomputes).

    .venv/bin/python benchmarks/adversarial_study.py fan  --seeds 0 1 2
    .venv/bin/python benchmarks/adversarial_study.py yan  --seeds 0 1 2 --steps 300
    .venv/bin/python benchmarks/adversarial_study.py hu   --seeds 0 1 2 --arms none adv:0.1
    .venv/bin/python benchmarks/adversarial_study.py show            # the table of what is recorded

Parts and arms:

* ``fan`` -- adversarial similarity (Fan et al. 2018). VoxelMorph (lesson 08's VM-1 U-Net) trained
  with ``lncc`` (1 - LNCC + 0.1 diffusion), ``adv`` (discriminator only, + 0.1 diffusion),
  ``adv+lncc`` (both); suffix ``-sn`` for a spectrally normalised discriminator, ``-ls`` for the
  least-squares loss, ``-lowd`` for a ten times slower discriminator. Mono-modal pairs without
  intensity augmentation by default; ``--contrast pd`` gives PD-like moving images (multi-modal;
  arm ``mi``: mutual information instead of LNCC).
* ``yan`` -- adversarial rigid registration (Yan et al. 2018). Lesson 06's regressor
  (``output="rigid"``) on PD -> T1 slice pairs, 48 x 56, rotations up to 20 degrees and shifts up to
  0.15 half-image: ``mse`` (parameter loss alone), ``adv:W`` (parameter loss + W adversarial),
  ``advonly:W``; the discriminator (spectral norm) judges (moving resampled, fixed), real with the
  true parameters. Also records the Spearman correlation of the trained discriminator's mean logit
  with the true misalignment on 256 perturbed held-out pairs.
* ``hu`` -- adversarial deformation regularisation (Hu et al. 2018). Label-driven VoxelMorph
  (multi-scale Dice of one-hot label maps, lesson 09) with ``none``, ``diffusion:L``,
  ``bending:L`` or ``adv:W`` (a discriminator, spectral norm, between the simulator's true fields
  and the predicted ones), and ``supervised`` (squared end-point error to the simulated field).

Every arm reports the held-out Dice (mean over the labels of each fixed image, then over 16 pairs),
end-point error (voxels, in the fixed brain), folding (%), SDlogJ, bending energy and diffusion of
the fields, training seconds, and for adversarial arms the discriminator's loss over the last 50
steps. One thread by default (``--threads``), so that it can run beside other work; its seconds
are then not the lesson's.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from course_lib import data, metrics, regularizers, similarity, spatial, train
from course_lib.networks import (AffineRegressor, Discriminator, DiscriminatorConfig, RegressorConfig, VoxelMorph,
                                 VoxelMorphConfig)
from course_lib.networks.unet import VM1_DECODER, VM_ENCODER

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "adversarial_study_quick_cpu.json"
SIZE = (96, 112)                       # the quick profile's 2D slices (2 mm)
RIGID_SIZE = (48, 56)                  # Yan et al.'s part: the regressor's input
N_TEST = 16                            # lessons 08-09's held-out pairs
LAY = torch.channels_last
LAM = 0.1                              # diffusion weight next to a similarity (lesson 08's LNCC model)


@functools.lru_cache(maxsize=1)
def _template():
    # read once per process: every arm and seed of a call uses the same slice
    return data.template_slices("axial", size=SIZE)


def _fields(u: torch.Tensor, p: dict) -> dict:
    return {"dice": float(metrics.dice(spatial.warp_labels(p["moving_labels"], u), p["fixed_labels"]).nanmean()),
            "epe": float(metrics.epe(u, p["displacement"], mask=p["fixed_mask"])),
            "fold": 100 * float(metrics.folding_fraction(u)), "sdlogj": float(metrics.sdlogj(u)),
            "bending": float(regularizers.bending_energy(u)), "diffusion": float(regularizers.diffusion(u))}


def _evaluate(register, pairs) -> dict:
    rows = [_fields(register(p).detach(), p) for p in pairs]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _vm(seed: int) -> VoxelMorph:
    torch.manual_seed(1000 + seed)
    cfg = VoxelMorphConfig(ndim=2, flow_init_std=1e-2, encoder=VM_ENCODER, decoder=VM1_DECODER)
    return VoxelMorph(cfg).to(memory_format=LAY)


def _disc(in_channels: int, size, seed: int, sn: bool) -> Discriminator:
    torch.manual_seed(2000 + seed)
    return Discriminator(DiscriminatorConfig(ndim=2, in_channels=in_channels, input_size=size, spectral_norm=sn))


def _tail(h: dict, key: str) -> float:
    return float(np.nanmean(np.asarray(h[key][-50:], dtype=float))) if key in h else math.nan


# ------------------------------------------------------------------------------------------ Fan et al.
def run_fan(arm: str, seed: int, steps: int, contrast: str | None) -> dict:
    t = _template()
    augment = False                    # a blend of two differently augmented images is told apart by intensity alone
    test = [data.pair_batch(1, data.SPLIT_SEEDS["test"] + i, template=t, augment=augment, contrast=contrast)
            for i in range(N_TEST)]
    g = torch.Generator().manual_seed(data.SPLIT_SEEDS["train"] + seed)
    pool = [{k: b[k].contiguous(memory_format=LAY) for k in ("moving", "fixed")}
            for b in (data.pair_batch(4, g, template=t, labels=False, augment=augment, contrast=contrast)
                      for _ in range(steps // 2))]
    net, sched = _vm(seed), train.decay_schedule(steps, 0.75)
    base = arm.split("-")[0]
    sim = {"lncc": similarity.as_loss(similarity.lncc),
           "mi": similarity.as_loss(similarity.mutual_information)}
    t0 = time.perf_counter()
    extra = {}
    if base in sim:
        def step(m, b):
            o = m(b["moving"], b["fixed"])
            return sim[base](o.warped, b["fixed"]) + LAM * regularizers.diffusion(o.flow)
        train.fit(net, step, pool, steps=steps, lr=3e-3, seed=seed, grad_clip=1.0, progress=False, lr_schedule=sched)
    else:
        flags = arm.split("-")[1:]
        kind = "lsgan" if "ls" in flags else "bce"
        partner = {"adv+lncc": sim["lncc"], "adv+mi": sim["mi"]}.get(base)
        disc = _disc(2, SIZE, seed, "sn" in flags)

        def d_step(m, d, b, i):
            alpha = 0.2 if i < steps // 2 else 0.1        # the reference's fixed weight: 0.8, then 0.9
            ref = alpha * b["moving"] + (1 - alpha) * b["fixed"]
            real, fake = d(ref, b["fixed"]), d(m(b["moving"], b["fixed"]).warped, b["fixed"])
            return train.discriminator_loss(real, fake, kind=kind), train.discriminator_stats(real, fake, kind=kind)

        def g_step(m, d, b, i):
            o = m(b["moving"], b["fixed"])
            adv = train.generator_loss(d(o.warped, b["fixed"]), kind=kind)
            loss = adv + LAM * regularizers.diffusion(o.flow)
            if partner is not None:
                loss = loss + partner(o.warped, b["fixed"])
            return loss, {"adv": adv.item()}
        h = train.fit_adversarial(net, disc, g_step, d_step, pool, steps, lr_g=3e-3,
                                  lr_d=1e-4 if "lowd" in flags else 1e-3, seed=seed, progress=False,
                                  grad_clip=1.0, lr_schedule=sched)
        extra = {"d_loss_last50": _tail(h, "d_loss"), "d_acc_last50": _tail(h, "d_acc")}
    seconds = time.perf_counter() - t0
    res = _evaluate(lambda p: net.register(p["moving"], p["fixed"]), test)
    return {**res, **extra, "seconds": seconds}


# ------------------------------------------------------------------------------------------ Yan et al.
MAX_ANGLE, MAX_SHIFT = math.radians(20), 0.15


def _rigid_batch(t, n: int, g: torch.Generator) -> dict:
    b = data.pair_batch(n, g, template=t, magnitude=0.0, contrast="pd", augment=False, labels=False)
    theta = torch.cat([(torch.rand(n, 1, generator=g) * 2 - 1) * MAX_ANGLE,
                       (torch.rand(n, 2, generator=g) * 2 - 1) * MAX_SHIFT], 1)
    m = spatial.params_to_matrix(theta, "rigid", RIGID_SIZE)
    moving = spatial.resize_image(b["moving"], RIGID_SIZE)
    return {"moving": spatial.warp_affine(moving, torch.linalg.inv(m), padding="zeros"),   # warp by m re-aligns it
            "fixed": spatial.resize_image(b["fixed"], RIGID_SIZE), "params": theta,
            "mask": spatial.resize_image(b["fixed_mask"], RIGID_SIZE)}


def _misalignment(theta_a, theta_b, mask) -> torch.Tensor:
    """Mean distance (voxels of RIGID_SIZE) between the two transforms' images of the fixed brain's voxels."""
    ys, xs = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) for s in RIGID_SIZE), indexing="ij")
    pts = torch.stack([ys, xs, torch.ones_like(xs)], -1).reshape(-1, 3)
    ma, mb = (spatial.params_to_matrix(th, "rigid", RIGID_SIZE) for th in (theta_a, theta_b))
    dist = ((pts @ ma.transpose(1, 2)) - (pts @ mb.transpose(1, 2)))[..., :2].norm(dim=-1)
    inside = mask.reshape(mask.shape[0], -1) > 0.5
    return (dist * inside).sum(1) / inside.sum(1)


def run_yan(arm: str, seed: int, steps: int) -> dict:
    t = _template()
    test = _rigid_batch(t, 64, torch.Generator().manual_seed(data.SPLIT_SEEDS["test"]))
    g = torch.Generator().manual_seed(data.SPLIT_SEEDS["train"] + seed)
    pool = [_rigid_batch(t, 16, g) for _ in range(steps // 2)]

    def warp(img, theta):
        return spatial.warp_affine(img, spatial.params_to_matrix(theta, "rigid", RIGID_SIZE), padding="zeros")

    torch.manual_seed(100 + seed)
    net = AffineRegressor(RegressorConfig(ndim=2, output="rigid"))
    name, _, w = arm.partition(":")
    w = float(w) if w else 0.0
    t0 = time.perf_counter()
    disc, extra = None, {}
    if name == "mse":
        train.fit(net, lambda m, b: ((m(b["moving"], b["fixed"]) - b["params"]) ** 2).mean(), pool, steps=steps,
                  lr=1e-3, seed=seed, progress=False)
    else:
        disc = _disc(2, RIGID_SIZE, seed, True)
        w_mse = 0.0 if name == "advonly" else 1.0

        def d_step(m, d, b, i):
            real = d(warp(b["moving"], b["params"]), b["fixed"])
            fake = d(warp(b["moving"], m(b["moving"], b["fixed"])), b["fixed"])
            return train.discriminator_loss(real, fake), train.discriminator_stats(real, fake)

        def g_step(m, d, b, i):
            theta = m(b["moving"], b["fixed"])
            adv = train.generator_loss(d(warp(b["moving"], theta), b["fixed"]))
            return w_mse * ((theta - b["params"]) ** 2).mean() + w * adv, {"adv": adv.item()}
        h = train.fit_adversarial(net, disc, g_step, d_step, pool, steps, lr_g=1e-3, lr_d=1e-3, seed=seed,
                                  progress=False)
        extra = {"d_loss_last50": _tail(h, "d_loss"), "d_acc_last50": _tail(h, "d_acc")}
    seconds = time.perf_counter() - t0
    net.eval()
    with torch.no_grad():
        theta = net(test["moving"], test["fixed"])
        err = _misalignment(theta, test["params"], test["mask"])
        out = {"misalignment": float(err.mean()), "misalignment_median": float(err.median()),
               "angle_deg": float((theta[:, 0] - test["params"][:, 0]).abs().mean() * 180 / math.pi),
               "identity_misalignment": float(_misalignment(torch.zeros_like(theta), test["params"],
                                                            test["mask"]).mean())}
        if disc is not None:
            from scipy.stats import spearmanr
            disc.eval()
            gg = torch.Generator().manual_seed(7)
            scores, mis = [], []
            for k in range(4):
                pert = torch.cat([(torch.rand(64, 1, generator=gg) * 2 - 1) * MAX_ANGLE,
                                  (torch.rand(64, 2, generator=gg) * 2 - 1) * MAX_SHIFT], 1) * (k / 3)
                th = test["params"] + pert
                scores.append(disc(warp(test["moving"], th), test["fixed"]).mean(dim=(1, 2, 3)))
                mis.append(_misalignment(th, test["params"], test["mask"]))
            out["spearman_score_vs_misalignment"] = float(spearmanr(torch.cat(mis).numpy(),
                                                                    torch.cat(scores).numpy()).statistic)
    return {**out, **extra, "seconds": seconds}


# ------------------------------------------------------------------------------------------- Hu et al.
def run_hu(arm: str, seed: int, steps: int) -> dict:
    t = _template()
    present = metrics.present_labels(t.labels)
    lut = torch.zeros(int(t.labels.max()) + 1, dtype=torch.long)
    for c, lab in enumerate(present, 1):
        lut[lab] = c

    def maps(labels):
        return metrics.one_hot(lut[labels], range(1, len(present) + 1))

    def dice_loss(a, b):
        return 1 - similarity.soft_dice(a, b)

    def pool2(x, s):
        return F.avg_pool2d(x, s, ceil_mode=True) if s > 1 else x

    def label_loss(w, f):
        return sum(dice_loss(pool2(w, s), pool2(f, s)) for s in (1, 2, 4, 8)) / 4

    test = [data.pair_batch(1, data.SPLIT_SEEDS["test"] + i, template=t) for i in range(N_TEST)]
    g = torch.Generator().manual_seed(data.SPLIT_SEEDS["train"] + seed)
    pool = [data.pair_batch(4, g, template=t) for _ in range(steps // 2)]
    net, sched = _vm(seed), train.decay_schedule(steps, 0.75)
    name, _, w = arm.partition(":")
    w = float(w) if w else 0.0
    t0 = time.perf_counter()
    extra = {}
    if name != "adv":
        def step(m, b):
            if name == "supervised":
                o = m(b["moving"], b["fixed"])
                return (((o.flow - b["displacement"]) ** 2).sum(1, keepdim=True) * b["fixed_mask"]).mean()
            o = m(b["moving"], b["fixed"], labels=maps(b["moving_labels"]))
            loss = label_loss(o.warped_labels, maps(b["fixed_labels"]))
            if name == "diffusion":
                loss = loss + w * regularizers.diffusion(o.flow)
            elif name == "bending":
                loss = loss + w * regularizers.bending_energy(o.flow)
            return loss
        train.fit(net, step, pool, steps=steps, lr=3e-3, seed=seed, grad_clip=1.0, progress=False, lr_schedule=sched)
    else:
        disc = _disc(2, SIZE, seed, True)

        def d_step(m, d, b, i):
            real, fake = d(b["displacement"]), d(m(b["moving"], b["fixed"]).flow)
            return train.discriminator_loss(real, fake), train.discriminator_stats(real, fake)

        def g_step(m, d, b, i):
            o = m(b["moving"], b["fixed"], labels=maps(b["moving_labels"]))
            adv = train.generator_loss(d(o.flow))
            return label_loss(o.warped_labels, maps(b["fixed_labels"])) + w * adv, {"adv": adv.item()}
        h = train.fit_adversarial(net, disc, g_step, d_step, pool, steps, lr_g=3e-3, lr_d=1e-3, seed=seed,
                                  progress=False, grad_clip=1.0, lr_schedule=sched)
        extra = {"d_loss_last50": _tail(h, "d_loss"), "d_acc_last50": _tail(h, "d_acc")}
    seconds = time.perf_counter() - t0
    res = _evaluate(lambda p: net.register(p["moving"], p["fixed"]), test)
    truth = _evaluate(lambda p: p["displacement"], test)
    return {**res, **extra, "seconds": seconds, "truth_sdlogj": truth["sdlogj"], "truth_bending": truth["bending"],
            "truth_diffusion": truth["diffusion"]}


# ------------------------------------------------------------------------------------------------ main
def _load() -> dict:
    return json.loads(OUT.read_text()) if OUT.exists() else {"runs": {}}


def show(res: dict) -> None:
    keys = ("dice", "epe", "fold", "sdlogj", "misalignment", "spearman_score_vs_misalignment", "d_loss_last50")
    groups: dict = {}
    for key, run in res["runs"].items():
        part, arm, _seed = key.rsplit("|", 2)
        groups.setdefault((part, arm), []).append(run)
    for (part, arm), runs in sorted(groups.items()):
        cells = []
        for k in keys:
            v = [r[k] for r in runs if k in r]
            if v:
                cells.append(f"{k} {np.mean(v):.3f}±{np.std(v, ddof=1) if len(v) > 1 else 0:.3f}")
        print(f"{part:12s} {arm:16s} n={len(runs)}  " + "  ".join(cells))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", choices=("fan", "yan", "hu", "show"))
    ap.add_argument("--arms", nargs="*")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--contrast", choices=("pd", "t2"), default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    res = _load()
    if args.part == "show":
        show(res)
        return 0
    torch.set_num_threads(args.threads)
    default = {"fan": ["lncc", "adv-sn", "adv+lncc-sn"], "yan": ["mse", "adv:0.1", "advonly:0.1"],
               "hu": ["none", "diffusion:0.1", "bending:1", "adv:0.1", "supervised"]}[args.part]
    for seed in args.seeds:
        for arm in args.arms or default:
            if args.part == "fan":
                out = run_fan(arm, seed, args.steps, args.contrast)
                part = "fan" + (f"-{args.contrast}" if args.contrast else "")
            elif args.part == "yan":
                out, part = run_yan(arm, seed, args.steps), "yan"
            else:
                out, part = run_hu(arm, seed, args.steps), "hu"
            out.update(steps=args.steps, threads=args.threads)
            res = _load()                                  # another invocation may have written meanwhile
            res["runs"][f"{part}|{arm}|{seed}"] = out
            res.update(machine=f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
                       date=time.strftime("%Y-%m-%d %H:%M"), torch=torch.__version__)
            OUT.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
            print(f"{part} {arm} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in out.items()
                                                          if isinstance(v, float)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
