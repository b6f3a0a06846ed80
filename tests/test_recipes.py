"""course_lib.recipes: the training losses of lessons 08-10 as plain-data recipes (lesson 11)."""

import pytest
import torch

from course_lib import data, metrics, recipes, regularizers, similarity, train
from course_lib.networks.voxelmorph import VoxelMorphOutput
from course_lib.recipes import VoxelMorphRecipe
from course_lib.spatial import warp

def _batch(n=2, seed=3):
    t = data.coarsen(data.template_slices("axial", size=(48, 64)), 2)
    return data.pair_batch(n, seed, template=t, augment=False, magnitude=1.0, spacing=6, subject_magnitude=0.5)


def _maps(labels):
    return metrics.one_hot(labels, [v for v in range(1, 120)])[:, :8]


class _Fixed(torch.nn.Module):
    """A stand-in 'network' that always returns a given displacement (to test the losses exactly)."""

    def __init__(self, u):
        super().__init__()
        self.u = torch.nn.Parameter(u.clone())

    def forward(self, moving, fixed, labels=None):
        return VoxelMorphOutput(warp(moving, self.u), self.u, self.u,
                                None if labels is None else warp(labels, self.u))


def test_every_loss_runs_and_logs_its_terms():
    b = _batch()
    shape = b["fixed"].shape[2:]
    for r in [VoxelMorphRecipe(loss=loss, steps=1) for loss in recipes.LOSSES] + [
            VoxelMorphRecipe(loss="semi", lam=0.0, adversarial_weight=0.1, steps=1)]:
        net = recipes.build_voxelmorph(r, ndim=2)
        disc = recipes.build_discriminator(r, shape) if r.discriminator else None
        value, logs = recipes.voxelmorph_loss(r, net, b, label_maps=_maps, discriminator=disc)
        assert value.dim() == 0 and torch.isfinite(value), r
        assert abs(sum(logs.values()) - float(value)) < 1e-4, (r, logs)
        if disc is not None:
            assert "adversarial" in logs
            d_loss, stats = recipes.discriminator_step(r, net, disc, b, 0)
            assert d_loss.dim() == 0 and 0 <= stats["d_acc"] <= 1


def test_adversarial_recipes_judge_the_right_samples():
    b = _batch()
    fan = VoxelMorphRecipe(loss="adversarial", steps=10)
    hu = VoxelMorphRecipe(loss="semi", lam=0.0, adversarial_weight=0.1)
    assert (fan.discriminator, hu.discriminator, VoxelMorphRecipe().discriminator) == ("image", "field", None)
    assert hu.needs_truth and not fan.needs_truth
    assert recipes.build_discriminator(fan, (24, 32)).config.in_channels == 2
    assert recipes.build_discriminator(hu, (24, 32)).config.in_channels == 2       # ndim channels of a 2D field
    assert recipes.build_discriminator(hu, (8, 8, 8)).config.in_channels == 3
    m, f = b["moving"], b["fixed"]
    assert torch.allclose(recipes.fan_reference(m, f, 4, 10), 0.2 * m + 0.8 * f)
    assert torch.allclose(recipes.fan_reference(m, f, 5, 10), 0.1 * m + 0.9 * f)
    with pytest.raises(ValueError, match="moving and fixed must have the same shape"):
        recipes.fan_reference(m, f[..., :8], 0, 10)
    with pytest.raises(ValueError, match="step"):
        recipes.fan_reference(m, f, -1, 10)
    with pytest.raises(ValueError, match="shape must be the 2 or 3 spatial sizes"):
        recipes.build_discriminator(fan, (24,))
    with pytest.raises(TypeError, match="discriminator_step: recipe 'adversarial' trains against"):
        recipes.discriminator_step(fan, recipes.build_voxelmorph(fan, 2), None, b, 0)
    # Hu's regulariser reads the true field: a batch without it is refused, naming the key
    net = recipes.build_voxelmorph(hu, ndim=2)
    disc = recipes.build_discriminator(hu, m.shape[2:])
    no_truth = {k: v for k, v in b.items() if k != "displacement"}
    with pytest.raises(KeyError, match="adversarial_weight=0.1 needs batch keys"):
        recipes.voxelmorph_loss(hu, net, no_truth, label_maps=_maps, discriminator=disc)
    with pytest.raises(TypeError, match="pass discriminator=build_discriminator"):
        recipes.voxelmorph_loss(fan, net, b)
    with pytest.raises(ValueError, match="trains no discriminator"):
        recipes.build_discriminator(VoxelMorphRecipe(), (24, 32))
    with pytest.raises(ValueError, match="adversarial_weight must be 0 with loss='adversarial'"):
        VoxelMorphRecipe(loss="adversarial", adversarial_weight=0.1)
    with pytest.raises(ValueError, match="needs discriminator="):
        recipes.train_voxelmorph(net, hu, lambda: b, label_maps=_maps)


def test_supervised_loss_is_zero_at_the_true_field_and_dual_reduces_to_lncc_at_weight_zero():
    b = _batch()
    sup = VoxelMorphRecipe(loss="supervised")
    value, _ = recipes.voxelmorph_loss(sup, _Fixed(b["displacement"]), b)
    assert float(value) == pytest.approx(0.0, abs=1e-10)
    u = 0.3 * b["displacement"]
    lncc = recipes.voxelmorph_loss(VoxelMorphRecipe(loss="lncc", lam=0.2), _Fixed(u), b)[0]
    dual0 = recipes.voxelmorph_loss(VoxelMorphRecipe(loss="dual", lam=0.2, field_weight=0.0), _Fixed(u), b)[0]
    assert float(dual0) == pytest.approx(float(lncc), abs=1e-6)
    expect = 1 - similarity.lncc(warp(b["moving"], u), b["fixed"]) + 0.2 * regularizers.diffusion(u)
    assert float(lncc) == pytest.approx(float(expect), abs=1e-6)


def test_label_loss_is_zero_for_identical_one_hot_maps_and_lowest_for_identical_maps():
    b = _batch()
    m = _maps(b["fixed_labels"])
    assert float(recipes.multiscale_dice_loss(m, m, scales=(1,))) == pytest.approx(0.0, abs=1e-5)
    # pooled maps are fractional, and 2 sum(a^2) / (2 sum(a)) < 1 for them: the multi-scale loss of identical
    # maps is above 0 (lesson 09's loss, the same), but below that of the unregistered maps
    same, moved = recipes.multiscale_dice_loss(m, m), recipes.multiscale_dice_loss(_maps(b["moving_labels"]), m)
    assert 0 < float(same) < float(moved)
    with pytest.raises(ValueError, match="same shape"):
        recipes.multiscale_dice_loss(m, m[:, :3])


def test_one_recipe_trained_twice_gives_identical_weights():
    b = [_batch(2, s) for s in range(3)]
    r = VoxelMorphRecipe(loss="lncc", steps=4, seed=7)
    nets = []
    for _ in range(2):
        net = recipes.build_voxelmorph(r, ndim=2)
        recipes.train_voxelmorph(net, r, b)
        nets.append(net)
    for p, q in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.equal(p, q)
    # an adversarial recipe too: the discriminator is seeded by the recipe, so the network is the same again
    adv = VoxelMorphRecipe(loss="adversarial", steps=3, seed=7)
    advs = []
    for _ in range(2):
        net = recipes.build_voxelmorph(adv, ndim=2)
        h = recipes.train_voxelmorph(net, adv, b)
        assert len(h["d_loss"]) == 3 and len(h["adversarial"]) == 3
        advs.append(net)
    for p, q in zip(advs[0].state_dict().values(), advs[1].state_dict().values()):
        assert torch.equal(p, q)
    assert any(not torch.equal(p, q) for p, q in zip(advs[0].state_dict().values(), nets[0].state_dict().values()))
    other = recipes.build_voxelmorph(VoxelMorphRecipe(loss="lncc", steps=4, seed=8), ndim=2)
    assert not torch.equal(next(iter(other.state_dict().values())), next(iter(nets[0].state_dict().values())))


def test_cached_model_reuses_a_recipe_and_retrains_a_changed_one(tmp_path):
    b = [_batch(2, s) for s in range(2)]
    calls = []

    def get(r):
        def trainer(m):
            calls.append(r.loss)
            return recipes.train_voxelmorph(m, r, b)
        return train.cached_model("vm", r.as_dict(), lambda: recipes.build_voxelmorph(r, 2), trainer,
                                  directory=tmp_path)

    r = VoxelMorphRecipe(loss="mse", steps=2)
    m1, info1 = get(r)
    m2, info2 = get(r)
    assert not info1["loaded"] and info2["loaded"] and calls == ["mse"]
    for p, q in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(p, q)
    _, info3 = get(VoxelMorphRecipe(loss="mse", steps=3))
    assert not info3["loaded"] and calls == ["mse", "mse"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(loss="ncc"), "loss must be one of"),
    (dict(lam=-1.0), "lam"),
    (dict(steps=0), "steps"),
    (dict(decay=1.5), "decay"),
    (dict(seed=-1), "seed"),
    (dict(diffeomorphic=1), "diffeomorphic must be a bool"),
    (dict(adversarial_weight=-0.1), "adversarial_weight"),
    (dict(lr_d=-1.0), "lr_d"),
    (dict(loss="supervised", adversarial_weight=0.1), "adversarial_weight must be 0"),
])
def test_bad_recipes_are_refused_with_the_argument_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        VoxelMorphRecipe(**kwargs)


def test_missing_batch_keys_and_label_maps_are_named():
    b = _batch()
    net = recipes.build_voxelmorph(VoxelMorphRecipe(), ndim=2)
    with pytest.raises(KeyError, match="displacement"):
        recipes.voxelmorph_loss(VoxelMorphRecipe(loss="dual"), net, {"moving": b["moving"], "fixed": b["fixed"],
                                                                    "fixed_mask": b["fixed_mask"]})
    with pytest.raises(TypeError, match="label_maps"):
        recipes.voxelmorph_loss(VoxelMorphRecipe(loss="labels"), net, b)
    with pytest.raises(TypeError, match="recipe must be a VoxelMorphRecipe"):
        recipes.voxelmorph_loss({"loss": "lncc"}, net, b)
    with pytest.raises(TypeError, match="recipe must be a VoxelMorphRecipe"):
        recipes.train_voxelmorph(net, "lncc", [b])


def test_build_refuses_a_recipe_of_the_wrong_type():
    with pytest.raises(TypeError, match="build_voxelmorph: recipe must be a VoxelMorphRecipe, got str"):
        recipes.build_voxelmorph("lncc", ndim=2)
