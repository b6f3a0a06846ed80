# Probe of the draft's section 4 (Hu et al.): runs its cells as they stand (data term = labels + LNCC), then,
# with an argument "r1", an R1 variant of the adversarial recipe. Set REG["adversarial"] by editing code_part4.py.
#   OMP_NUM_THREADS=1 COURSE_PROFILE=quick .venv/bin/python drafts/10_adversarial_registration/probe_part3.py [r1]
import sys, time
import matplotlib; matplotlib.use("Agg")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
D = str(__import__("pathlib").Path(__file__).resolve().parent) + "/"
ns = {}
for part in ("code_part1.py", "code_part2.py", "code_part3.py", "code_part4.py"):
    exec(open(D + part).read(), ns)
g = {}
for k in ("SETUP", "DATA", "HARNESS", "EX1_SOL"):
    exec(ns[k].replace("%matplotlib inline", ""), g)
exec("NCC = similarity.as_loss(similarity.lncc)", g)
exec(ns["TABLE1"].split("MONO = ")[0], g)           # table()
for k in ("HU_SETUP", "EX3_SOL", "HU", "CP5", "STATS", "CP6"):
    src = ns[k]
    if k.startswith("CP"):
        src = "try:\n" + "\n".join("    " + l for l in src.strip().splitlines()) + "\nexcept AssertionError as e:\n    print('ASSERTION', e)"
    t0 = time.time()
    exec(src, g)
    print(f"--- {k} {time.time() - t0:.0f} s", flush=True)
print("D acc", g["np"].round(g["tail"]("data term + adversarial", "d_acc"), 2))
if len(sys.argv) > 1:
    train = g["train"]

    def d_r1(net, disc, b, i):
        x = b["displacement"].detach().requires_grad_(True)
        real = disc(x)
        fake = disc(net(b["moving"], b["fixed"]).flow)
        return train.discriminator_loss(real, fake) + train.r1_penalty(real, x, gamma=1.0), train.discriminator_stats(real, fake)
    g["train_recipe"]("adversarial R1", g["hu_g_step"], d_r1, in_channels=g["NDIM"])
    g["table"](["adversarial R1"], ("Dice", "EPE", "fold %", "SDlogJ", "bending"))
    print("per seed SDlogJ", g["per_seed"]("adversarial R1", "SDlogJ"), "Dice", g["per_seed"]("adversarial R1"))
for n in g["HU"]:
    print(n, "Dice", g["np"].round(g["per_seed"](n), 3), "SDlogJ", g["np"].round(g["per_seed"](n, "SDlogJ"), 3),
          "EPE", g["np"].round(g["per_seed"](n, "EPE"), 3), "fold", g["np"].round(g["per_seed"](n, "fold %"), 3))
