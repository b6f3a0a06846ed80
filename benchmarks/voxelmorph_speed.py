"""Speed of the course's VoxelMorph vs an established open implementation (SYLLABUS S6, issue 5).

    python benchmarks/voxelmorph_speed.py                       # full profile size, the GPU
    python benchmarks/voxelmorph_speed.py --size 32 40 32 --device cpu --steps 3   # a smoke test

For each model we time, on one pair at a time (batch 1, the paper's setting):

* **training**: iterations per second of forward + loss (local NCC, window 9, + 0.01 · diffusion of
  the flow, the same loss function for every model) + backward + Adam step;
* **inference**: milliseconds per pair of ``model(moving, fixed)`` in ``torch.inference_mode``;
* peak GPU memory of the training step.

Models, all with the VoxelMorph paper's widths (encoder 16-32-32-32, decoder 32-32-32-32-32-16-16):

* ``course`` — :class:`course_lib.networks.VoxelMorph`, plain (displacement) and diffeomorphic
  (velocity, 7 squarings on a grid twice coarser);
* ``monai`` — ``monai.networks.nets.VoxelMorph`` with ``VoxelMorphUNet`` (16, 32, 32, 32, 32, 32) /
  final (16, 16), plain (``integration_steps=0``) and diffeomorphic (7 steps, ``half_res=True``),
  when MONAI is installed (``pip install monai``);

each in ``fp32`` and in ``fast`` mode (bf16 autocast + channels-last memory layout, on CUDA; with
``--compile``, also ``torch.compile``). The same tricks are applied to every model, so ratios
compare the implementations, not the settings. Timings use CUDA events after warm-up, median over
``--steps`` iterations. Results go to ``benchmarks/voxelmorph_speed_<device>.md`` and ``.json``.

Inputs are smooth random volumes in [0, 1] (speed does not depend on the content, and the GPU
machine needs no course data); ``--data template`` uses simulated brain pairs instead.

The script needs only torch, numpy, tqdm and (for the comparison) monai. On a machine without
the package index, bring the wheels: ``pip download --no-deps monai tqdm -d .whl`` here, then
``pip install --no-deps .whl/*.whl`` there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib import config, regularizers, similarity  # noqa: E402
from course_lib.networks import VoxelMorph, VoxelMorphConfig  # noqa: E402

TARGET_IT_S, TARGET_MS = 10.0, 20.0          # SYLLABUS S6, at 160×192×160 on one modern GPU


def loss_fn(warped, fixed, flow):
    return -similarity.lncc(warped, fixed, window=9) + 0.01 * regularizers.diffusion(flow)


# ----------------------------------------------------------------------------- the models

class MonaiAdapter(torch.nn.Module):
    """MONAI's VoxelMorph with the course's output order: (warped, displacement, flow)."""

    def __init__(self, ndim: int, diffeomorphic: bool):
        super().__init__()
        from monai.networks.nets import VoxelMorph as MonaiVoxelMorph, VoxelMorphUNet
        backbone = VoxelMorphUNet(spatial_dims=ndim, in_channels=2, unet_out_channels=32,
                                  channels=(16, 32, 32, 32, 32, 32), final_conv_channels=(16, 16))
        self.net = MonaiVoxelMorph(backbone=backbone, integration_steps=7 if diffeomorphic else 0,
                                   half_res=diffeomorphic, spatial_dims=ndim)
        self.net.backbone.register_forward_hook(self._keep_flow)
        self._flow = None

    def _keep_flow(self, module, inputs, output):
        self._flow = output

    def forward(self, moving, fixed):
        warped, ddf = self.net(moving, fixed)
        return warped, ddf, self._flow


class CourseAdapter(torch.nn.Module):
    def __init__(self, ndim: int, diffeomorphic: bool):
        super().__init__()
        self.net = VoxelMorph(VoxelMorphConfig(ndim=ndim, diffeomorphic=diffeomorphic, int_downsize=2))

    def forward(self, moving, fixed):
        out = self.net(moving, fixed)
        return out.warped, out.displacement, out.flow


def build(impl: str, ndim: int, diffeomorphic: bool) -> torch.nn.Module:
    return (CourseAdapter if impl == "course" else MonaiAdapter)(ndim, diffeomorphic)


# ----------------------------------------------------------------------------- timing

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, steps: int, warmup: int) -> list[float]:
    """Seconds per call of ``fn`` (CUDA events on a GPU, wall clock otherwise)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return times


def measure(impl: str, diffeomorphic: bool, fast: bool, compile_: bool, moving, fixed, args) -> dict:
    device = moving.device
    ndim = moving.dim() - 2
    torch.manual_seed(0)
    model = build(impl, ndim, diffeomorphic).to(device)
    memory_format = torch.channels_last_3d if ndim == 3 else torch.channels_last
    use_amp = fast and device.type == "cuda"
    if fast and device.type == "cuda":
        model = model.to(memory_format=memory_format)
        moving = moving.contiguous(memory_format=memory_format)
        fixed = fixed.contiguous(memory_format=memory_format)
    run = torch.compile(model) if compile_ else model
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train_step():
        with autocast():
            warped, _, flow = run(moving, fixed)
            loss = loss_fn(warped.float(), fixed, flow.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer():
        with torch.inference_mode(), autocast():
            run(moving, fixed)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    t_train = _timed(train_step, device, args.steps, args.warmup)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    model.eval()
    t_infer = _timed(infer, device, max(args.steps, 10), args.warmup)
    return {
        "impl": impl, "mode": "diffeomorphic" if diffeomorphic else "plain",
        "precision": ("bf16+channels-last" if use_amp else "fp32") + ("+compile" if compile_ else ""),
        "params": sum(p.numel() for p in model.parameters()),
        "train_it_s": 1 / statistics.median(t_train), "infer_ms": 1000 * statistics.median(t_infer),
        "train_peak_mb": peak,
    }


def inputs(args, device):
    size = tuple(args.size)
    if args.data == "template":
        from course_lib import data
        template = data.template_volume(resolution=1 if size[0] > 100 else 2, size=size)
        b = data.pair_batch(1, 0, template=template, device=device)
        return b["moving"], b["fixed"]
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(2, 1, *[max(2, s // 8) for s in size], generator=g)
    mode = "trilinear" if len(size) == 3 else "bilinear"
    vols = torch.nn.functional.interpolate(coarse, size=size, mode=mode, align_corners=True).to(device)
    return vols[:1], vols[1:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, nargs="+", default=list(config.PROFILES["full"].size_3d))
    ap.add_argument("--device", default=None, help="default: config.device()")
    ap.add_argument("--steps", type=int, default=30, help="timed iterations (median)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--impl", nargs="+", default=["course", "monai"], choices=["course", "monai"])
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile'd models")
    ap.add_argument("--data", choices=["random", "template"], default="random")
    ap.add_argument("--out", default=None, help="output stem (default benchmarks/voxelmorph_speed_<device>)")
    args = ap.parse_args(argv)
    if len(args.size) not in (2, 3):
        ap.error(f"--size needs 2 or 3 numbers, got {args.size}")
    device = torch.device(args.device) if args.device else config.device()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    impls = list(args.impl)
    if "monai" in impls:
        try:
            import monai  # noqa: F401
        except ImportError:
            print("monai is not installed: measuring the course's model only (pip install monai)")
            impls.remove("monai")
    moving, fixed = inputs(args, device)
    speeds = [False, True] if device.type == "cuda" else [False]
    compiles = [False, True] if args.compile else [False]
    rows = []
    for diffeomorphic in (False, True):
        for fast in speeds:
            for compile_ in compiles:
                for impl in impls:
                    try:
                        row = measure(impl, diffeomorphic, fast, compile_, moving, fixed, args)
                    except Exception as exc:                     # report, keep measuring the rest
                        row = {"impl": impl, "mode": "diffeomorphic" if diffeomorphic else "plain",
                               "precision": "fast" if fast else "fp32", "error": f"{type(exc).__name__}: {exc}"}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    meta = {"device": name, "size": list(args.size), "torch": torch.__version__, "steps": args.steps,
            "data": args.data, "date": time.strftime("%Y-%m-%d")}
    stem = Path(args.out) if args.out else ROOT / "benchmarks" / f"voxelmorph_speed_{device.type}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    stem.with_suffix(".md").write_text(report(meta, rows))
    print(report(meta, rows))
    return 0


def report(meta: dict, rows: list[dict]) -> str:
    lines = [f"# VoxelMorph speed: {meta['device']}, {'×'.join(map(str, meta['size']))}, batch 1",
             "", f"torch {meta['torch']}, {meta['data']} inputs, median of {meta['steps']} timed "
             f"iterations, {meta['date']}. Produced by `benchmarks/voxelmorph_speed.py`.", "",
             f"Targets (SYLLABUS S6, 160×192×160 on one GPU): ≥ {TARGET_IT_S:g} training it/s, "
             f"≤ {TARGET_MS:g} ms per pair.", "",
             "| implementation | mode | precision | parameters | train it/s | infer ms/pair | train peak MB |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['impl']} | {r['mode']} | {r['precision']} | failed: {r['error'][:80]} | | | |")
            continue
        lines.append(f"| {r['impl']} | {r['mode']} | {r['precision']} | {r['params']:,} | "
                     f"{r['train_it_s']:.2f} | {r['infer_ms']:.1f} | {r['train_peak_mb']:.0f} |")
    ok = [r for r in rows if "error" not in r]
    ratios = []
    for r in ok:
        if r["impl"] != "course":
            continue
        ref = [o for o in ok if o["impl"] == "monai" and o["mode"] == r["mode"] and o["precision"] == r["precision"]]
        if ref:
            ratios.append(f"| {r['mode']} | {r['precision']} | {r['train_it_s'] / ref[0]['train_it_s']:.2f}× | "
                          f"{ref[0]['infer_ms'] / r['infer_ms']:.2f}× |")
    if ratios:
        lines += ["", "Course vs MONAI (> 1 = the course's model is faster):", "",
                  "| mode | precision | training speed ratio | inference speed ratio |", "|---|---|---:|---:|", *ratios]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
