# Times lesson 10's training steps (VM at 48 x 64, batch 4, LNCC; one Fan adversarial step) with 1 and 2 torch threads,
# interleaved, 5 repeats of 20 steps; prints the minimum and median per step. Run alone on a quiet machine:
#   .venv/bin/python drafts/10_adversarial_registration/threads_probe.py
import sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import torch
from course_lib import data, similarity, regularizers, train
from course_lib.networks import VoxelMorph, VoxelMorphConfig, Discriminator, DiscriminatorConfig
from course_lib.networks.unet import VM1_DECODER, VM_ENCODER
T = data.coarsen(data.template_slices("axial", size=(96, 128)), 2)
g = torch.Generator().manual_seed(1)
b = data.pair_batch(4, g, template=T, augment=False, magnitude=2.0, spacing=6, subject_magnitude=1.0)
cl = torch.channels_last
mv, fx = b["moving"].contiguous(memory_format=cl), b["fixed"].contiguous(memory_format=cl)
net = VoxelMorph(VoxelMorphConfig(ndim=2, flow_init_std=1e-2, encoder=VM_ENCODER, decoder=VM1_DECODER)).to(memory_format=cl)
disc = Discriminator(DiscriminatorConfig(ndim=2, in_channels=2, input_size=T.shape, spectral_norm=True))
opt = torch.optim.Adam(list(net.parameters()) + list(disc.parameters()), 1e-4)
NCC = similarity.as_loss(similarity.lncc)
def lncc_step():
    out = net(mv, fx); loss = NCC(out.warped, fx) + 0.1 * regularizers.diffusion(out.flow)
    opt.zero_grad(); loss.backward(); opt.step()
def adv_step():
    with torch.no_grad():
        w = net(mv, fx).warped
    l = train.discriminator_loss(disc(0.1 * mv + 0.9 * fx, fx), disc(w, fx)); opt.zero_grad(); l.backward(); opt.step()
    out = net(mv, fx); l = train.generator_loss(disc(out.warped, fx)); opt.zero_grad(); l.backward(); opt.step()
res = {}
for rep in range(5):
    for th in (1, 2):
        torch.set_num_threads(th)
        for name, f in (("lncc", lncc_step), ("adv", adv_step)):
            f()
            t0 = time.perf_counter()
            for _ in range(20):
                f()
            res.setdefault((name, th), []).append((time.perf_counter() - t0) / 20 * 1000)
for k, v in sorted(res.items()):
    print(k, "min %.1f ms, median %.1f ms" % (min(v), sorted(v)[len(v) // 2]))
