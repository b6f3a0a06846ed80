"""Unit tests for lesson 06's supervised regression network (course_lib.networks.regressor)."""

import dataclasses
import math

import pytest
import torch

from course_lib import classical, spatial, train
from course_lib.networks import AffineRegressor, RegressorConfig

torch.set_num_threads(1)

#: small grids and networks so that the whole file runs in a few seconds on one thread
SHAPES = {2: (24, 32), 3: (12, 16, 14)}
SMALL = dict(widths=(4, 8), growth=4, head=(16, 8))


def _net(ndim, output="affine", seed=0, **kw):
    torch.manual_seed(seed)
    return AffineRegressor(RegressorConfig(ndim=ndim, output=output, **{**SMALL, **kw}))


def _blobs(shape, n, generator):
    """``(n, 1, *shape)`` images of three Gaussian blobs at random places (structured, in [0, ~1])."""
    axes = torch.meshgrid(*[torch.arange(float(s)) for s in shape], indexing="ij")
    out = []
    for _ in range(n):
        img = torch.zeros(shape)
        for k in range(3):
            c = [0.2 * s + 0.6 * s * float(torch.rand(1, generator=generator)) for s in shape]
            img = img + torch.exp(-sum((a - ci) ** 2 for a, ci in zip(axes, c)) / (2 * (1.5 + k) ** 2))
        out.append(img)
    return torch.stack(out)[:, None]


def _pair(ndim, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return _blobs(SHAPES[ndim], n, g), _blobs(SHAPES[ndim], n, g)


def _perturb_final(net, scale=0.5, seed=1):
    """Give the (near-zero) final layers sizeable weights, so that outputs depend on the input."""
    g = torch.Generator().manual_seed(seed)
    finals = [net.out] if net.config.output == "affine" else [net.rotation, net.translation]
    with torch.no_grad():
        for layer in finals:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * scale)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("output", ["affine", "rigid"])
def test_output_shapes(ndim, output):
    net = _net(ndim, output)
    m, f = _pair(ndim, n=3)
    theta = net(m, f)
    k = {("affine", 2): 6, ("affine", 3): 12, ("rigid", 2): 3, ("rigid", 3): 6}[(output, ndim)]
    assert theta.shape == (3, k) == (3, net.config.n_params)
    mat = net.matrix(theta, SHAPES[ndim])
    assert mat.shape == (3, ndim + 1, ndim + 1)
    torch.testing.assert_close(mat, classical.params_to_matrix(theta, output, SHAPES[ndim]))
    convs = [mod for mod in net.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Conv3d))]
    assert convs and all(isinstance(c, torch.nn.Conv2d if ndim == 2 else torch.nn.Conv3d) for c in convs)


@pytest.mark.parametrize("ndim", [2, 3])
def test_rotation_branch_is_bounded(ndim):
    net = _net(ndim, "rigid")
    _perturb_final(net, scale=1e4)                          # huge pre-activations
    m, f = _pair(ndim, n=4)
    theta = net(m * 1e3, f)
    angles = theta[:, : net.config.n_angles]
    assert bool((angles.abs() <= math.pi).all())
    assert angles.abs().max() > 3.0                         # it does saturate near ±π
    # the translation branch is linear and unbounded: it grows with the huge weights
    assert theta[:, net.config.n_angles:].abs().max() > math.pi


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("output", ["affine", "rigid"])
def test_untrained_net_predicts_near_identity(ndim, output):
    net = _net(ndim, output)
    m, f = _pair(ndim, n=2)
    theta = net(m, f)
    assert theta.abs().max() < 1e-2
    eye = torch.eye(ndim + 1).expand(2, -1, -1)
    mat = net.matrix(theta, SHAPES[ndim])
    # in voxels: the identity up to a small fraction of a voxel everywhere
    disp = spatial.affine_to_displacement(mat, SHAPES[ndim])
    assert disp.abs().max() < 0.1
    torch.testing.assert_close(mat, eye, atol=0.1, rtol=0)


def test_siamese_weight_sharing():
    net = _net(2)
    _perturb_final(net)
    m, f = _pair(2, n=2)
    # one encoder module: the same weights encode both images
    encoders = [mod for mod in net.modules() if type(mod).__name__ == "_Encoder"]
    assert len(encoders) == 1 and encoders[0] is net.encoder
    n_conv = sum(isinstance(mod, torch.nn.Conv2d) for mod in net.modules())
    assert n_conv == sum(isinstance(mod, torch.nn.Conv2d) for mod in net.encoder.modules())
    torch.testing.assert_close(net.encode(m), net.encoder(m))
    # the order matters (moving vs fixed): swapping the inputs changes the parameters
    assert (net(m, f) - net(f, m)).abs().max() > 1e-5            # float noise is ~1e-7
    # both images' gradients flow into the same encoder weights
    w = net.encoder.stages[0][1].weight
    g_both = torch.autograd.grad(net(m, f).sum(), w)[0]
    assert g_both.abs().sum() > 0


def test_overfits_a_tiny_batch():
    torch.manual_seed(0)
    net = _net(2, widths=(8, 16), growth=4, head=(32, 16))
    shape = SHAPES[2]
    g = torch.Generator().manual_seed(3)
    fixed = _blobs(shape, 4, g)
    theta = (torch.rand(4, 6, generator=g) * 2 - 1) * 0.1
    moving = spatial.warp_affine(fixed, torch.linalg.inv(classical.params_to_matrix(theta, "affine", shape)))
    batch = (moving, fixed, theta)

    def step(model, b):
        return torch.nn.functional.mse_loss(model(b[0], b[1]), b[2])

    with torch.no_grad():
        before = step(net, batch).item()
    hist = train.fit(net, step, lambda: batch, steps=100, lr=1e-2, progress=False, seed=0)
    with torch.no_grad():
        after = step(net, batch).item()
    assert after < 0.01 * before, (before, after)
    assert hist["loss"][-1] < hist["loss"][0]


def test_checkpoint_round_trip(tmp_path):
    net = _net(3, "rigid")
    _perturb_final(net)
    m, f = _pair(3, n=2)
    path = train.save_checkpoint(tmp_path / "reg.pt", net, net.config)
    ckpt = train.load_checkpoint(path)
    config = RegressorConfig(**ckpt["config"])
    assert ckpt["config_class"] == "RegressorConfig"
    assert config == net.config and dataclasses.asdict(config) == dataclasses.asdict(net.config)
    net2 = AffineRegressor(config)
    train.load_checkpoint(path, net2)
    torch.testing.assert_close(net2(m, f), net(m, f))


@pytest.mark.parametrize("kw, err", [
    (dict(ndim=4), ValueError), (dict(output="similarity"), ValueError), (dict(widths=()), ValueError),
    (dict(growth=0), ValueError), (dict(head=(16, -1)), ValueError), (dict(in_channels=0), ValueError)])
def test_bad_config(kw, err):
    with pytest.raises(err, match="RegressorConfig"):
        RegressorConfig(**kw)
    with pytest.raises(TypeError, match="AffineRegressor"):
        AffineRegressor(dict(ndim=2))


def test_bad_input():
    net = _net(2)
    m, f = _pair(2, n=2)
    with pytest.raises(ValueError, match=r"AffineRegressor.forward: moving must have shape \(N, 1, H, W\).*got \(2, 1, 32\)"):
        net(m[:, :, 0], f)                                           # 3D tensor, missing an axis
    with pytest.raises(ValueError, match=r"fixed must have shape .*got \(2, 2, 24, 32\)"):
        net(m, torch.cat([f, f], 1))                                 # wrong channels
    with pytest.raises(ValueError, match=r"moving must have shape \(N, 1, H, W\) for config ndim=2"):
        net(torch.rand(2, 1, 8, 8, 8), torch.rand(2, 1, 8, 8, 8))    # 3D pair into a 2D net
    with pytest.raises(ValueError, match=r"same shape, got \(2, 1, 24, 32\) and \(2, 1, 24, 30\)"):
        net(m, f[..., :30])
    with pytest.raises(ValueError, match="same shape"):
        net(m, f[:1])
    bad = m.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="forward: moving contains NaN"):
        net(bad, f)
    with pytest.raises(TypeError, match="fixed must be a torch.Tensor"):
        net(m, f.numpy())
    with pytest.raises(TypeError, match="floating-point"):
        net(m, (f * 10).long())
    with pytest.raises(ValueError, match=r"matrix: params must have shape \(N, 6\).*got \(2, 3\)"):
        net.matrix(torch.zeros(2, 3), (24, 32))
    with pytest.raises(ValueError, match="matrix: shape must have 2 sizes"):
        net.matrix(torch.zeros(2, 6), (24, 32, 4))
