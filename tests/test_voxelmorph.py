"""Unit tests for lessons 08-09: networks.UNet and VoxelMorph, the label (Dice) loss, fit checkpoints."""

import copy
import dataclasses

import pytest
import torch

from course_lib import data, metrics, regularizers, similarity, spatial, train
from course_lib.networks import UNet, VoxelMorph, VoxelMorphConfig, VoxelMorphOutput

torch.set_num_threads(1)

SHAPES = {2: (24, 32), 3: (12, 16, 14)}
#: narrow widths so that the file runs in seconds on one thread
SMALL = dict(encoder=(4, 8, 8), decoder=(8, 8, 8, 4))


def _net(ndim, seed=0, **kw):
    torch.manual_seed(seed)
    return VoxelMorph(VoxelMorphConfig(ndim=ndim, **{**SMALL, **kw}))


def _images(ndim, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = SHAPES[ndim]
    noise = torch.rand(2 * n, 1, *[max(2, s // 4) for s in shape], generator=g)
    img = spatial.resize_image(noise, shape)                         # smooth, structured
    return img[:n], img[n:]


def _perturb_flow(net, scale=0.05, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.flow.weight.copy_(torch.randn(net.flow.weight.shape, generator=g) * scale)


# --------------------------------------------------------------------------- U-Net


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("odd", [False, True])
def test_unet_keeps_spatial_size_for_any_size(ndim, odd):
    shape = tuple(s + 1 for s in SHAPES[ndim]) if odd else SHAPES[ndim]      # 25×33 / 13×17×15
    net = UNet(ndim, in_channels=2, **SMALL)
    out = net(torch.rand(2, 2, *shape))
    assert out.shape == (2, SMALL["decoder"][-1], *shape) == (2, net.out_channels, *shape)


def test_unet_default_widths_are_the_papers():
    net = UNet(2)
    assert net.encoder_widths == (16, 32, 32, 32)
    assert net.decoder_widths == (32, 32, 32, 32, 32, 16, 16)
    assert net.out_channels == 16


def test_unet_decoder_of_encoder_length_ends_with_a_skip():
    net = UNet(2, in_channels=2, encoder=(4, 8), decoder=(8, 6))
    assert net(torch.rand(1, 2, 16, 20)).shape == (1, 6 + 2, 16, 20)


# --------------------------------------------------------------------------- VoxelMorph


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("diffeomorphic", [False, True])
def test_output_shapes_and_type(ndim, diffeomorphic):
    net = _net(ndim, diffeomorphic=diffeomorphic)
    m, f = _images(ndim, n=3)
    out = net(m, f)
    assert isinstance(out, VoxelMorphOutput)
    assert out.warped.shape == m.shape
    assert out.displacement.shape == out.flow.shape == (3, ndim, *SHAPES[ndim])
    assert out.warped_labels is None


@pytest.mark.parametrize("ndim", [2, 3])
def test_flow_head_starts_near_zero(ndim):
    net = _net(ndim)
    m, f = _images(ndim)
    out = net(m, f)
    assert float(out.displacement.detach().abs().max()) < 1e-3
    assert torch.allclose(out.warped, m, atol=1e-3)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("diffeomorphic", [False, True])
def test_zero_flow_head_is_the_identity(ndim, diffeomorphic):
    net = _net(ndim, diffeomorphic=diffeomorphic)
    with torch.no_grad():
        net.flow.weight.zero_()
    m, f = _images(ndim)
    out = net(m, f)
    assert float(out.displacement.detach().abs().max()) == 0.0
    assert torch.allclose(out.warped, m, atol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
def test_warped_is_warp_of_moving_by_displacement(ndim):
    net = _net(ndim)
    _perturb_flow(net)
    m, f = _images(ndim)
    out = net(m, f)
    assert float(out.displacement.detach().abs().max()) > 0.05                  # a non-trivial field
    assert torch.allclose(out.warped, spatial.warp(m, out.displacement), atol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("downsize", [1, 2])
def test_diffeomorphic_integration_has_positive_jacobian(ndim, downsize):
    """A large random smooth velocity: its plain use as a displacement folds, its exponential does not."""
    net = _net(ndim, diffeomorphic=True, int_downsize=downsize)
    v = data.random_velocity(SHAPES[ndim], generator=3, magnitude=10.0, spacing=6)
    assert float(metrics.folding_fraction(v)) > 0                       # the velocity itself folds
    u = net.integrate(v)
    assert u.shape == v.shape
    assert float(spatial.jacobian_determinant(u).min()) > 0
    if downsize == 1:                                                   # exactly spatial's integrator
        assert torch.allclose(u, spatial.integrate_velocity(v, net.config.int_steps), atol=1e-6)
    else:                                                               # close to it
        ref = spatial.integrate_velocity(v, net.config.int_steps)
        assert float((u - ref).abs().mean()) < 0.1 * float(ref.abs().mean())


def test_diffeomorphic_forward_uses_the_integrated_velocity():
    net = _net(2, diffeomorphic=True, int_downsize=1)
    _perturb_flow(net, scale=0.5)
    m, f = _images(2)
    with torch.no_grad():
        out = net(m, f)
    assert torch.allclose(out.displacement, spatial.integrate_velocity(out.flow, 7), atol=1e-5)
    assert float(spatial.jacobian_determinant(out.displacement).min()) > 0


@pytest.mark.parametrize("ndim", [2, 3])
def test_label_warping(ndim):
    net = _net(ndim)
    _perturb_flow(net)
    m, f = _images(ndim)
    labels = (m * 4).long().clamp(0, 3)                                 # integer map (N, 1, *S)
    out = net(m, f, labels=labels)
    assert out.warped_labels.dtype == torch.int64
    assert torch.equal(out.warped_labels, spatial.warp_labels(labels, out.displacement))   # the course's one way
    onehot = metrics.one_hot(labels, [1, 2, 3])
    out = net(m, f, labels=onehot)
    assert out.warped_labels.shape == onehot.shape
    assert torch.allclose(out.warped_labels, spatial.warp(onehot, out.displacement), atol=1e-6)


def test_label_warping_is_differentiable():
    net = _net(2)
    m, f = _images(2)
    onehot = metrics.one_hot((m * 3).long(), [1, 2])
    out = net(m, f, labels=onehot)
    (1 - similarity.soft_dice(out.warped_labels, metrics.one_hot((f * 3).long(), [1, 2]))).backward()
    assert net.flow.weight.grad is not None and float(net.flow.weight.grad.abs().sum()) > 0


def test_register_is_inference_without_gradient():
    net = _net(2)
    net.train()
    m, f = _images(2)
    u = net.register(m, f)
    assert u.shape == (2, 2, *SHAPES[2]) and not u.requires_grad
    assert net.training                                                # mode restored


# --------------------------------------------------------------------------- the label loss


def test_soft_dice_loss_is_one_minus_dice_on_one_hot_labels():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (3, 1, 20, 24), generator=g)
    b = torch.randint(0, 4, (3, 1, 20, 24), generator=g)
    values = [1, 2, 3]
    hard = metrics.dice(a, b, values)                                   # (N, L), all present
    soft = similarity.soft_dice(metrics.one_hot(a, values), metrics.one_hot(b, values))
    assert torch.allclose(1 - soft, 1 - hard.mean(), atol=1e-5)
    assert similarity.soft_dice.higher_is_better
    assert torch.allclose(similarity.as_loss(similarity.soft_dice)(metrics.one_hot(a, values),
                                                                   metrics.one_hot(b, values)), -soft)


def test_soft_dice_of_identical_maps_is_one_and_module_twin_agrees():
    lab = torch.randint(0, 3, (2, 1, 10, 12), generator=torch.Generator().manual_seed(1))
    oh = metrics.one_hot(lab, [0, 1, 2])
    assert torch.allclose(similarity.soft_dice(oh, oh), torch.tensor(1.0))
    assert torch.allclose(similarity.SoftDice()(oh, 1 - oh), similarity.soft_dice(oh, 1 - oh))


def test_one_hot_channels_and_background():
    lab = torch.tensor([[[[0, 2], [5, 2]]]])
    oh = metrics.one_hot(lab, [2, 5])
    assert oh.shape == (1, 2, 2, 2) and oh.dtype == torch.float32
    assert oh.sum(1).tolist() == [[[0.0, 1.0], [1.0, 1.0]]]              # background voxel: no channel


# --------------------------------------------------------------------------- training and checkpoints


def _step(model, batch):
    m, f = batch
    out = model(m, f)
    return -similarity.lncc(out.warped, f, window=5) + 0.1 * regularizers.diffusion(out.flow)


def _batch():
    g = torch.Generator().manual_seed(5)
    f, _ = _images(2, n=2, seed=7)
    u = data.random_velocity(SHAPES[2], generator=g, magnitude=2.0, spacing=8, n=2)
    return spatial.warp(f, u), f


def test_tiny_overfit_loss_falls():
    """One pair, MSE + diffusion: the network learns to undo a known smooth deformation."""
    net = _net(2)
    f, _ = _images(2, n=1, seed=7)
    u = data.random_velocity(SHAPES[2], generator=5, magnitude=3.0, spacing=8)
    m = spatial.warp(f, u)

    def mse_step(model, batch):
        out = model(*batch)
        return similarity.ssd(out.warped, batch[1]) + 0.01 * regularizers.diffusion(out.flow)

    hist = train.fit(net, mse_step, [(m, f)], steps=60, lr=3e-3, seed=0, progress=False)
    first, last = sum(hist["loss"][:5]) / 5, sum(hist["loss"][-5:]) / 5
    assert last < 0.5 * first, (first, last)
    with torch.no_grad():
        assert float(similarity.ssd(net(m, f).warped, f)) < 0.5 * float(similarity.ssd(m, f))


def test_checkpoint_round_trip_with_config(tmp_path):
    net = _net(3, diffeomorphic=True)
    _perturb_flow(net)
    path = train.save_checkpoint(tmp_path / "vxm.pt", net, net.config, step=7)
    ckpt = train.load_checkpoint(path)
    cfg = VoxelMorphConfig(**ckpt["config"])
    assert cfg == net.config and ckpt["config_class"] == "VoxelMorphConfig" and ckpt["step"] == 7
    clone = VoxelMorph(cfg)
    clone.load_state_dict(ckpt["model"])
    m, f = _images(3)
    with torch.no_grad():
        assert torch.equal(clone(m, f).displacement, net(m, f).displacement)


def test_fit_resumes_from_its_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    batch = _batch()
    # one uninterrupted run of 12 steps
    ref = _net(2)
    h_ref = train.fit(ref, _step, [batch], steps=12, lr=3e-3, seed=0, progress=False)
    # the same run interrupted after 6 steps (saved every 3), then resumed to 12
    net = _net(2)
    h1 = train.fit(net, _step, [batch], steps=6, lr=3e-3, seed=0, progress=False,
                   checkpoint=path, checkpoint_every=3, config=net.config)
    assert train.load_checkpoint(path)["step"] == 6 and len(h1["loss"]) == 6
    resumed = _net(2, seed=123)                                         # different initial weights
    h2 = train.fit(resumed, _step, [batch], steps=12, lr=3e-3, progress=False, checkpoint=path,
                   config=resumed.config)
    assert len(h2["loss"]) == 12 and h2["loss"][:6] == h1["loss"]
    assert train.load_checkpoint(path)["step"] == 12
    # one fixed batch: weights and Adam state restored => the same trajectory as uninterrupted
    assert torch.allclose(torch.tensor(h2["loss"]), torch.tensor(h_ref["loss"]), atol=1e-5)
    for p, q in zip(resumed.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-5)


def test_fit_refuses_a_checkpoint_past_steps(tmp_path):
    net = _net(2)
    path = tmp_path / "run.pt"
    train.fit(net, _step, [_batch()], steps=4, progress=False, checkpoint=path)
    with pytest.raises(ValueError, match="already at step 4"):
        train.fit(net, _step, [_batch()], steps=2, progress=False, checkpoint=path)


# --------------------------------------------------------------------------- bad input


def test_bad_config():
    with pytest.raises(ValueError, match="ndim must be 2 or 3"):
        VoxelMorphConfig(ndim=4)
    with pytest.raises(ValueError, match="encoder must be a non-empty sequence"):
        VoxelMorphConfig(encoder=())
    with pytest.raises(ValueError, match="decoder needs at least one width per encoder level"):
        VoxelMorphConfig(encoder=(8, 8, 8), decoder=(8, 8))
    with pytest.raises(ValueError, match="int_downsize must be a positive int"):
        VoxelMorphConfig(int_downsize=0)
    with pytest.raises(TypeError, match="diffeomorphic must be a bool"):
        VoxelMorphConfig(diffeomorphic="yes")
    with pytest.raises(TypeError, match="config must be a VoxelMorphConfig"):
        VoxelMorph(dataclasses.asdict(VoxelMorphConfig()))
    with pytest.raises(ValueError, match="ndim must be 2 or 3"):
        UNet(1)


def test_bad_forward_input():
    net = _net(2)
    m, f = _images(2)
    with pytest.raises(ValueError, match=r"moving must have shape \(N, 1, H, W\).*got \(2, 1, 4, 24, 32\)"):
        net(m[:, :, None].expand(-1, -1, 4, -1, -1), f)
    with pytest.raises(ValueError, match="moving and fixed must have the same shape"):
        net(m, f[:1])
    with pytest.raises(TypeError, match="fixed must be a floating-point tensor"):
        net(m, f.long())
    with pytest.raises(ValueError, match="moving contains NaN"):
        net(m * float("nan"), f)
    with pytest.raises(ValueError, match="labels must have the batch size and spatial shape"):
        net(m, f, labels=torch.zeros(2, 1, 10, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="integer labels must be one label map"):
        net(m, f, labels=torch.zeros(2, 3, 24, 32, dtype=torch.long))
    with pytest.raises(TypeError, match="labels must be a torch.Tensor"):
        net(m, f, labels=[1, 2])
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2, H, W\)"):
        UNet(2, in_channels=2)(torch.rand(1, 3, 8, 8))


def test_bad_label_loss_input():
    a = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        similarity.soft_dice(a, a[:, :2])
    with pytest.raises(TypeError, match="b must be a floating-point tensor"):
        similarity.soft_dice(a, a.long())
    with pytest.raises(TypeError, match="labels must be an integer label map"):
        metrics.one_hot(a[:, :1], [1])
    with pytest.raises(ValueError, match=r"labels must be \(N, 1, \*spatial\)"):
        metrics.one_hot(a.long(), [1])
    with pytest.raises(ValueError, match="values must name at least one label"):
        metrics.one_hot(a[:, :1].long(), [])


def test_flow_init_std_sets_the_head_scale_and_is_checked():
    torch.manual_seed(0)
    small = VoxelMorph(VoxelMorphConfig(ndim=2, encoder=(4, 4), decoder=(4, 4)))
    torch.manual_seed(0)
    large = VoxelMorph(VoxelMorphConfig(ndim=2, encoder=(4, 4), decoder=(4, 4), flow_init_std=1e-2))
    assert abs(float(small.flow.weight.std()) - 1e-5) < 5e-6
    assert abs(float(large.flow.weight.std()) - 1e-2) < 5e-3
    for bad in (-1.0, 2.0, "a", True):
        with pytest.raises(ValueError, match="VoxelMorphConfig: flow_init_std must be a number in \\[0, 1\\]"):
            VoxelMorphConfig(flow_init_std=bad)


def test_unet_gives_a_channels_last_model_its_input_in_that_layout():
    # a 2-channel input reads as plain contiguous; a channels_last model converts it, so that the skip
    # concatenations stay channels_last (no copy before every convolution), with the same output
    torch.manual_seed(0)
    plain = UNet(ndim=2, in_channels=2, encoder=(4, 8), decoder=(8, 8, 4)).eval()
    fast = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    seen = []
    fast.down[0][0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x = torch.rand(2, 2, 16, 16)
    assert torch.allclose(fast(x), plain(x), atol=1e-5)
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()
