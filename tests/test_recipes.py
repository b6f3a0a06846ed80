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
    for loss in recipes.LOSSES:
        r = VoxelMorphRecipe(loss=loss, steps=1)
        net = recipes.build_voxelmorph(r, ndim=2)
        value, logs = recipes.voxelmorph_loss(r, net, b, label_maps=_maps)
        assert value.dim() == 0 and torch.isfinite(value), loss
        assert abs(sum(logs.values()) - float(value)) < 1e-4, (loss, logs)


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
