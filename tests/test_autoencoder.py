"""Unit tests for lesson 04's stacked autoencoder (course_lib.networks.autoencoder)."""

import dataclasses

import pytest
import torch

from course_lib import features, spatial, train
from course_lib.networks import SAEConfig, StackedAutoencoder
from course_lib.train import train_sae

torch.set_num_threads(1)


def _patches(ndim: int, radius: int, n: int = 64, seed: int = 0) -> torch.Tensor:
    """Normalized patches (zero mean, unit variance per voxel) of a smooth random image: (n, (2r+1)^ndim)."""
    g = torch.Generator().manual_seed(seed)
    shape = (40, 44) if ndim == 2 else (20, 22, 18)
    img = spatial.gaussian_blur(torch.rand(1, 1, *shape, generator=g), 1.5)
    lo = torch.tensor([radius] * ndim, dtype=torch.float32)
    hi = torch.tensor(shape, dtype=torch.float32) - 1 - radius
    pts = lo + torch.rand(n, ndim, generator=g) * (hi - lo)
    d = features.patch_descriptor(img, pts, radius)
    return d * d.shape[1] ** 0.5


@pytest.mark.parametrize("ndim, radius", [(2, 3), (2, 5), (3, 2)])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_shapes_2d_and_3d_patches(ndim, radius, activation):
    x = _patches(ndim, radius, n=10)
    f = (2 * radius + 1) ** ndim
    sae = StackedAutoencoder(SAEConfig(input_size=f, hidden=(48, 24), code_size=6, activation=activation))
    assert sae.n_layers == 3 and sae.config.widths == (f, 48, 24, 6)
    assert sae.encode(x).shape == (10, 6)
    assert sae.encode(x, depth=1).shape == (10, 48) and sae.encode(x, depth=0).shape == (10, f)
    assert sae(x).shape == (10, f)
    assert sae.decode(sae.encode(x)).shape == (10, f)
    # a (P, C, *patch) batch from sample_patches is flattened
    assert sae(x.view(10, 1, *[2 * radius + 1] * ndim)).shape == (10, f)


def test_codes_lie_in_the_activation_range():
    x = _patches(2, 3, n=20)
    for act, lo, hi in (("sigmoid", 0, 1), ("tanh", -1, 1), ("relu", 0, float("inf"))):
        z = StackedAutoencoder(SAEConfig(input_size=49, hidden=(16,), code_size=4, activation=act)).encode(x)
        assert z.min() >= lo and z.max() <= hi, act


def test_layerwise_parameters_are_one_encoder_and_its_decoder():
    sae = StackedAutoencoder(SAEConfig(input_size=49, hidden=(16, 8), code_size=4))
    all_ids = {id(p) for p in sae.parameters()}
    seen = set()
    for k in range(sae.n_layers):
        ps = sae.layerwise_parameters(k)
        assert len(ps) == 4                                     # 2 weights + 2 biases
        ids = {id(p) for p in ps}
        assert ids <= all_ids and not ids & seen
        seen |= ids
    assert seen == all_ids
    shapes = [tuple(p.shape) for p in sae.layerwise_parameters(1)]
    assert shapes == [(8, 16), (8,), (16, 8), (16,)]


def test_greedy_stage_trains_only_its_layer():
    x = _patches(2, 3)
    sae = StackedAutoencoder(SAEConfig(input_size=49, hidden=(16,), code_size=4))
    before = {n: p.detach().clone() for n, p in sae.named_parameters()}
    loss, logs = sae.layer_loss(1, x)
    loss.backward()
    for name, p in sae.named_parameters():
        trained = name.startswith(("encoders.1.", "decoders.1."))
        assert (p.grad is not None and p.grad.abs().sum() > 0) == trained, name
    assert set(logs) == {"mse", "sparsity"}
    assert all(torch.equal(p, before[n]) for n, p in sae.named_parameters())


@pytest.mark.parametrize("ndim, radius", [(2, 3), (3, 2)])
def test_training_decreases_the_loss_on_a_tiny_batch(ndim, radius):
    x = _patches(ndim, radius, n=32)
    f = x.shape[1]
    torch.manual_seed(0)
    sae = StackedAutoencoder(SAEConfig(input_size=f, hidden=(32,), code_size=8, activation="tanh"))
    with torch.no_grad():
        start = sae.loss(x)[0].item()
    hist = train_sae(sae, [x], layer_steps=40, finetune_steps=120, lr=3e-3, progress=False)
    assert set(hist) == {"layer0", "layer1", "finetune"}
    assert all(len(h["loss"]) == (120 if k == "finetune" else 40) for k, h in hist.items())
    for k, h in hist.items():                                   # every stage lowers its own loss
        assert h["loss"][-1] < 0.8 * h["loss"][0], (k, h["loss"][0], h["loss"][-1])
    with torch.no_grad():
        end = sae.loss(x)[0].item()
    assert end < 0.5 * start, (start, end)


@pytest.mark.parametrize("kind, activation", [("kl", "sigmoid"), ("kl", "tanh"), ("l1", "relu")])
def test_sparsity_penalty(kind, activation):
    cfg = SAEConfig(input_size=49, hidden=(16,), code_size=8, activation=activation, sparsity=kind,
                    sparsity_weight=0.5, sparsity_target=0.1)
    sae = StackedAutoencoder(cfg)
    if kind == "kl":
        # KL(ρ‖ρ̂) = 0 exactly when every unit's mean activation equals ρ, and > 0 otherwise
        at_target = torch.full((5, 8), 0.1 if activation == "sigmoid" else -0.8)
        assert sae.sparsity_penalty(at_target).abs() < 1e-5
        assert sae.sparsity_penalty(torch.full((5, 8), 0.5 if activation == "sigmoid" else 0.0)) > 0.1
    else:
        h = torch.tensor([[0.0, 2.0], [1.0, 3.0]])
        assert torch.isclose(sae.sparsity_penalty(h), torch.tensor(1.5))
    x = _patches(2, 3, n=16)
    loss, logs = sae.loss(x)
    assert torch.isclose(loss, torch.tensor(logs["mse"] + 0.5 * logs["sparsity"]), rtol=1e-5)
    plain = StackedAutoencoder(dataclasses.replace(cfg, sparsity="none"))
    assert plain.sparsity_penalty(torch.rand(4, 8)) == 0


def test_config_round_trip_through_checkpoint(tmp_path):
    cfg = SAEConfig(input_size=125, hidden=(40, 20), code_size=7, activation="tanh", sparsity="l1",
                    sparsity_weight=0.01)
    sae = StackedAutoencoder(cfg)
    opt = torch.optim.Adam(sae.parameters())
    path = train.save_checkpoint(tmp_path / "sae.pt", sae, cfg, optimizer=opt, step=3)
    ckpt = train.load_checkpoint(path)
    assert ckpt["config_class"] == "SAEConfig"
    cfg2 = SAEConfig(**ckpt["config"])
    assert cfg2 == cfg and cfg2.hidden == (40, 20)
    sae2 = StackedAutoencoder(cfg2)
    train.load_checkpoint(path, sae2)
    x = _patches(3, 2, n=6)
    assert torch.equal(sae.encode(x), sae2.encode(x)) and torch.equal(sae(x), sae2(x))


def test_bad_input_gives_clear_errors():
    sae = StackedAutoencoder(SAEConfig(input_size=49, hidden=(16,), code_size=4))
    with pytest.raises(ValueError, match=r"StackedAutoencoder.encode: patches must have 49 features .* got 50"):
        sae.encode(torch.zeros(3, 50))
    with pytest.raises(ValueError, match=r"StackedAutoencoder.forward|StackedAutoencoder.encode: patches must be"):
        sae(torch.zeros(49))
    with pytest.raises(TypeError, match=r"StackedAutoencoder.encode: patches must have dtype torch.float32.*got torch.float64"):
        sae.encode(torch.zeros(3, 49, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"patches must have dtype torch.float32.*got torch.int64"):
        sae(torch.zeros(3, 49, dtype=torch.long))
    with pytest.raises(TypeError, match="StackedAutoencoder.encode: patches must be a torch.Tensor, got list"):
        sae.encode([[0.0] * 49])
    nan = torch.zeros(3, 49)
    nan[1, 5] = float("nan")
    with pytest.raises(ValueError, match="StackedAutoencoder.loss: patches contain NaN"):
        sae.loss(nan)
    with pytest.raises(ValueError, match="StackedAutoencoder.decode: codes must be"):
        sae.decode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="StackedAutoencoder.encode: depth must be in"):
        sae.encode(torch.zeros(3, 49), depth=3)
    with pytest.raises(ValueError, match="layerwise_parameters: k must be"):
        sae.layerwise_parameters(2)
    with pytest.raises(TypeError, match="StackedAutoencoder: config must be an SAEConfig"):
        StackedAutoencoder({"input_size": 49})


@pytest.mark.parametrize("kwargs, match", [
    ({"input_size": 0}, "SAEConfig: input_size must be a positive int"),
    ({"hidden": (16, -2)}, "SAEConfig: hidden must be a sequence of positive ints"),
    ({"activation": "gelu"}, "SAEConfig: activation must be one of"),
    ({"sparsity": "l2"}, "SAEConfig: sparsity must be one of"),
    ({"sparsity": "kl", "activation": "relu"}, "SAEConfig: sparsity='kl' needs activation"),
    ({"sparsity_target": 1.5}, r"SAEConfig: sparsity_target must be in \(0, 1\)"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SAEConfig(**kwargs)
