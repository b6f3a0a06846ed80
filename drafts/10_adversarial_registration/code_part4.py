HU_SETUP = r'''
_, NAMES = data.load_atlas("AAL")
PRESENT = metrics.present_labels(TEMPLATE.labels)              # the atlas labels of the (coarse) template
GROUPS = data.label_groups(NAMES, PRESENT)                     # {"frontal": [labels], ...}: lobes, deep grey, ...
LUT = torch.zeros(int(TEMPLATE.labels.max()) + 1, dtype=torch.long, device=DEVICE)
for k, labels in enumerate(GROUPS.values(), start=1):
    LUT[labels] = k                                            # atlas label -> its group's channel


def label_maps(labels):
    # integer labels (N, 1, *S) -> one-hot maps of the structure groups (N, G, *S): the training labels
    return metrics.one_hot(LUT[labels], range(1, len(GROUPS) + 1))


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
train_recipe("supervised (simulated fields)", supervised_step, steps=3 * STEPS // 2)   # 1.5x: lesson 08's fair budget
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

PRE5 = r'''
# NBVAL_IGNORE_OUTPUT
NONE = "data term, no regulariser"
gained = per_seed(NONE) - RESULTS["unregistered"]["Dice"].mean()
print(f"the data term alone gains {gained.mean():+.3f} Dice over the unregistered pairs (per seed {np.round(gained, 3)})")
for n in HU[1:4]:
    cost = robust_difference(per_seed(NONE), per_seed(n))
    ratio = per_seed(n, "SDlogJ") / per_seed(NONE, "SDlogJ")
    print(f"{n:28s} Dice cost {cost.difference:+.3f} (pooled seed sd {cost.pooled_sd:.3f}); "
          f"SDlogJ / none's per seed {np.round(ratio, 2)}")
'''

CP5 = r'''
# NBVAL_CHECK_OUTPUT
adv = "data term + adversarial"
smoother = robust_difference(np.log(per_seed(NONE, "SDlogJ")), np.log(per_seed(adv, "SDlogJ")))   # log SDlogJ ratio
cost = robust_difference(per_seed(NONE), per_seed(adv))              # the Dice the regulariser costs
MARGIN = 0.5 * gained.mean()                                         # a regulariser may cost up to half the gain
config.record_checkpoint("10.5", dice_cost=cost.difference, dice_cost_sd=cost.pooled_sd, dice_gained=gained.mean(),
                         log_sdlogj_ratio=smoother.difference, log_sdlogj_sd=smoother.pooled_sd)
assert cost.difference > max(MARGIN, 2 * cost.pooled_sd), (
    f"the adversarial regulariser no longer costs more than half the data term's gain ({MARGIN:.3f} Dice) beyond the "
    f"seed spread: cost {cost.difference:+.3f} (pooled sd {cost.pooled_sd:.3f}); log SDlogJ ratio "
    f"{smoother.difference:+.2f} (sd {smoother.pooled_sd:.2f}). Hu et al.'s claim may hold here now: update the text "
    f"and this check")
print("checkpoint 10.5 passed: as measured, the adversarial regulariser does not give smooth fields at a small Dice "
      "cost: it costs more than half of what the data term gained, beyond twice the seed spread")
'''

STATS = r'''
def field_stat_gap(name, metric):
    # per seed: |log(statistic of the predicted fields / statistic of the simulator's fields)|, 0 = the same
    return np.abs(np.log(per_seed(name, metric) / RESULTS["true field"][metric].mean()))


for n in HU:
    print(f"{n:30s} distance to the simulator's SDlogJ {field_stat_gap(n, 'SDlogJ').mean():.2f}, "
          f"bending energy {field_stat_gap(n, 'bending').mean():.2f} (|log ratio|, mean over seeds); "
          f"EPE {per_seed(n, 'EPE').mean():.2f} voxels")
sup, adv = "supervised (simulated fields)", "data term + adversarial"
epe_sup, epe_adv = per_seed(sup, "EPE"), per_seed(adv, "EPE")
epe_gap = robust_difference(epe_adv, epe_sup)
print(f"EPE, adversarial - supervised: {epe_gap.difference:+.3f} voxels (pooled seed sd {epe_gap.pooled_sd:.3f}; "
      f"beyond twice the sd: {epe_gap.difference > 2 * epe_gap.pooled_sd}); per seed {np.round(epe_adv - epe_sup, 3)}")
'''

CP6 = r'''
# NBVAL_CHECK_OUTPUT
config.record_checkpoint("10.6", epe_adv_minus_sup=epe_gap.difference, epe_sd=epe_gap.pooled_sd,
                         min_seed_gap=float((epe_adv - epe_sup).min()),
                         sdlogj_gap_adv=field_stat_gap(adv, "SDlogJ").mean(), sdlogj_gap_sup=field_stat_gap(sup, "SDlogJ").mean())
assert (epe_sup < epe_adv).all(), (
    f"the supervised model's end-point error is no longer below the adversarially regularised model's in every seed: "
    f"supervised {np.round(epe_sup, 3)}, adversarial {np.round(epe_adv, 3)} voxels")
print("checkpoint 10.6 passed: in every seed, supervision by the simulated fields gives a lower end-point error "
      "than the adversarial regulariser, paired by seed (same initial weights, same pairs)")
'''

TIMING = r'''
# NBVAL_IGNORE_OUTPUT
print("training time per recipe (all seeds): " + ", ".join(f"{k} {v:.0f} s" for k, v in TIMES.items()))
print(f"lesson run time so far: {time.time() - T_START:.0f} s")
'''
