MULTI = r'''
MI = similarity.as_loss(similarity.mutual_information)     # -MI, Parzen histogram of 32 bins


def mi_step(net, b):
    out = net(b["moving"], b["fixed"])
    sim = MI(out.warped, b["fixed"])
    return sim + LAM * regularizers.diffusion(out.flow), {"similarity": sim.item()}


RESULTS["unregistered (PD → T1)"] = evaluate(lambda p: torch.zeros_like(p["displacement"]), TEST_PD)
train_recipe("MI (PD → T1)", mi_step, contrast="pd", test=TEST_PD)
train_recipe("adversarial (PD → T1)", *fan_steps(), contrast="pd", test=TEST_PD)
for s in SEEDS:                                             # the multi-modal training pools are not needed again
    BATCHES.pop(("pd", s))
table(["unregistered (PD → T1)", "MI (PD → T1)", "adversarial (PD → T1)"])
print("discriminator accuracy over the last 50 steps, per seed: "
      + ", ".join(f"{n}: {np.round(tail(n, 'd_acc'), 2)}" for n in ("adversarial", "adversarial (PD → T1)")))
'''

FIG_MULTI = r'''
k = 0                                                      # held-out pair 0, first seed
p = TEST_PD[k]
u_mi = MODELS["MI (PD → T1)"][0].register(p["moving"], p["fixed"]).detach()
u_adv = MODELS["adversarial (PD → T1)"][0].register(p["moving"], p["fixed"]).detach()
fig, axes = plt.subplots(1, 5, figsize=(14, 3.1))
viz.show(p["moving"], axes[0], "moving (PD-like)")
viz.show(p["fixed"], axes[1], "fixed (T1)")
viz.show(fan_reference(p["moving"], p["fixed"], STEPS), axes[2], "Fan's reference R (α = 0.1)")
viz.show(spatial.warp(p["moving"], u_mi), axes[3], f"warped by MI "
         f"(Dice {SEEDED['MI (PD → T1)'][0]['Dice'][k]:.2f})")
viz.show(spatial.warp(p["moving"], u_adv), axes[4], f"warped by adversarial "
         f"(Dice {SEEDED['adversarial (PD → T1)'][0]['Dice'][k]:.2f})", colorbar="intensity (a.u.)")
fig.suptitle("Multi-modal: the real samples R are 90 % T1; no warp of a PD image looks like them")
fig.tight_layout()
plt.show()
'''

CP3 = r'''
# NBVAL_CHECK_OUTPUT
multi = per_seed("adversarial (PD → T1)")
unreg_pd = RESULTS["unregistered (PD → T1)"]["Dice"].mean()
acc = tail("adversarial (PD → T1)", "d_acc")
config.record_checkpoint("10.3", adversarial_pd_max=multi.max(), unregistered_pd=unreg_pd, d_acc_min=acc.min(),
                         mi_pd_mean=per_seed("MI (PD → T1)").mean())
assert multi.max() < unreg_pd and acc.min() > 0.9, (
    f"Fan et al.'s adversarial similarity on PD -> T1 no longer fails as described: Dice per seed {np.round(multi, 3)} "
    f"vs unregistered {unreg_pd:.3f}; discriminator accuracy (last 50 steps) {np.round(acc, 2)}")
print(f"checkpoint 10.3 passed: on PD -> T1 the discriminator wins (accuracy > 0.9) and the adversarial model "
      f"ends below the unregistered Dice on all {len(multi)} seeds")
'''

YAN_DATA = r'''
RIGID_SIZE = tuple(s // 2 for s in SHAPE)             # the regressor's input: half the lesson's size (quick: 24 x 32)
MAX_ANGLE, MAX_SHIFT = math.radians(20), 0.15         # rotations up to 20°, shifts up to 0.15 half-image
N_ANGLES = 1 if NDIM == 2 else 3
YAN_BATCH = 8 if QUICK else 4
RIGID_MM = SPACING * SHAPE[0] / RIGID_SIZE[0]           # mm per voxel of the regressor's grid


def rigid_batch(n, g):
    # n PD-like moving images of a subject, rigidly moved; the same subject's T1 as fixed image; true parameters
    b = data.pair_batch(n, g, template=TEMPLATE, device=DEVICE, augment=False, contrast="pd", labels=False,
                        **{**SIM, "magnitude": 0.0})                     # one subject per pair: no deformation
    theta = torch.cat([(torch.rand(n, N_ANGLES, generator=g) * 2 - 1) * MAX_ANGLE,
                       (torch.rand(n, NDIM, generator=g) * 2 - 1) * MAX_SHIFT], 1).to(DEVICE)
    m = spatial.params_to_matrix(theta, "rigid", RIGID_SIZE)
    moving = spatial.resize_image(b["moving"], RIGID_SIZE)
    return {"moving": spatial.warp_affine(moving, torch.linalg.inv(m), padding="zeros"),   # warp by m re-aligns
            "fixed": spatial.resize_image(b["fixed"], RIGID_SIZE), "params": theta,
            "mask": spatial.resize_image(b["fixed_mask"], RIGID_SIZE)}


def resample(image, theta):
    # the moving image resampled by rigid parameters theta (moving_from_fixed)
    return spatial.warp_affine(image, spatial.params_to_matrix(theta, "rigid", RIGID_SIZE), padding="zeros")


RIGID_TEST = rigid_batch(64 if QUICK else 16, torch.Generator().manual_seed(data.SPLIT_SEEDS["test"]))
'''

EX2_STUB = r'''
# NBVAL_RAISES_EXCEPTION
def misalignment(theta, truth, mask):
    # (N, k) predicted and true rigid parameters, (N, 1, *S) fixed brain mask -> (N,) mean distance in voxels
    # between where the two transforms send each voxel of the fixed brain (a TRE over the whole brain)
    # YOUR CODE HERE
    raise NotImplementedError("Exercise 2: voxel coordinates, both matrices "
                              "(spatial.params_to_matrix), distances, mean inside the mask")


misalignment(torch.zeros_like(RIGID_TEST["params"]), RIGID_TEST["params"], RIGID_TEST["mask"])
'''

EX2_SOL = r'''
def misalignment(theta, truth, mask):
    grids = torch.meshgrid(*(torch.arange(s, dtype=torch.float32, device=theta.device) for s in RIGID_SIZE),
                           indexing="ij")
    x = torch.stack([*grids, torch.ones_like(grids[0])], -1).reshape(-1, NDIM + 1)      # (V, ndim + 1)
    a, b = (spatial.params_to_matrix(t, "rigid", RIGID_SIZE) for t in (theta, truth))   # (N, ndim+1, ndim+1)
    dist = ((x @ a.transpose(1, 2)) - (x @ b.transpose(1, 2)))[..., :NDIM].norm(dim=-1)  # (N, V)
    inside = mask.reshape(len(mask), -1) > 0.5
    return (dist * inside).sum(1) / inside.sum(1)


start = misalignment(torch.zeros_like(RIGID_TEST["params"]), RIGID_TEST["params"], RIGID_TEST["mask"])
print(f"held-out rigid pairs: {len(start)}; misalignment before registration {start.mean():.2f} voxels of "
      f"{RIGID_MM:g} mm (median {start.median():.2f}, max {start.max():.2f})")
'''

YAN = r'''
W_ADV = 0.1                                           # weight of the adversarial term next to the parameter loss
RIGID = {}


def param_loss(theta, b):
    return ((theta - b["params"]) ** 2).mean()


def yan_d_step(net, disc, b, i):
    real = disc(resample(b["moving"], b["params"]), b["fixed"])                       # aligned by the truth
    fake = disc(resample(b["moving"], net(b["moving"], b["fixed"])), b["fixed"])      # aligned by the prediction
    return train.discriminator_loss(real, fake), train.discriminator_stats(real, fake)


def yan_g_step(net, disc, b, i):
    theta = net(b["moving"], b["fixed"])
    adv = train.generator_loss(disc(resample(b["moving"], theta), b["fixed"]))
    loss = param_loss(theta, b)
    return loss + W_ADV * adv, {"parameters": loss.item(), "adversarial": adv.item()}


t0 = time.perf_counter()
for s in SEEDS:
    g = torch.Generator().manual_seed(data.SPLIT_SEEDS["train"] + config.train_seed(s))
    batches = [rigid_batch(YAN_BATCH, g) for _ in range(POOL)] if POOL else (lambda: rigid_batch(YAN_BATCH, g))
    common = dict(seed=config.train_seed(s), grad_clip=CLIP, lr_schedule=train.decay_schedule(STEPS, DECAY),
                  progress=False)                    # as every recipe of the lesson
    for name in ("parameter MSE", "MSE + adversarial"):
        torch.manual_seed(config.train_seed(s))
        net = AffineRegressor(RegressorConfig(ndim=NDIM, output="rigid")).to(DEVICE)
        if name == "parameter MSE":
            train.fit(net, lambda m, b: param_loss(m(b["moving"], b["fixed"]), b), batches, steps=STEPS, lr=1e-3,
                      **common)
            disc = None
        else:
            disc = new_disc(s, size=RIGID_SIZE)
            untrained = new_disc(s, size=RIGID_SIZE).eval()          # the same initial weights, never trained
            train.fit_adversarial(net, disc, yan_g_step, yan_d_step, batches, STEPS, lr_g=1e-3, lr_d=1e-3, **common)
        net.eval()
        with torch.no_grad():
            theta = net(RIGID_TEST["moving"], RIGID_TEST["fixed"])
        err = misalignment(theta, RIGID_TEST["params"], RIGID_TEST["mask"])
        RIGID.setdefault(name, []).append({"net": net, "disc": disc, "error": err.cpu().numpy(),
                                           "untrained": None if disc is None else untrained})
print(f"{len(SEEDS)} seeds x 2 recipes in {time.perf_counter() - t0:.0f} s")
for name, runs in RIGID.items():
    e = np.array([r["error"].mean() for r in runs])
    print(f"{name:18s} misalignment after registration {e.mean():.3f} ± {e.std(ddof=1):.3f} voxels "
          f"({e.mean() * RIGID_MM:.1f} mm; per seed {np.round(e, 3)}; before {start.mean():.2f})")
'''

YAN_SCORE = r'''
def score_study(disc, n_levels=4):
    # the discriminator's mean logit on held-out pairs resampled with the true parameters plus perturbations of
    # growing size, against the misalignment that leaves; also MI of the same pairs (a handcrafted reference)
    g = torch.Generator().manual_seed(7)                 # the same perturbations for every discriminator
    scores, mis, mi = [], [], []
    with torch.no_grad():
        for k in range(n_levels):
            pert = torch.cat([(torch.rand(len(start), N_ANGLES, generator=g) * 2 - 1) * MAX_ANGLE,
                              (torch.rand(len(start), NDIM, generator=g) * 2 - 1) * MAX_SHIFT], 1).to(DEVICE)
            theta = RIGID_TEST["params"] + pert * k / (n_levels - 1)
            warped = resample(RIGID_TEST["moving"], theta)
            scores.append(disc(warped, RIGID_TEST["fixed"]).flatten(1).mean(1))
            mis.append(misalignment(theta, RIGID_TEST["params"], RIGID_TEST["mask"]))
            mi.append(torch.stack([similarity.mutual_information(w[None], f[None]) for w, f in
                                   zip(warped, RIGID_TEST["fixed"])]))
    mis, scores, mi = (torch.cat(v).cpu().numpy() for v in (mis, scores, mi))
    return mis, scores, spearmanr(mis, scores).statistic, spearmanr(mis, mi).statistic


RHO = {"trained": [], "untrained": []}
for r in RIGID["MSE + adversarial"]:
    mis, scores, rho, rho_mi = score_study(r["disc"].eval())
    RHO["trained"].append(rho)
    RHO["untrained"].append(score_study(r["untrained"])[2])
    r["scores"] = (mis, scores)
RHO_MI = rho_mi
print("Spearman correlation of the discriminator's score with the true misalignment, per seed: trained "
      f"{np.round(RHO['trained'], 3)}, untrained (same initial weights) {np.round(RHO['untrained'], 3)}; "
      f"MI of the same pairs {RHO_MI:.3f}")
'''

FIG_YAN = r'''
fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.5))
for j, (name, runs) in enumerate(RIGID.items()):
    e = np.array([r["error"].mean() for r in runs])
    axes[0].plot(np.full(len(e), j), e, "o", color=f"C{j}")
axes[0].axhline(start.mean().item(), color="gray", ls=":", label="before registration")
axes[0].set_xticks([0, 1], list(RIGID))
axes[0].set(title="held-out rigid misalignment, one point per seed", ylabel="mean distance (voxels)")
axes[0].legend(fontsize=8)
mis, scores = RIGID["MSE + adversarial"][0]["scores"]
axes[1].scatter(mis, scores, s=6, alpha=0.6)
axes[1].set(title=f"seed {SEEDS[0]}'s discriminator as an alignment measure (ρ = {RHO['trained'][0]:.2f})",
            xlabel="true misalignment (voxels)", ylabel="mean logit (higher: 'aligned')")
fig.tight_layout()
plt.show()
'''

CP4 = r'''
# NBVAL_CHECK_OUTPUT
rho = np.array(RHO["trained"])
err = {n: np.array([r["error"].mean() for r in runs]) for n, runs in RIGID.items()}
adv_gain = robust_difference(err["parameter MSE"], err["MSE + adversarial"])       # > 0: the adversarial term helps
config.record_checkpoint("10.4", rho_max=rho.max(), rho_mean=rho.mean(), rho_untrained_max=max(RHO["untrained"]),
                         rho_mi=RHO_MI, adv_gain_voxels=adv_gain.difference, adv_gain_sd=adv_gain.pooled_sd)
assert rho.max() < -0.8 and RHO_MI < -0.8 and adv_gain.difference < 2 * adv_gain.pooled_sd, (
    f"Spearman per seed {np.round(rho, 3)} (bound -0.8), MI {RHO_MI:.3f}; the adversarial term's gain in "
    f"misalignment {adv_gain.difference:+.3f} voxels (pooled seed sd {adv_gain.pooled_sd:.3f})")
print(f"checkpoint 10.4 passed: on all {len(rho)} seeds the trained discriminator's score falls as the misalignment "
      f"grows (Spearman < -0.8, as for MI); the adversarial term does not make the regressor more accurate")
'''
