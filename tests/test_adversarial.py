"""Unit tests for lesson 10's adversarial training (course_lib.train.adversarial, gan_losses)."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib import train
from course_lib.networks import Discriminator, DiscriminatorConfig

torch.set_num_threads(1)

LN2 = math.log(2.0)


# ------------------------------------------------------------------------------------ a toy GAN
# generator: a 1×1 conv that maps noise images to "fake" images; discriminator: the course's patch
# discriminator on 16×16 images; real images are constant 0.8 plus a little noise

def _nets(seed=0, sn=False):
    torch.manual_seed(seed)
    g = torch.nn.Conv2d(1, 1, 1)
    d = Discriminator(DiscriminatorConfig(ndim=2, in_channels=1, widths=(4, 4), head_width=4,
                                          input_size=(16, 16), spectral_norm=sn))
    return g, d


def _batches(n=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [(0.8 + 0.05 * torch.randn(2, 1, 16, 16, generator=gen), torch.randn(2, 1, 16, 16, generator=gen))
            for _ in range(n)]


def d_step(g, d, batch, i):
    real, noise = batch
    r, f = d(real), d(g(noise))
    return train.discriminator_loss(r, f), train.discriminator_stats(r, f)


def g_step(g, d, batch, i):
    real, noise = batch
    return train.generator_loss(d(g(noise)))


def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def _fit(g, d, steps=1, batches=None, **kw):
    kw.setdefault("progress", False)
    return train.fit_adversarial(g, d, g_step, d_step, batches or _batches(), steps, **kw)


# ------------------------------------------------------------------------------------ the alternating step

def test_one_alternating_step_equals_the_manual_d_then_g_updates():
    g, d = _nets()
    g_ref, d_ref = copy.deepcopy(g), copy.deepcopy(d)
    batches = _batches(1)
    _fit(g, d, steps=1, batches=batches, lr_g=1e-2, lr_d=1e-3)
    # by hand: D's Adam step on its loss with the generator's output, then G's step against the new D
    real, noise = batches[0]
    opt_d = torch.optim.Adam(d_ref.parameters(), lr=1e-3)
    opt_g = torch.optim.Adam(g_ref.parameters(), lr=1e-2)
    train.discriminator_loss(d_ref(real), d_ref(g_ref(noise).detach())).backward()
    opt_d.step()
    train.generator_loss(d_ref(g_ref(noise))).backward()
    opt_g.step()
    for a, b in ((g, g_ref), (d, d_ref)):
        for (k, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(p, q, msg=k)
    assert not g.training and not d.training


def test_each_phase_updates_only_its_own_network_whatever_the_step_computes():
    def greedy_d_step(g, d, batch, i):      # no detach, and a term on G's weights: G must not move
        real, noise = batch
        return train.discriminator_loss(d(real), d(g(noise))) + g.weight.sum() ** 2

    def greedy_g_step(g, d, batch, i):      # a term on D's weights: D must not move
        return g_step(g, d, batch, i) + sum(p.sum() for p in d.parameters()) ** 2

    g, d = _nets()
    g0, d0 = _state(g), _state(d)
    seen = {}

    def spy(gen, dis, step, history):
        seen[step] = ({n: p.grad is not None for n, p in gen.named_parameters()},
                      {n: p.grad is not None for n, p in dis.named_parameters()})

    train.fit_adversarial(g, d, greedy_g_step, greedy_d_step, _batches(), steps=1, warmup_d=1, progress=False)
    assert _same(_state(g), g0) and not _same(_state(d), d0)              # D phase only: G untouched
    g, d = _nets()
    g0, d0 = _state(g), _state(d)
    train.fit_adversarial(g, d, greedy_g_step, greedy_d_step, _batches(), steps=1, warmup_g=1, progress=False,
                          callback=spy, callback_every=1)
    assert _same(_state(d), d0) and not _same(_state(g), g0)              # G phase only: D untouched
    assert all(seen[1][0].values()) and not any(seen[1][1].values())      # D got no gradient at all
    assert all(p.requires_grad for p in list(g.parameters()) + list(d.parameters()))   # unfrozen after


def test_caller_frozen_weights_stay_frozen():
    g, d = _nets()
    d.logits.bias.requires_grad_(False)
    b0 = d.logits.bias.detach().clone()
    _fit(g, d, steps=2)
    assert not d.logits.bias.requires_grad and torch.equal(d.logits.bias, b0)


# ------------------------------------------------------------------------------------ stabilisers

def test_gating_skips_discriminator_updates_while_its_loss_is_low():
    g, d = _nets()
    d0 = _state(d)
    h = _fit(g, d, steps=3, d_threshold=100.0)                             # loss always <= 100: gated
    assert _same(_state(d), d0)
    assert h["d_lr_factor"] == [0.0, 0.0, 0.0]
    assert all(math.isfinite(v) for v in h["d_loss"] + h["g_loss"])
    g, d = _nets()
    h = _fit(g, d, steps=2, d_threshold=-1.0)                              # never gated
    assert h["d_lr_factor"] == [1.0, 1.0] and not _same(_state(d), d0)


def test_gating_with_a_floor_scales_the_learning_rate():
    g, d = _nets()
    g2, d2 = _nets()
    _fit(g, d, steps=1, lr_d=1e-3, d_threshold=100.0, d_floor=0.25)
    _fit(g2, d2, steps=1, lr_d=0.25e-3)
    for p, q in zip(d.parameters(), d2.parameters()):
        torch.testing.assert_close(p, q)


def test_discriminator_lr_factor():
    assert train.discriminator_lr_factor(1.0, threshold=0.5) == 1.0
    assert train.discriminator_lr_factor(0.5, threshold=0.5) == 0.0          # at the threshold: gated
    assert train.discriminator_lr_factor(torch.tensor(0.2), threshold=0.5, floor=0.1) == 0.1


def test_one_sided_label_smoothing_targets():
    real, fake = torch.randn(2, 1, 3, 3), torch.randn(5)
    t_real, t_fake = train.discriminator_targets(real, fake, smoothing=0.1)
    assert t_real.shape == real.shape and t_fake.shape == fake.shape
    assert torch.allclose(t_real, torch.full_like(real, 0.9)) and torch.equal(t_fake, torch.zeros(5))
    # the smoothed BCE loss is that of those targets, and its real term is flat where σ(r) = 0.9
    want = F.binary_cross_entropy_with_logits(real, t_real) + F.binary_cross_entropy_with_logits(fake, t_fake)
    torch.testing.assert_close(train.discriminator_loss(real, fake, smoothing=0.1), want)
    r = torch.full((4,), math.log(0.9 / 0.1), requires_grad=True)
    train.discriminator_loss(r, torch.zeros(4), smoothing=0.1).backward()
    assert r.grad.abs().max() < 1e-6
    t_real, _ = train.discriminator_targets(real, fake)
    assert torch.equal(t_real, torch.ones_like(real))                      # no smoothing by default


def test_bce_losses_on_known_logits():
    z = torch.zeros(2, 1, 4, 4)
    assert train.discriminator_loss(z, z).item() == pytest.approx(2 * LN2)   # chance
    assert train.generator_loss(z).item() == pytest.approx(LN2)
    f = torch.tensor([-2.0, 0.5, 3.0])
    want = -torch.log(torch.sigmoid(f)).mean()                            # non-saturating
    assert train.generator_loss(f).item() == pytest.approx(want.item(), rel=1e-6)
    big = torch.full((3,), 30.0)
    assert train.discriminator_loss(big, -big).item() < 1e-10              # a confident, right D


def test_lsgan_losses_on_known_inputs():
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    # ½·mean((r − 1)²) + ½·mean(f²) = ½·½ + ½·½ ; generator ½·mean((f − 1)²) = ½·½
    assert train.discriminator_loss(real, fake, kind="lsgan").item() == pytest.approx(0.5)
    assert train.generator_loss(fake, kind="lsgan").item() == pytest.approx(0.25)
    # smoothing moves the real target to 0.9: ½·mean(0.1², 0.9²) + ½·½
    assert train.discriminator_loss(real, fake, kind="lsgan", smoothing=0.1).item() == pytest.approx(0.455)
    assert train.discriminator_loss(torch.ones(3), torch.zeros(3), kind="lsgan").item() == 0.0


def test_discriminator_stats():
    s = train.discriminator_stats(torch.tensor([2.0, -1.0, 3.0, 4.0]), torch.tensor([-5.0, -5.0]))
    assert s["d_acc"] == pytest.approx(0.5 * (0.75 + 1.0))
    assert s["d_fake"] == pytest.approx(torch.sigmoid(torch.tensor(-5.0)).item())
    s = train.discriminator_stats(torch.tensor([0.9, 0.4]), torch.tensor([0.2, 0.6]), kind="lsgan")
    assert s == pytest.approx({"d_acc": 0.5, "d_real": 0.65, "d_fake": 0.4})


def test_r1_penalty_equals_a_brute_force_gradient_norm():
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig(ndim=2, in_channels=1, widths=(2,), head_width=2,
                                          input_size=(5, 6))).double()
    x = torch.rand(2, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    got = train.r1_penalty(d(x), x, gamma=3.0)
    # central differences of each sample's summed logits, voxel by voxel
    eps, sq = 1e-6, torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for n in range(2):
            for idx in range(30):
                e = torch.zeros(1, 1, 30, dtype=torch.float64)
                e[..., idx] = eps
                e = e.view(1, 1, 5, 6)
                xn = x[n:n + 1]
                sq[n] += ((d(xn + e).sum() - d(xn - e).sum()) / (2 * eps)) ** 2
    assert got.item() == pytest.approx(1.5 * sq.mean().item(), rel=1e-6)


def test_r1_penalty_of_a_linear_discriminator_and_its_gradient_reaches_the_weights():
    conv = torch.nn.Conv2d(2, 1, 2, stride=2, bias=True)                   # disjoint 2×2 patches
    x = torch.rand(3, 2, 4, 6, requires_grad=True)
    pen = train.r1_penalty(conv(x), x, gamma=2.0)
    # every voxel is in one patch: ∇ = w tiled, ‖∇‖² = (number of patches) · ‖w‖²
    assert pen.item() == pytest.approx(6 * conv.weight.pow(2).sum().item(), rel=1e-5)
    pen.backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_warmup_runs_d_only_then_g_only_then_both():
    g, d = _nets()
    states = [(_state(g), _state(d))]
    h = _fit(g, d, steps=5, warmup_d=2, warmup_g=1,
             callback=lambda gen, dis, i, hist: states.append((_state(gen), _state(dis))), callback_every=1)
    moved = [(not _same(a[0], b[0]), not _same(a[1], b[1])) for a, b in zip(states, states[1:])]
    assert moved == [(False, True), (False, True), (True, False), (True, True), (True, True)]
    nan = [math.isnan(v) for v in h["g_loss"]], [math.isnan(v) for v in h["d_loss"]]
    assert nan == ([True, True, False, False, False], [False, False, True, False, False])
    assert math.isnan(h["d_acc"][2]) and math.isnan(h["d_lr_factor"][2])


def test_history_keys_and_lengths():
    g, d = _nets()
    h = _fit(g, d, steps=3)
    assert set(h) == {"d_loss", "g_loss", "d_lr_factor", "d_acc", "d_real", "d_fake", "time"}
    assert all(len(v) == 3 for k, v in h.items() if k != "time") and h["time"] > 0
    assert all(0 <= a <= 1 for a in h["d_acc"])


def test_a_name_logged_late_is_padded_with_nan():
    def late(g, d, batch, i):
        loss = g_step(g, d, batch, i)
        return (loss, {"extra": 1.0}) if i == 2 else loss
    g, d = _nets()
    h = train.fit_adversarial(g, d, late, d_step, _batches(), 3, progress=False)
    assert [math.isnan(v) for v in h["extra"]] == [True, True, False]


def test_seed_reproducibility():
    def noisy_d_step(g, d, batch, i):                 # instance noise: uses the global generator
        real, noise = batch
        return train.discriminator_loss(d(real + 0.1 * torch.randn_like(real)), d(g(noise)))

    runs = []
    for seed in (3, 3, 4):
        g, d = _nets()
        h = train.fit_adversarial(g, d, g_step, noisy_d_step, _batches(), 3, seed=seed, progress=False)
        runs.append((h["d_loss"] + h["g_loss"], _state(d)))
    assert runs[0][0] == runs[1][0] and _same(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]


def test_checkpoint_resume_continues_both_networks_and_optimizers(tmp_path):
    batches = _batches(4)
    g_ref, d_ref = _nets()
    h_ref = _fit(g_ref, d_ref, steps=4, batches=batches)
    path = tmp_path / "gan.pt"
    g, d = _nets()
    _fit(g, d, steps=2, batches=batches[:2], checkpoint=path,
         config_d=d.config)
    ckpt = train.load_checkpoint(path)                                     # weights_only=True inside
    assert ckpt["step"] == 2 and set(ckpt["optimizer"]) == {"generator", "discriminator"}
    assert ckpt["config"] == {"generator": None, "discriminator": d.config.__dict__}
    assert {k.split(".")[0] for k in ckpt["model"]} == {"generator", "discriminator"}
    g2, d2 = _nets(seed=7)
    h = _fit(g2, d2, steps=4, batches=batches[2:], checkpoint=path)
    for a, b in ((g2, g_ref), (d2, d_ref)):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q)
    assert len(h["d_loss"]) == 4 and h["g_loss"] == pytest.approx(h_ref["g_loss"])


def test_the_discriminator_learns_to_separate_with_spectral_norm():
    g, d = _nets(sn=True)
    h = _fit(g, d, steps=30, warmup_d=30, lr_d=1e-2)
    assert h["d_loss"][-1] < h["d_loss"][0] and h["d_acc"][-1] == 1.0


# ------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(generator="net"), TypeError, "generator must be a torch.nn.Module"),
    (dict(discriminator=torch.nn.ReLU()), ValueError, "discriminator has no parameters"),
    (dict(g_step=3), TypeError, "g_step must be a callable"),
    (dict(d_step=None), TypeError, "d_step must be a callable"),
    (dict(batches=torch.rand(3)), TypeError, "batches must be an iterable"),
    (dict(steps=0), ValueError, "steps must be a positive int"),
    (dict(lr_d=0.0), ValueError, "lr_d must be > 0"),
    (dict(lr_g="fast"), TypeError, "lr_g must be a real number"),
    (dict(betas=0.5), TypeError, "betas must be a pair"),
    (dict(betas=(0.5, 1.0)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
    (dict(warmup_d=-1), ValueError, "warmup_d must be a non-negative int"),
    (dict(warmup_d=2, warmup_g=2), ValueError, "warmup_d \\+ warmup_g must be <= steps=3"),
    (dict(d_threshold=float("nan")), ValueError, "d_threshold must be a finite number"),
    (dict(d_floor=1.5), ValueError, "d_floor must be <= 1"),
    (dict(grad_clip=-1.0), ValueError, "grad_clip must be > 0"),
    (dict(checkpoint=3), TypeError, "checkpoint must be a str or pathlib.Path"),
    (dict(config_d={"ndim": 2}), TypeError, "config_d must be a dataclass instance"),
    (dict(progress="no"), TypeError, "progress must be a bool"),
])
def test_fit_adversarial_bad_input(kwargs, exc, words):
    g, d = _nets()
    args = dict(generator=g, discriminator=d, g_step=g_step, d_step=d_step, batches=_batches(), steps=3,
                progress=False)
    args.update(kwargs)
    with pytest.raises(exc, match="fit_adversarial: " + words):
        train.fit_adversarial(**args)


def test_fit_adversarial_bad_steps_and_shared_weights():
    g, d = _nets()
    with pytest.raises(ValueError, match="fit_adversarial: generator and discriminator share"):
        train.fit_adversarial(g, torch.nn.Sequential(g, d), g_step, d_step, _batches(), 1, progress=False)
    cases = [
        (lambda *a: torch.zeros(3, requires_grad=True), TypeError, "d_step must return a one-element loss"),
        (lambda *a: torch.tensor(1.0), ValueError, "the loss of d_step does not depend on the discriminator"),
        (lambda *a: (d_step(*a)[0], {"g_loss": 1.0}), ValueError, r"d_step logs under reserved names \['g_loss'\]"),
        (lambda *a: d_step(*a)[0] * float("nan"), FloatingPointError, "the loss of d_step became nan at step 0"),
    ]
    for bad, exc, words in cases:
        g, d = _nets()
        with pytest.raises(exc, match="fit_adversarial: " + words):
            train.fit_adversarial(g, d, g_step, bad, _batches(), 1, progress=False)
    g, d = _nets()
    with pytest.raises(ValueError, match=r"d_step and g_step both log \['d_acc'\]"):
        train.fit_adversarial(g, d, lambda *a: (g_step(*a), {"d_acc": 0.0}), d_step, _batches(), 1, progress=False)


@pytest.mark.parametrize("call, exc, words", [
    (lambda: train.discriminator_loss(torch.zeros(2), torch.zeros(2), kind="wgan"), ValueError,
     "discriminator_loss: kind must be one of"),
    (lambda: train.discriminator_loss(torch.zeros(2), torch.zeros(2), smoothing=0.5), ValueError,
     r"discriminator_loss: smoothing must be in \[0, 0.5\)"),
    (lambda: train.discriminator_loss([0.0], torch.zeros(2)), TypeError,
     "discriminator_loss: real_logits must be a torch.Tensor"),
    (lambda: train.generator_loss(torch.zeros(0)), ValueError, "generator_loss: fake_logits must not be empty"),
    (lambda: train.generator_loss(torch.zeros(2, dtype=torch.int64)), TypeError,
     "generator_loss: fake_logits must be a floating"),
    (lambda: train.discriminator_stats(torch.zeros(2), torch.tensor([float("nan")])), ValueError,
     "discriminator_stats: fake_logits contains NaN"),
    (lambda: train.discriminator_targets(torch.zeros(2), torch.zeros(2), smoothing=-0.1), ValueError,
     "discriminator_targets: smoothing must be >= 0"),
    (lambda: train.discriminator_lr_factor(0.1, threshold=0.5, floor=2.0), ValueError,
     "discriminator_lr_factor: floor must be <= 1"),
    (lambda: train.discriminator_lr_factor("low", threshold=0.5), TypeError,
     "discriminator_lr_factor: d_loss must be a real number"),
])
def test_gan_losses_bad_input(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


def test_r1_penalty_bad_input():
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    x = torch.rand(2, 1, 6, 6)
    with pytest.raises(ValueError, match="r1_penalty: real_inputs must require grad"):
        train.r1_penalty(conv(x), x)
    x.requires_grad_(True)
    other = torch.rand(2, 1, 6, 6, requires_grad=True)
    with pytest.raises(ValueError, match="r1_penalty: real_logits does not depend on real_inputs"):
        train.r1_penalty(conv(other), x)
    with pytest.raises(ValueError, match="r1_penalty: real_logits must have the batch size of real_inputs"):
        train.r1_penalty(conv(x)[:1], x)
    with pytest.raises(ValueError, match="r1_penalty: gamma must be > 0"):
        train.r1_penalty(conv(x), x, gamma=0.0)
    with pytest.raises(ValueError, match="r1_penalty: real_inputs must have 4 or 5 dimensions"):
        train.r1_penalty(conv(x), x[0])


def test_checkpoint_with_several_optimizers_bad_input(tmp_path):
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(net.parameters())
    with pytest.raises(TypeError, match="save_checkpoint: optimizer must be"):
        train.save_checkpoint(tmp_path / "a.pt", net, optimizer={"g": "adam"})
    with pytest.raises(TypeError, match="save_checkpoint: config must be"):
        train.save_checkpoint(tmp_path / "a.pt", net, config={"g": 3})
    path = train.save_checkpoint(tmp_path / "a.pt", net, optimizer={"g": opt})
    with pytest.raises(ValueError, match=r"load_checkpoint: optimizer must be a dict \{name: Optimizer\}"):
        train.load_checkpoint(path, net, opt)
    with pytest.raises(ValueError, match=r"load_checkpoint: optimizer names \['d'\] are not in"):
        train.load_checkpoint(path, net, {"d": opt})
    path = train.save_checkpoint(tmp_path / "b.pt", net, optimizer=opt)
    with pytest.raises(ValueError, match="load_checkpoint: optimizer must be one torch.optim.Optimizer"):
        train.load_checkpoint(path, net, {"g": opt})
