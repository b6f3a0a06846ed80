"""Unit tests for lesson 05's learned similarity (course_lib.networks.similarity_net)."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib import classical, spatial, train
from course_lib.networks import PatchSimilarityConfig, PatchSimilarityNet
from course_lib.networks.similarity_net import LearnedSimilarity

torch.set_num_threads(1)

#: small configurations, one per dimension (patch 17 in 2D, 15 in 3D: two stages, stride 2)
CONFIGS = {2: dict(ndim=2, patch_size=17, channels=(8, 16), hidden=16),
           3: dict(ndim=3, patch_size=15, channels=(4, 8), hidden=8)}


def _net(ndim: int, seed: int = 0) -> PatchSimilarityNet:
    torch.manual_seed(seed)
    return PatchSimilarityNet(PatchSimilarityConfig(**CONFIGS[ndim]))


def _smooth(shape, seed=0, n=1):
    """Smooth random images ``(n, 1, *shape)`` in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    img = spatial.gaussian_blur(torch.rand(n, 1, *shape, generator=g), 1.5)
    lo = img.flatten(1).min(1).values.view(n, *([1] * (len(shape) + 1)))
    hi = img.flatten(1).max(1).values.view(n, *([1] * (len(shape) + 1)))
    return (img - lo) / (hi - lo)


@pytest.mark.parametrize("ndim", [2, 3])
def test_output_shape_and_probability_range(ndim):
    net = _net(ndim)
    s = net.config.patch_size
    a, b = _smooth((s,) * ndim, 1, n=6), _smooth((s,) * ndim, 2, n=6)
    p = net(a, b)
    lo = net.logits(a, b)
    assert p.shape == (6,) and lo.shape == (6,)
    assert bool(((p >= 0) & (p <= 1)).all())
    torch.testing.assert_close(p, torch.sigmoid(lo))
    # large logits saturate but stay inside [0, 1]
    with torch.no_grad():
        net.head[-1].bias.fill_(1e4)
    assert bool((net(a, b) <= 1).all()) and bool((net(a, b) >= 0).all())


@pytest.mark.parametrize("ndim", [2, 3])
def test_conv_dimension_follows_the_config(ndim):
    net = _net(ndim)
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    assert convs and all(isinstance(m, torch.nn.Conv2d if ndim == 2 else torch.nn.Conv3d) for m in convs)
    assert convs[0].in_channels == 2                            # the pair, early fusion
    assert net.stride == 2 ** (len(net.config.channels) - 1) == 2


@pytest.mark.parametrize("ndim", [2, 3])
def test_score_map_equals_the_logits_of_the_patches(ndim):
    """The fully convolutional pass scores exactly the patches on the stride grid."""
    net = _net(ndim)
    s, st = net.config.patch_size, net.stride
    shape = (s + 9, s + 6) if ndim == 2 else (s + 5, s + 4, s + 3)
    a, b = _smooth(shape, 3), _smooth(shape, 4)
    m = net.score_map(a, b)
    assert m.shape == (1, 1, *[(n - s) // st + 1 for n in shape])
    for k in [(0,) * ndim, tuple(g - 1 for g in m.shape[2:]), (1,) * ndim]:
        sl = (slice(None), slice(None)) + tuple(slice(st * i, st * i + s) for i in k)
        torch.testing.assert_close(m[(0, 0) + k], net.logits(a[sl], b[sl])[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ndim", [2, 3])
def test_image_similarity_is_differentiable_wrt_the_moving_image(ndim):
    net = _net(ndim)
    shape = (40, 44) if ndim == 2 else (22, 20, 18)
    moving = _smooth(shape, 5).requires_grad_(True)
    fixed = _smooth(shape, 6)
    sim = net.as_similarity()
    assert sim.higher_is_better is True and isinstance(sim, LearnedSimilarity)
    value = sim(moving, fixed)
    assert value.dim() == 0 and math.isfinite(value.item())
    value.backward()
    assert torch.isfinite(moving.grad).all() and moving.grad.abs().sum() > 0
    # the network is frozen inside the similarity: no gradient, and its flags are restored
    assert all(p.grad is None for p in net.parameters())
    assert all(p.requires_grad for p in net.parameters())
    # probability score: same gradient check
    moving.grad = None
    net.as_similarity(score="probability")(moving, fixed).backward()
    assert torch.isfinite(moving.grad).all() and moving.grad.abs().sum() > 0


def test_similarity_gradient_matches_finite_differences():
    """gradcheck in float64 with respect to both images (threshold=None keeps the weights fixed)."""
    torch.manual_seed(0)
    net = PatchSimilarityNet(PatchSimilarityConfig(ndim=2, patch_size=9, channels=(3,), hidden=4)).double()
    a = _smooth((12, 11), 7).double().requires_grad_(True)
    b = _smooth((12, 11), 8).double().requires_grad_(True)
    sim = LearnedSimilarity(net, score="probability", threshold=None)
    assert torch.autograd.gradcheck(lambda x, y: sim(x, y), (a, b), eps=1e-6, atol=1e-5)


def test_similarity_counts_only_patches_centred_in_the_fixed_foreground():
    net = _net(2)
    fixed = _smooth((41, 45), 9)
    fixed[:, :, 20:] = 0                                         # background in the lower half of axis 0
    sim = net.as_similarity(threshold=0.05)
    w = sim.weights(fixed)
    assert w.shape == net.score_map(fixed, fixed).shape
    r, st = net.config.patch_size // 2, net.stride
    centres = r + st * torch.arange(w.shape[2])
    assert bool((w[0, 0, centres >= 20] == 0).all()) and w[0, 0, centres < 20].sum() > 0
    # the score is the mean logit over the counted patches
    moving = _smooth((41, 45), 10)
    m = net.score_map(moving, fixed)
    expected = (m * w).sum() / w.sum()
    torch.testing.assert_close(sim(moving, fixed), expected)
    # threshold=None counts every patch
    torch.testing.assert_close(net.as_similarity(threshold=None)(moving, fixed), m.mean())


def test_batch_similarity_is_the_mean_of_the_images():
    net = _net(2)
    a, b = _smooth((30, 32), 11, n=3), _smooth((30, 32), 12, n=3)
    sim = net.as_similarity()
    each = torch.stack([sim(a[i:i + 1], b[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(sim(a, b), each.mean())


def test_register_affine_accepts_the_learned_similarity():
    net = _net(2)
    fixed = _smooth((36, 40), 13)
    moving = spatial.warp_affine(fixed, spatial.rigid_matrix(torch.tensor([[0.05]]), torch.tensor([[1.0, -1.0]]),
                                                              [17.5, 19.5]))
    res = classical.register_affine(moving, fixed, net.as_similarity(), model="rigid", levels=1, steps=3)
    assert res.matrix.shape == (1, 3, 3) and len(res.history) == 3
    assert all(math.isfinite(h) for h in res.history)
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("ndim", [2, 3])
def test_config_round_trip_through_a_checkpoint(tmp_path, ndim):
    net = _net(ndim, seed=3)
    path = train.save_checkpoint(tmp_path / "sim.pt", net, net.config, step=7)
    ckpt = train.load_checkpoint(path)
    assert ckpt["config_class"] == "PatchSimilarityConfig" and ckpt["step"] == 7
    cfg = PatchSimilarityConfig(**ckpt["config"])
    assert cfg == net.config and dataclasses.asdict(cfg) == dataclasses.asdict(net.config)
    clone = PatchSimilarityNet(cfg)
    train.load_checkpoint(path, clone)
    s = cfg.patch_size
    a, b = _smooth((s,) * ndim, 14, n=4), _smooth((s,) * ndim, 15, n=4)
    torch.testing.assert_close(clone(a, b), net(a, b))


def test_training_separates_aligned_from_shifted_pairs():
    """A few steps of train.fit on a toy multi-modal problem: b = 1 - a (inverted contrast) for
    aligned pairs, b shifted by 3 voxels for misaligned ones. The loss must drop well below log 2."""
    torch.manual_seed(0)
    net = PatchSimilarityNet(PatchSimilarityConfig(ndim=2, patch_size=13, channels=(8,), hidden=16))
    img = _smooth((64, 64), 16)
    g = torch.Generator().manual_seed(0)

    def batch():
        c = torch.randint(8, 64 - 8 - 13, (64, 2), generator=g)
        shift = torch.where(torch.arange(64) < 32, 0, 3)[:, None] * torch.tensor([1, 0])
        a = torch.stack([img[0, :, x:x + 13, y:y + 13] for x, y in c.tolist()])
        b = torch.stack([1 - img[0, :, x:x + 13, y:y + 13] for x, y in (c + shift).tolist()])
        return a, b, (torch.arange(64) < 32).float()

    hist = train.fit(net, lambda m, bt: F.binary_cross_entropy_with_logits(m.logits(bt[0], bt[1]), bt[2]),
                     batch, 150, lr=3e-3, seed=0, progress=False)
    assert sum(hist["loss"][-10:]) / 10 < 0.5 * math.log(2), hist["loss"][-10:]


# -- bad input ------------------------------------------------------------------------------------

def test_bad_patches_raise_clear_errors():
    net = _net(2)
    ok = torch.rand(4, 1, 17, 17)
    with pytest.raises(ValueError, match=r"PatchSimilarityNet.forward: a must have 1 channel.*\(4, 2, 17, 17\)"):
        net(torch.rand(4, 2, 17, 17), ok)
    with pytest.raises(ValueError, match=r"PatchSimilarityNet.forward: b must be \(N, 1, \*\(17, 17\)\).*\(4, 1, 15, 15\)"):
        net(ok, torch.rand(4, 1, 15, 15))
    with pytest.raises(ValueError, match=r"PatchSimilarityNet.logits: a and b must have the same shape.*\(3, 1, 17, 17\)"):
        net.logits(ok, torch.rand(3, 1, 17, 17))
    nan = ok.clone()
    nan[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"PatchSimilarityNet.forward: a contains NaN"):
        net(nan, ok)
    with pytest.raises(ValueError, match=r"PatchSimilarityNet.forward: a must be .*config.ndim=2.*\(4, 1, 17, 17, 17\)"):
        net(torch.rand(4, 1, 17, 17, 17), ok)
    with pytest.raises(TypeError, match=r"PatchSimilarityNet.forward: b must have dtype torch.float32.*float64"):
        net(ok, ok.double())
    with pytest.raises(TypeError, match=r"PatchSimilarityNet.forward: a must be a torch.Tensor, got ndarray"):
        net(ok.numpy(), ok)


def test_bad_images_raise_clear_errors():
    net = _net(2)
    sim = net.as_similarity()
    img = torch.rand(2, 1, 30, 32)
    with pytest.raises(ValueError, match=r"LearnedSimilarity.forward: a and b must have the same shape"):
        sim(img, torch.rand(2, 1, 30, 31))
    with pytest.raises(ValueError, match=r"PatchSimilarityNet.score_map: a must be at least 17 voxels.*\(2, 1, 30, 12\)"):
        net.score_map(torch.rand(2, 1, 30, 12), torch.rand(2, 1, 30, 12))
    bad = img.clone()
    bad[1, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"LearnedSimilarity.forward: a contains NaN or Inf"):
        sim(bad, img)
    with pytest.raises(ValueError, match=r"LearnedSimilarity.forward: a must have 1 channel"):
        sim(torch.rand(2, 2, 30, 32), torch.rand(2, 2, 30, 32))


def test_bad_config_and_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match=r"PatchSimilarityConfig: ndim must be 2 or 3, got 4"):
        PatchSimilarityConfig(ndim=4)
    with pytest.raises(ValueError, match=r"PatchSimilarityConfig: patch_size must be odd.*16"):
        PatchSimilarityConfig(patch_size=16)
    with pytest.raises(ValueError, match=r"PatchSimilarityConfig: patch_size 11 is too small for 2 stages"):
        PatchSimilarityConfig(patch_size=11, channels=(8, 16))
    with pytest.raises(ValueError, match=r"PatchSimilarityConfig: channels must be a non-empty sequence"):
        PatchSimilarityConfig(channels=())
    with pytest.raises(ValueError, match=r"PatchSimilarityConfig: hidden must be a positive int, got 0"):
        PatchSimilarityConfig(hidden=0)
    with pytest.raises(TypeError, match=r"PatchSimilarityNet: config must be a PatchSimilarityConfig, got dict"):
        PatchSimilarityNet({"ndim": 2})
    net = _net(2)
    with pytest.raises(ValueError, match=r"LearnedSimilarity: score must be one of \('logit', 'probability'\), got 'prob'"):
        net.as_similarity(score="prob")
    with pytest.raises(TypeError, match=r"LearnedSimilarity: net must be a PatchSimilarityNet, got Conv2d"):
        LearnedSimilarity(torch.nn.Conv2d(2, 1, 3))
    with pytest.raises(TypeError, match=r"LearnedSimilarity: threshold must be a number or None, got str"):
        net.as_similarity(threshold="0.1")
