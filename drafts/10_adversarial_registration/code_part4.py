HU_SETUP = r'''
PRESENT = metrics.present_labels(TEMPLATE.labels)              # the atlas labels of the (coarse) template
LUT = torch.zeros(int(TEMPLATE.labels.max()) + 1, dtype=torch.long, device=DEVICE)
LUT[PRESENT] = torch.arange(1, len(PRESENT) + 1, device=DEVICE)


def label_maps(labels):
    # integer labels (N, 1, *S) -> one-hot maps of every template label (N, C, *S)
    return metrics.one_hot(LUT[labels], range(1, len(PRESENT) + 1))


def label_loss(warped, target, scales=(1, 2, 4, 8)):
    # lesson 09's multi-scale soft Dice loss: 1 - mean Dice of the maps, averaged over pooling factors
    pool = F.avg_pool2d if NDIM == 2 else F.avg_pool3d
    total = 0.0
    for s in scales:
        a, b = (x if s == 1 else pool(x, s, ceil_mode=True) for x in (warped, target))
        total = total + 1 - similarity.soft_dice(a, b)
    return total / len(scales)


def data_term(net, b):
    # the data term of every recipe of this section: lesson 09's label loss plus LNCC (lesson 09's semi-supervised
    # loss; see the text for why not the labels alone). Labels enter the loss only, never the network.
    out = net(b["moving"], b["fixed"], labels=label_maps(b["moving_labels"]))
    lab = label_loss(out.warped_labels, label_maps(b["fixed_labels"]))
    sim = NCC(out.warped, b["fixed"])
    return out, lab + sim, {"label": lab.item(), "similarity": sim.item()}


def label_step(regularizer=None, weight=0.0):
    # the data term plus weight * regularizer(flow), or no regulariser
    def step(net, b):
        out, loss, logs = data_term(net, b)
        return loss + (weight * regularizer(out.flow) if regularizer is not None else 0.0), logs
    return step


REG = {"diffusion": 0.1, "bending": 1.0, "adversarial": 0.1}   # the regularisers' weights
train_recipe("data term, no regulariser", label_step())
train_recipe("data term + diffusion", label_step(regularizers.diffusion, REG["diffusion"]))
train_recipe("data term + bending energy", label_step(regularizers.bending_energy, REG["bending"]))
'''

EX3_STUB = r'''
# NBVAL_RAISES_EXCEPTION
def hu_d_step(net, disc, b, i):
    # Hu et al.'s discriminator step: the simulator's field b["displacement"] is real, the network's field is fake.
    # Return (loss, train.discriminator_stats(real, fake)).
    # YOUR CODE HERE
    raise NotImplementedError("Exercise 3: disc(true field), disc(predicted field), train.discriminator_loss")


hu_d_step(MODELS["data term + diffusion"][0], new_disc(0, in_channels=NDIM), BATCHES[(None, SEEDS[0])][0], 0)
'''

EX3_SOL = r'''
def hu_d_step(net, disc, b, i):
    real = disc(b["displacement"])                                   # simulated fields
    fake = disc(net(b["moving"], b["fixed"]).flow)                   # predicted fields (generator frozen)
    return train.discriminator_loss(real, fake), train.discriminator_stats(real, fake)


def hu_g_step(net, disc, b, i):
    out, loss, logs = data_term(net, b)
    adv = train.generator_loss(disc(out.flow))
    return loss + REG["adversarial"] * adv, {**logs, "adversarial": adv.item()}


loss, stats = hu_d_step(MODELS["data term + diffusion"][0], new_disc(0, in_channels=NDIM), BATCHES[(None, SEEDS[0])][0], 0)
print(f"an untrained field discriminator: loss {loss.item():.4f}, accuracy {stats['d_acc']:.2f}")
'''

HU = r'''
def supervised_step(net, b):
    # lesson 08's supervised baseline: squared end-point error to the simulated field, in the fixed brain
    out = net(b["moving"], b["fixed"])
    return (((out.flow - b["displacement"]) ** 2).sum(1, keepdim=True) * b["fixed_mask"]).mean()


train_recipe("data term + adversarial", hu_g_step, hu_d_step, in_channels=NDIM)
train_recipe("supervised (simulated fields)", supervised_step)
HU = ["data term, no regulariser", "data term + diffusion", "data term + bending energy", "data term + adversarial",
      "supervised (simulated fields)"]
table(["unregistered"] + HU + ["true field"], ("Dice", "EPE", "fold %", "SDlogJ", "bending"))
'''

FIG_HU = r'''
p = TEST[0]
fig, axes = plt.subplots(1, 6, figsize=(15, 2.9))
fields = [("true field d", p["displacement"])] + [(n.replace("data term + ", "+ ").replace("data term, ", ""),
                                                   MODELS[n][0].register(p["moving"], p["fixed"]).detach()) for n in HU]
for ax, (title, u) in zip(axes, fields):
    viz.plot_grid(u, ax, step=2, title=title)
fig.suptitle("Held-out pair 0, seed 0's models: the deformed grid of each field (every 2nd line)")
fig.tight_layout()
plt.show()

fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
for ax, metric in zip(axes, ("Dice", "SDlogJ", "bending")):
    for j, n in enumerate(HU):
        v = per_seed(n, metric)
        ax.plot(np.full(len(v), j), v, "o", color=f"C{j}")
    ax.axhline(RESULTS["true field"][metric].mean(), color="k", ls="--", lw=1, label="true field")
    ax.axhline(RESULTS["unregistered"][metric].mean(), color="gray", ls=":", lw=1, label="unregistered")
    ax.set_xticks(range(len(HU)), ["none", "diffusion", "bending", "adversarial", "supervised"], rotation=20)
    ax.set(title=f"held-out {metric}", ylabel=metric)
    if metric != "Dice":
        ax.set_yscale("log")
axes[0].legend(fontsize=8)
fig.suptitle("Label-driven training with four regularisers, and the supervised model: one point per seed")
fig.tight_layout()
plt.show()
'''

CP5 = r'''
# NBVAL_CHECK_OUTPUT
none_sd, adv_sd = per_seed("data term, no regulariser", "SDlogJ"), per_seed("data term + adversarial", "SDlogJ")
smoother = robust_difference(np.log(none_sd), np.log(adv_sd))        # on a log scale: ratios of SDlogJ
dice_gap = robust_difference(per_seed("data term, no regulariser"), per_seed("data term + adversarial"))
DICE_MARGIN = 0.05                                                    # the Dice a regulariser may cost
config.record_checkpoint("10.5", log_sdlogj_ratio=smoother.difference, log_sdlogj_sd=smoother.pooled_sd,
                         dice_cost=dice_gap.difference, dice_cost_sd=dice_gap.pooled_sd)
assert smoother.difference > 2 * smoother.pooled_sd and dice_gap.difference < DICE_MARGIN, (
    f"the adversarial regulariser: SDlogJ {np.round(adv_sd, 3)} vs none {np.round(none_sd, 3)}; Dice cost "
    f"{dice_gap.difference:+.3f} (margin {DICE_MARGIN})")
print(f"checkpoint 10.5 passed: the adversarial regulariser gives smoother fields than none (lower SDlogJ beyond "
      f"twice the seed spread) at a Dice cost below {DICE_MARGIN}")
'''

STATS = r'''
def field_stat_gap(name, metric):
    # per seed: |log(statistic of the predicted fields / statistic of the simulator's fields)|, 0 = the same
    return np.abs(np.log(per_seed(name, metric) / RESULTS["true field"][metric].mean()))


for n in HU:
    print(f"{n:30s} distance to the simulator's SDlogJ {field_stat_gap(n, 'SDlogJ').mean():.2f}, "
          f"bending energy {field_stat_gap(n, 'bending').mean():.2f} (|log ratio|, mean over seeds); "
          f"EPE {per_seed(n, 'EPE').mean():.2f} voxels")
'''

CP6 = r'''
# NBVAL_CHECK_OUTPUT
sup, adv = "supervised (simulated fields)", "data term + adversarial"
epe_gap = robust_difference(per_seed(adv, "EPE"), per_seed(sup, "EPE"))
config.record_checkpoint("10.6", epe_adv_minus_sup=epe_gap.difference, epe_sd=epe_gap.pooled_sd,
                         sdlogj_gap_adv=field_stat_gap(adv, "SDlogJ").mean(), sdlogj_gap_sup=field_stat_gap(sup, "SDlogJ").mean())
assert epe_gap.difference > 2 * epe_gap.pooled_sd, (
    f"the supervised model's field error is no longer below the adversarially regularised one's beyond the spread: "
    f"EPE {per_seed(sup, 'EPE')} vs {per_seed(adv, 'EPE')}")
print("checkpoint 10.6 passed: supervision by the simulated fields gives a lower end-point error than the "
      "adversarial regulariser, beyond twice the seed spread")
'''

TIMING = r'''
# NBVAL_IGNORE_OUTPUT
print("training time per recipe (all seeds): " + ", ".join(f"{k} {v:.0f} s" for k, v in TIMES.items()))
print(f"lesson run time so far: {time.time() - T_START:.0f} s")
'''
