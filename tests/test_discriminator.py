"""Unit tests for lesson 10's patch discriminator (course_lib.networks.discriminator)."""

import math

import pytest
import torch

from course_lib import train
from course_lib.networks import Discriminator, DiscriminatorConfig

torch.set_num_threads(1)


def _net(seed=0, **kw) -> Discriminator:
    torch.manual_seed(seed)
    return Discriminator(DiscriminatorConfig(**kw))


def _convs(net):
    return [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]


# ------------------------------------------------------------------------------------ layout and shapes

def test_layout_is_fan_et_al_released_model():
    net = _net(ndim=2, in_channels=2)                                # every stage kept
    convs = _convs(net)
    assert [c.out_channels for c in convs] == [8, 8, 16, 16, 32, 32, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 2, 2, 1, 1]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert convs[0].in_channels == 2
    relus = [m for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert len(relus) == 6 and all(r.negative_slope == 0.2 for r in relus)   # none after the logits
    assert net.config.n_stages == 5 and net.min_input_size == 33


@pytest.mark.parametrize("ndim, size, stages, grid", [
    (2, (40, 48), 5, (2, 2)),         # full depth: 40 → 20, 10, 5, 3, 2
    (2, (33, 35), 5, (2, 2)),         # odd sizes: ceil(n / 2) per stage
    (2, (32, 40), 4, (2, 3)),         # a fifth stage would give 1 × 2: dropped
    (2, (16, 16), 3, (2, 2)),
    (2, (17, 23), 4, (2, 2)),
    (2, (3, 5), 1, (2, 3)),
    (3, (16, 16, 16), 3, (2, 2, 2)),
    (3, (9, 10, 11), 3, (2, 2, 2)),
    (3, (8, 12, 15), 2, (2, 3, 4)),
])
def test_small_inputs_drop_stages_so_the_logit_map_keeps_its_minimum_size(ndim, size, stages, grid):
    net = _net(ndim=ndim, in_channels=2, input_size=size)
    assert net.config.n_stages == stages
    assert sum(c.stride[0] == 2 for c in _convs(net)) == stages
    assert net.output_shape(size) == grid and min(grid) >= net.config.min_size
    out = net(torch.rand(2, 2, *size))
    assert out.shape == (2, 1, *grid)


@pytest.mark.parametrize("ndim", [2, 3])
def test_output_shape_matches_forward_for_even_and_odd_sizes(ndim):
    net = _net(ndim=ndim, in_channels=ndim, input_size=(12,) * ndim)     # a field discriminator
    for size in [(12,) * ndim, (13,) * ndim, (9, 15, 10)[:ndim], (16, 11, 14)[:ndim]]:
        out = net(torch.randn(1, ndim, *size))
        assert out.shape == (1, 1, *net.output_shape(size)), size
        assert net.output_shape(size) == tuple(math.ceil(s / 2 ** net.config.n_stages) for s in size)


def test_min_size_sets_the_depth():
    assert DiscriminatorConfig(input_size=(32, 32), min_size=1).n_stages == 5
    assert DiscriminatorConfig(input_size=(32, 32), min_size=2).n_stages == 4
    assert DiscriminatorConfig(input_size=(32, 32), min_size=4).n_stages == 3
    assert DiscriminatorConfig(input_size=(32, 32), min_size=64).n_stages == 0
    assert DiscriminatorConfig(input_size=(400, 400), widths=(4, 4)).n_stages == 2


# ------------------------------------------------------------------------------------ inputs

def test_a_pair_is_its_two_images_stacked_as_channels():
    net = _net(ndim=2, in_channels=2, input_size=(16, 20))
    a, b = torch.rand(3, 1, 16, 20), torch.rand(3, 1, 16, 20)
    torch.testing.assert_close(net(a, b), net(torch.cat([a, b], 1)))
    assert not torch.allclose(net(a, b), net(b, a))                       # the order matters


@pytest.mark.parametrize("ndim", [2, 3])
def test_a_displacement_field_has_ndim_channels(ndim):
    size = (16, 16) if ndim == 2 else (8, 10, 12)
    net = _net(ndim=ndim, in_channels=ndim, input_size=size)
    assert net(torch.randn(2, ndim, *size)).shape == (2, 1, *net.output_shape(size))
    with pytest.raises(ValueError, match=rf"Discriminator.forward: x must have shape \(N, {ndim}"):
        net(torch.randn(2, 2 if ndim == 3 else 3, *size))


def test_batch_samples_are_judged_independently():
    net = _net(ndim=2, in_channels=1, input_size=(16, 16))
    x = torch.rand(4, 1, 16, 16)
    torch.testing.assert_close(net(x)[2:3], net(x[2:3]))


# ------------------------------------------------------------------------------------ gradients

@pytest.mark.parametrize("sn", [False, True])
@pytest.mark.parametrize("ndim", [2, 3])
def test_gradients_reach_the_first_layer_and_the_input(ndim, sn):
    size = (16, 16) if ndim == 2 else (8, 8, 8)
    net = _net(ndim=ndim, in_channels=2, input_size=size, spectral_norm=sn)
    x = torch.rand(2, 1, *size, requires_grad=True)
    net(x, torch.rand(2, 1, *size)).mean().backward()
    first = _convs(net)[0]
    w = first.parametrizations.weight.original if sn else first.weight
    assert w.grad is not None and w.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters())


def test_spectral_norm_bounds_every_weight_and_is_off_by_default():
    plain = _net(ndim=2, input_size=(16, 16))
    assert not any(torch.nn.utils.parametrize.is_parametrized(c) for c in _convs(plain))
    net = _net(ndim=2, input_size=(16, 16), spectral_norm=True)
    convs = _convs(net)
    assert all(torch.nn.utils.parametrize.is_parametrized(c, "weight") for c in convs)
    x = torch.rand(2, 2, 16, 16)
    for _ in range(20):                                                   # power iterations (train mode)
        net(x)
    net.eval()
    for c in convs:
        sigma = torch.linalg.matrix_norm(c.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.02)
    raw = [torch.linalg.matrix_norm(c.weight.detach().flatten(1), ord=2).item() for c in _convs(plain)]
    assert max(raw) > 1.02 or min(raw) < 0.98                             # unnormalised without it


def test_spectral_norm_weights_survive_a_safe_checkpoint(tmp_path):
    net = _net(ndim=2, input_size=(16, 16), spectral_norm=True)
    x = torch.rand(2, 2, 16, 16)
    net(x)
    net.eval()
    path = train.save_checkpoint(tmp_path / "d.pt", net, net.config)
    other = _net(seed=5, ndim=2, input_size=(16, 16), spectral_norm=True)
    ckpt = train.load_checkpoint(path, other)
    other.eval()
    torch.testing.assert_close(other(x), net(x))
    assert DiscriminatorConfig(**ckpt["config"]) == net.config


# ------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("make, exc, words", [
    (lambda n: n(torch.rand(2, 2, 16)), ValueError, "x must have 4 dimensions"),
    (lambda n: n(torch.rand(2, 3, 16, 16)), ValueError, r"x must have shape \(N, 2, H, W\)"),
    (lambda n: n(torch.rand(2, 1, 16, 16), torch.rand(2, 2, 16, 16)), ValueError, "2 channels together"),
    (lambda n: n(torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 17)), ValueError, "same batch size and spatial"),
    (lambda n: n(torch.rand(2, 1, 16, 16), torch.rand(1, 1, 16, 16)), ValueError, "same batch size and spatial"),
    (lambda n: n(torch.rand(2, 2, 16, 16).double()), TypeError, "x must have dtype torch.float32"),
    (lambda n: n(torch.ones(2, 2, 16, 16, dtype=torch.int64)), TypeError, "x must be a floating-point"),
    (lambda n: n(torch.full((2, 2, 16, 16), float("nan"))), ValueError, "x contains NaN"),
    (lambda n: n(torch.rand(2, 1, 16, 16), "fixed"), TypeError, "y must be a torch.Tensor"),
    (lambda n: n([[1.0]]), TypeError, "x must be a torch.Tensor"),
    (lambda n: n(torch.rand(2, 2, 8, 16)), ValueError,
     r"x is too small: every spatial size must be >= 9 .*input_size=\(8, 16\)"),
    (lambda n: n.output_shape((16,)), ValueError, "spatial must have 2 entries"),
    (lambda n: n.output_shape((0, 4)), ValueError, "spatial must be >= 1"),
])
def test_forward_bad_input(make, exc, words):
    net = _net(ndim=2, in_channels=2, input_size=(16, 16))
    with pytest.raises(exc, match=r"Discriminator\.(forward|output_shape): .*" + words):
        make(net)


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(ndim=4), ValueError, "ndim must be 2 or 3"),
    (dict(in_channels=0), ValueError, "in_channels must be a positive int"),
    (dict(widths=()), ValueError, "widths must be a non-empty sequence"),
    (dict(widths=(8, 0)), ValueError, "widths must be a non-empty sequence"),
    (dict(head_width=2.5), ValueError, "head_width must be a positive int"),
    (dict(slope=1.5), ValueError, r"slope must be a number in \[0, 1\)"),
    (dict(min_size=0), ValueError, "min_size must be a positive int"),
    (dict(input_size=(16,)), ValueError, "input_size must have 2 entries"),
    (dict(input_size=(16, 2.5)), ValueError, "input_size must be a sequence of ints"),
    (dict(spectral_norm="yes"), TypeError, "spectral_norm must be a bool"),
])
def test_config_bad_input(kwargs, exc, words):
    with pytest.raises(exc, match="DiscriminatorConfig: " + words):
        DiscriminatorConfig(**kwargs)


def test_constructor_bad_input_and_default():
    with pytest.raises(TypeError, match="Discriminator: config must be a DiscriminatorConfig"):
        Discriminator({"ndim": 2})
    assert Discriminator().config == DiscriminatorConfig()
