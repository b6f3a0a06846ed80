# Run by build.py, which defines HERE (this folder), md() and code(); not a module of its own.
ns = {}
for part in ("code_part1.py", "code_part2.py", "code_part3.py", "code_part4.py"):
    exec(open(HERE / part).read(), ns)
C = ns

md(r"""
# Lesson 10 — Adversarial registration

*A second network, the discriminator, learns to tell good alignments from bad ones, and the
registration network learns to fool it. Does a learned critic beat a handcrafted similarity?*

Papers: **Fan et al. 2018** (adversarial similarity, MICCAI), **Yan et al. 2018** (adversarial rigid
MR–TRUS registration, MLMI), **Hu et al. 2018** (adversarial deformation regularisation, MICCAI).
The survey this course follows calls adversarial registration the field's next hotspot, and leaves
three questions open. This lesson answers them by experiment, on our data, over several training
seeds.
""")

md(r"""
## Learning objectives

After this lesson you can:

- explain the **min–max game** of a generator (the registration network) and a discriminator, and
  train one with alternating steps (`train.fit_adversarial`);
- build Fan et al.'s **adversarial similarity** (real = a blend of moving and fixed, fake = the
  warped image), and say why it cannot work for two modalities;
- build Yan et al.'s **adversarial rigid registration**, and use a trained discriminator as an
  **alignment-quality measure**;
- replace a smoothness penalty by a discriminator between predicted and simulated fields
  (**Hu et al.**), and compare it with the penalties and with supervision by the same fields;
- read GAN results honestly: several seeds, the spread, and the failure modes.

**Time:** about 90 minutes to read, run and do the exercises; the notebook runs in about 4–5
minutes on a laptop CPU (quick profile). It trains 36 networks (12 recipes × 3 seeds) and 18
discriminators.
""")

code(C["SETUP"])

md(r"""
## 1. The data, and what "adversarial" means here

**Data.** The quick profile works on **4 mm** axial slices (48 × 64 voxels): the 2 mm slice of
lessons 08–09, averaged over 2 × 2 blocks (`data.coarsen`). Twelve recipes × three seeds must fit a
laptop's minutes; at 2 mm they would take about four times longer. The simulator's deformations are the
same in millimetres as in lesson 08 (half the size and spacing in voxels). The **held-out pairs** are
the test split of the course (they never depend on `COURSE_SEED`). Section 2 uses them without
intensity augmentation: the reason comes with Fan's reference image below.

**The game.** A *generator* $G$ (here the registration network) and a *discriminator* $D$ play
(Goodfellow et al. 2014)

$$\min_G \max_D\; \mathbb{E}\big[\log D(\text{real})\big] + \mathbb{E}\big[\log\big(1 - D(G(\cdot))\big)\big].$$

We train them in turns. $D$ takes one step on the binary cross-entropy of real samples (label 1)
and generated ones (label 0). $G$ then takes one step on the *non-saturating* loss
$-\log D(G(\cdot))$: make $D$ call the fakes real. What counts as "real" decides what $G$ learns,
and the three papers choose differently:

| paper | generator | real samples | fake samples |
|---|---|---|---|
| Fan et al. 2018 | deformable network | (reference $R$, fixed) | (warped moving, fixed) |
| Yan et al. 2018 | rigid regressor | (moving resampled by the **true** parameters, fixed) | (… by the predicted ones, fixed) |
| Hu et al. 2018 | deformable network (label-driven) | simulated displacement fields | predicted fields |

`course_lib.networks.Discriminator` is the patch discriminator of Fan et al.'s released model:
stride-2 3×3 convolutions of 8, 8, 16, 16 and 32 channels with LeakyReLU 0.2, one 32-channel
convolution, and a 1-channel convolution that gives a **map of logits**, one per patch. Stages are
dropped for small inputs: at 48 × 64 it keeps four and returns a 3 × 4 map. `train.fit_adversarial`
alternates the two steps. It uses two Adam optimisers and freezes each network during the other's
phase. Its stabilisers are warm-up steps, a discriminator learning rate gated by its loss (Fan et
al.'s code), label smoothing, the least-squares loss and the R1 penalty in `train.gan_losses`,
and spectral normalisation in the discriminator.
""")

code(C["DATA"])

md(r"""
Lesson 08's **affine-only** baseline is a classical affine registration with NCC. The syllabus asks
whether an adversarial model beats it.
""")

code(C["AFFINE"])

md(r"""
## 2. Fan et al.: a discriminator as the similarity measure

Fan et al. (2018) replace the similarity term of an unsupervised registration network by a
discriminator. $D$ sees an image together with the fixed image $F$. Its **real** sample is the
reference

$$R = \alpha\, M + (1 - \alpha)\, F,$$

a blend of the moving image $M$ and the fixed image. The fixed weight $1 - \alpha$ is 0.8 in the first
half of training and 0.9 after. Its **fake** sample is the warped image $M \circ \phi$. The
generator's loss is $-\log D(M \circ \phi, F) + \lambda\,\mathrm{diffusion}(u)$. The reference is
nearly $F$, but not exactly: a discriminator that had to tell $F$ itself from a perfect warp would
face an impossible task at the optimum.

**Two departures from the paper.** Fan et al. train on 3D brain MR (LPBA40, IBSR18, CUMC12, MGH10)
for many hours. Here, 2D slices get 200 steps. The generator is lesson 08's VM-1 network,
not their U-Net.

The comparison is run on the same pairs, with the same budget and seeds:

- **LNCC**: lesson 08's loss, $1 - \mathrm{LNCC} + 0.1\,\mathrm{diffusion}$;
- **adversarial**: Fan et al.'s loss alone, with a spectrally normalised $D$;
- **adversarial + LNCC**: both terms, as the survey's reader suggests ("perhaps combining the two
  helps").

For each seed, all three start from the same initial weights and see the same training pairs.
""")

code(C["HARNESS"])
code(C["LNCC"])

md(r"""
### Exercise 1 — the discriminator's loss with Fan's reference

Write `fan_d_loss(disc, moving, fixed, warped, i)`. Build the reference with $\alpha = 0.2$ for the
first half of `STEPS` and 0.1 after. Score `disc(reference, fixed)` as real and
`disc(warped, fixed)` as fake with `train.discriminator_loss`. *Expect:* an untrained
discriminator scores about $2\ln 2 \approx 1.386$, the loss of guessing.
""")

code(C["EX1_STUB"], raises=True)
md("**Solution** (expand the hidden cell below)")
code(C["EX1_SOL"], hidden=True)

md(r"""
**Settings of the adversarial recipe.** GANs are sensitive to their settings, so we give the
adversarial recipe a favour that LNCC does not get. Its diffusion weight ($\lambda = 0.02$) and the
discriminator's learning rate ($10^{-3}$) were the best of six settings tried on seed 0 while this
lesson was designed, scored on these held-out pairs (three learning rates × two weights). With LNCC's
$\lambda = 0.1$, the generator barely left the identity. The combined recipe keeps LNCC's
$\lambda = 0.1$. `benchmarks/adversarial_study.py` records the same comparison at 2 mm, with three
seeds per recipe.
""")

code(C["FAN"])
code(C["TABLE1"])
code(C["FIG1"])

md(r"""
**Reading the figure.** Each point is one training seed. Compare the adversarial points with the two
grey lines: a seed that learned nothing sits on the *unregistered* line. The discriminator's loss
(right) shows whether $D$ won (a loss near 0), or whether the game stayed balanced (near
$2\ln 2$). A generator that fools its critic has not necessarily aligned anything.

### Checkpoint 10.1 — adversarial similarity vs affine-only registration

The syllabus claims that the adversarial model improves Dice over affine-only registration. We test
the claim seed by seed: does every seed beat affine-only, by more than twice the seed spread? Look
at the discriminator's accuracy too. A seed whose discriminator stays at chance (0.5) gives its
generator no signal, and that generator never leaves the identity. On our runs the claim does
**not** hold reliably. The checkpoint asserts exactly that, and it would fail if the recipe became
reliable.
""")

code(C["PRE1"])
code(C["CP1"])

md(r"""
### Checkpoint 10.2 — adversarial vs handcrafted, and the two combined

We compare each adversarial recipe with LNCC. For each seed the recipes share initial weights and
training pairs, so we compare them seed by seed (paired). We also apply the course's rule
(`robust_difference`): a difference counts only beyond twice the pooled seed standard deviation.
""")

code(C["VERDICT"])
code(C["CP2"])

md(r"""
### Two modalities: where a learned similarity should pay

A learned critic should matter most where no simple intensity relation exists. So we repeat the
comparison with **PD-like moving images and T1 fixed images** (`contrast="pd"`), against lesson 02's
multi-modal measure: VoxelMorph trained with **mutual information**.

Look at Fan's reference first. With two modalities, $R = \alpha M + (1-\alpha) F$ mixes a PD image
into a T1 image, and no warp of a PD image looks like that mixture. The discriminator can tell real
from fake *by intensity alone*, whatever the alignment. We expect it to win, and the generator to
get no useful signal.

No stabiliser can repair this: the game itself is ill-posed. In our design runs
(`benchmarks/adversarial_design_4mm.md`) we tried three remedies on these pairs. Fan et al.'s code
gates $D$'s learning rate by its loss (`fit_adversarial(d_threshold=...)`): at thresholds of 1.0 and
1.3 it skipped most of $D$'s steps, and the generator still collapsed. Spectral normalisation is on
throughout. Adding mutual information to the generator's loss did not anchor it either. The section
keeps the plain recipe, so that you see the failure itself. A well-posed real sample needs the true
alignment, and that is Yan et al.'s idea, next.
""")

code(C["MULTI"])
code(C["FIG_MULTI"])

md(r"""
### Checkpoint 10.3 — the failure mode: the discriminator wins, the generator collapses
""")

code(C["CP3"])

md(r"""
## 3. Yan et al.: adversarial rigid registration, and the discriminator as a quality measure

Yan et al. (2018) register prostate MR to transrectal ultrasound (TRUS) rigidly. A CNN regresses the
transformation parameters; the discriminator sees the moving image resampled with the
**ground-truth** parameters (real) or with the **predicted** ones (fake), next to the fixed image; the
generator's loss is the Euclidean parameter error plus the adversarial term. Once trained, the
discriminator's score is itself a measure of alignment quality, learned for a pair of modalities for
which no handcrafted one works well.

Our version: PD-like moving slices, T1 fixed slices of the same subject, rotations up to 20° and
shifts up to 0.15 half-image; lesson 06's Siamese regressor with a rigid output; parameter MSE alone
vs MSE + 0.1 × adversarial, three seeds each, with the gradient clipping and the learning-rate
decay of every other recipe of the lesson. The regressor sees the pair at half the lesson's
resolution (8 mm in the quick profile), enough for a rigid pose. *Departures:* MR–TRUS becomes PD–T1
(our simulator has no ultrasound), and the regressor is lesson 06's, not theirs.
""")

code(C["YAN_DATA"])

md(r"""
### Exercise 2 — the misalignment of a rigid registration

To score a rigid result we need one number: how far apart the two transforms put each voxel of the
fixed brain. Write `misalignment(theta, truth, mask)`: map the voxel coordinates through both
matrices (`spatial.params_to_matrix(theta, "rigid", RIGID_SIZE)`, homogeneous coordinates), and
average the distance inside the mask. *Expect:* a few voxels before registration.
""")

code(C["EX2_STUB"], raises=True)
md("**Solution** (expand the hidden cell below)")
code(C["EX2_SOL"], hidden=True)

code(C["YAN"])

md(r"""
**The discriminator as an alignment measure.** We take the held-out pairs and resample each
moving image with the true parameters plus a random perturbation. The perturbation grows in four
steps from zero to the full training range. We then ask whether the trained discriminator's mean
logit falls as the true misalignment grows (Spearman rank correlation; $-1$ is a perfect ordering).
Two references come with it. One is the *untrained* discriminator, with the same initial weights:
how much of the ranking was learned? The other is mutual information of the same pairs, the
handcrafted multi-modal measure.
""")

code(C["YAN_SCORE"])
code(C["FIG_YAN"])

md(r"""
### Checkpoint 10.4 — Yan's discriminator ranks alignments; its term does not improve the regressor

The bound: Spearman below −0.8 on every seed, and for MI. We also assert the regression result
as measured: the adversarial term does not reduce the misalignment beyond twice the seed spread.
Read the per-seed numbers of section 3 before you read more into it. A seed of the parameter-MSE
regressor can stall near one voxel while the others reach a third of that, and one such seed
dominates the spread. Whether the adversarial term protects against such stalls would take many
more seeds to say; three cannot.
""")

code(C["CP4"])

md(r"""
## 4. Hu et al.: a discriminator as the deformation regulariser

Hu et al. (2018) train a label-driven network (lesson 09) for prostate MR–TRUS registration. Instead
of a smoothness penalty, a discriminator learns to tell the network's displacement fields from
fields of **finite-element simulations** of prostate motion. The network is then pushed to predict
fields that *look like* plausible physical deformations. Here the course's simulator stands in for
the finite-element model: its true fields $d$ are the real samples. This is a departure: our
"physics" is a smooth random diffeomorphism, not tissue mechanics.

**A second departure: the data term.** Hu et al.'s network learns from the labels alone. In lesson
09 that loss moved the field slowly (compare its weak model with the unsupervised one), and at this
lesson's budget of 200 steps at 4 mm it barely moves it at all: in our design runs, three label-only
models stayed close to the unregistered Dice, and one of them never left the identity (change
`data_term` to try it). A regulariser has nothing to regularise then. So every recipe below uses
lesson 09's **semi-supervised** data term, the label loss plus LNCC, and only the regulariser
changes.

**The training labels are structure groups.** The label loss sees one map per structure group
(frontal, parietal, temporal and occipital lobes, deep grey matter and so on: `data.label_groups`),
as lesson 09's 3D profile does, not one map per atlas label. Hu et al. trained on a few labels too
(the gland and a few landmarks). The Dice we report is over every atlas label, which the loss never
sees one by one. It is also cheaper: 45 label maps, warped at every step, cost more time than the
network.

Five recipes, the same network, the same pairs and seeds:

- the data term with **no regulariser**;
- with **diffusion** ($\lambda = 0.1$) and with **bending energy** ($\lambda = 1$);
- with Hu's **adversarial** term (weight 0.1; $D$ on fields, `in_channels = ndim`);
- **supervised** by the simulated fields themselves (lesson 08's baseline, with lesson 08's 1.5 times
  the steps): the survey's reader asks how this differs from the adversarial regulariser, whose
  real samples are the same fields.
""")

code(C["HU_SETUP"])

md(r"""
### Exercise 3 — Hu's discriminator step

Write `hu_d_step(net, disc, b, i)`: the simulator's field `b["displacement"]` is real, the
network's `net(b["moving"], b["fixed"]).flow` is fake. Return the loss and
`train.discriminator_stats(real, fake)`. The generator's step follows in the solution.
""")

code(C["EX3_STUB"], raises=True)
md("**Solution** (expand the hidden cell below)")
code(C["EX3_SOL"], hidden=True)

code(C["HU"])
code(C["FIG_HU"])

md(r"""
### Checkpoint 10.5 — does the adversarial regulariser give smooth fields at a small Dice cost?

Hu et al. report that, with gland labels alone as the data term, the adversarial term lets the
network predict physically plausible deformations without any other smoothness penalty. The issue
behind this lesson turns that into a test: smoother fields than no regulariser, at a Dice within a
stated margin. "Smoother" is measured by SDlogJ, the spread of the log-Jacobian: 0 for a rigid
motion, larger for fields that compress here and expand there. The margin: a regulariser may cost
at most **half of what the data term gained** over the unregistered pairs (printed below). A fixed
number of Dice would mean little here, because the gain itself is small at this budget and varies
from run to run; a regulariser that costs more than half of it has bought its smoothness by
aligning less.

Read the table and the figures above first. On our runs the adversarial recipe gives back most of
what the data term gained: its Dice falls towards the unregistered level and its end-point error
comes back to the unregistered one. Its fields are often smoother, but because they hardly follow
the pair. The handcrafted penalties cost little. So the checkpoint asserts what we measure: the
adversarial term costs more Dice than the margin, and more than twice the seed spread. It would fail if the
recipe came to work as the paper reports.

Why? One likely reason, which this lesson does not test: $D$ sees a field alone, not the pair it
registers. Any property that separates the simulator's fields from a registration's fields serves
it, whether or not it has to do with anatomy. The simulator deforms the background as smoothly as
the brain, for example, while the images say nothing there. The generator then pays, in alignment,
for matching those properties. The weight is not the reason in our design runs: weights of 0.01 and
0.03 cost most of the gain too (`benchmarks/adversarial_design_4mm.md`).
""")

code(C["PRE5"])
code(C["CP5"])

md(r"""
### Question 3: adversarial regularisation vs supervision by the same fields

Both recipes learn from the simulated fields, in different ways. **Supervision** asks, pair by pair,
for *this* field. The **adversarial** term asks only that predicted fields be indistinguishable, as
a population, from simulated ones: the same smoothness statistics, no per-pair target. So the two
should differ in what they get right. Supervision should be closer to the true field (EPE). The
adversarial regulariser should come close to the simulator's *statistics*. Below, for each recipe:
how far its fields' SDlogJ and bending energy are from the simulator's (|log ratio|, 0 = the same),
and its EPE. The checkpoint compares the EPE of the supervised and adversarial models seed by seed (the
two share initial weights and training pairs); the cell above it also prints whether the
difference exceeds twice the pooled seed sd, the stricter rule, which the supervised model's large
seed spread can fail.
""")

code(C["STATS"])
code(C["CP6"])
code(C["TIMING"])

md(r"""
## Summary — the three questions, answered on our data

Every statement below rests on a checkpoint above: 3 seeds per recipe, 16 held-out pairs, 200 steps
at 4 mm. They are claims about these recipes and this budget, not about adversarial learning in
general.

1. **Is a discriminator a better similarity than a handcrafted one?** Not here.
   - In mono-modal registration LNCC is ahead of Fan et al.'s adversarial similarity on every seed,
     and adding the adversarial term to LNCC does not help beyond the seed spread (checkpoint 10.2).
   - The adversarial model does not reliably beat affine-only registration (checkpoint 10.1). Where
     its discriminator stays at chance, the generator never leaves the identity.
   - In multi-modal registration the blended reference makes the game ill-posed: the discriminator
     wins and the generator collapses, far below the unregistered Dice (checkpoint 10.3). Mutual
     information, in the same table, does not collapse.
2. **Are GANs hard to train?** Yes, and they fail silently. A discriminator that stays at chance
   gives its generator no signal, and the generator stays near the identity (section 2's printout
   before checkpoint 10.1); a discriminator that wins drives the generator to collapse
   (checkpoint 10.3), and neither the gate, spectral normalisation nor an added MI term prevented
   that in our design runs. Six settings of the mono-modal recipe gave very different results. The
   seed spreads are printed beside LNCC's in section 2; a model that does little has a small spread
   too, so read them with the Dice. Yan's adversarial term did not make the rigid regressor more
   accurate than its parameter loss alone beyond the seed spread (checkpoint 10.4).
3. **Adversarial regularisation vs supervision by the simulated fields.** Hu et al.'s claim does not
   reproduce here: the adversarial term gives back most of what the data term gained, more than
   our margin of half the gain and beyond the seed spread (checkpoint 10.5). Its fields have a lower
   SDlogJ because they hardly deform, not because they resemble the simulator's. Supervision by the
   same fields gives a lower end-point error than the adversarial regulariser (checkpoint 10.6).
   The distances to the simulator's statistics are printed above checkpoint 10.6: in our runs the
   adversarial fields were the farthest from the simulator's SDlogJ, and the handcrafted penalties
   the closest. A population-level critic matches whatever separates the two populations, and
   that need not be what makes a field right for its pair.

- A trained discriminator **is** a usable alignment measure (checkpoint 10.4). The untrained
  network's correlation, printed in section 3, shows how much of that was learned. Mutual information
  of the same pairs passes the same bound: for PD–T1 a handcrafted measure exists, and a learned
  critic pays only where none does (MR–TRUS in Yan et al.'s paper).
- Hu et al.'s label-only data term does not move the field in 200 steps at 4 mm, so section 4 adds
  LNCC to it (lesson 09's semi-supervised loss). The regulariser comparison is about that loss, and
  about our simulator's fields as the "physics", not a finite-element model.

**Full profile.** On a GPU the same code trains the 3D models at 2 mm (80 × 96 × 80), 500 steps per
model, on fresh pairs at every step.
""")

md(r"""
## References

- J. Fan, X. Cao, Q. Wang, P.-T. Yap, D. Shen. *Adversarial similarity network for evaluating image
  alignment in deep learning based registration.* MICCAI 2018, LNCS 11070, 739–746.
- P. Yan, S. Xu, A. R. Rastinehad, B. J. Wood. *Adversarial image registration with application for
  MR and TRUS image fusion.* Machine Learning in Medical Imaging (MLMI) 2018, LNCS 11046, 197–204.
- Y. Hu, E. Gibson, N. Ghavami, E. Bonmati, C. M. Moore, M. Emberton, T. Vercauteren, J. A. Noble,
  D. C. Barratt. *Adversarial deformation regularization for training image registration neural
  networks.* MICCAI 2018, LNCS 11070, 774–782.
- I. Goodfellow et al. *Generative adversarial nets.* NeurIPS 2014.
- T. Miyato, T. Kataoka, M. Koyama, Y. Yoshida. *Spectral normalization for generative adversarial
  networks.* ICLR 2018.
- G. Haskins, U. Kruger, P. Yan. *Deep learning in medical image registration: a survey.* Machine
  Vision and Applications 31, 2020 (the survey this course follows).
""")
