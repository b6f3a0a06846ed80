"""Course data (lesson 00) and the profile switch: template anatomy, simulated subjects and
contrasts, the pair dataset and its ground truth, ``config.profile`` and seeding.

Needs the caches built by ``python -m course_lib.data prepare``; pair datasets here are built
with ``cache=False`` so the tests write nothing.
"""

import numpy as np
import pytest
import torch

from course_lib import config, data, metrics, spatial


@pytest.fixture(scope="module")
def axial() -> data.Anatomy:
    return data.template_slices()


def _mean_in(image: torch.Tensor, prob: torch.Tensor) -> float:
    return image[prob > 0.5].mean().item()


# ----------------------------------------------------------------------------- template

def test_template_tissues_are_ordered_wm_brighter_than_gm_brighter_than_csf_in_t1(axial):
    csf, gm, wm = axial.tissues[0]
    img = axial.image[0, 0]
    assert _mean_in(img, wm) > _mean_in(img, gm) + 0.05
    assert _mean_in(img, gm) > _mean_in(img, csf) + 0.05


def test_template_slice_and_volume_have_the_profile_shapes(axial):
    assert axial.image.shape == (1, 1, 96, 112) and axial.shape == (96, 112) and axial.ndim == 2
    assert axial.tissues.shape == (1, 3, 96, 112)
    vol = data.template_volume()
    assert vol.image.shape == (1, 1, 80, 96, 80) and vol.ndim == 3
    assert vol.labels.shape == (1, 1, 80, 96, 80)
    assert config.profile("quick").size_3d == vol.shape and config.profile("quick").size_2d == axial.shape


def test_template_images_lie_in_0_1_and_labels_are_integer_atlas_labels(axial):
    assert 0.0 <= axial.image.min().item() and axial.image.max().item() <= 1.0
    assert axial.labels.dtype == torch.int64
    labels = metrics.present_labels(axial.labels)
    assert len(labels) > 20                                 # many AAL regions in an axial slice
    assert axial.labels[axial.mask == 0].abs().max().item() == 0   # labels only inside the brain


def test_template_slices_along_each_axis_have_the_requested_size():
    for axis in ("axial", "coronal", "sagittal"):
        a = data.template_slices(axis, size=(64, 72))
        assert a.image.shape == (1, 1, 64, 72) and a.mask.sum().item() > 500


# ----------------------------------------------------------------------------- subjects

def test_synthesize_subject_is_bit_reproducible_from_its_seed(axial):
    s1, s2 = data.synthesize_subject(7, axial), data.synthesize_subject(7, axial)
    assert torch.equal(s1.displacement, s2.displacement)
    for name in ("image", "tissues", "mask", "labels"):
        assert torch.equal(getattr(s1.anatomy, name), getattr(s2.anatomy, name)), name
    assert s1.seed == 7


def test_synthesize_subject_differs_across_seeds(axial):
    s1, s2 = data.synthesize_subject(7, axial), data.synthesize_subject(8, axial)
    assert (s1.displacement - s2.displacement).abs().max() > 0.5
    assert not torch.equal(s1.anatomy.image, s2.anatomy.image)


def test_subject_labels_move_with_the_image(axial):
    subj = data.synthesize_subject(3, axial, augment=False)
    u = subj.displacement
    assert u.abs().max() > 1.0
    # image, tissues and labels are all the template pulled through the same displacement
    assert torch.allclose(subj.anatomy.image, spatial.warp(axial.image, u), atol=1e-6)
    assert torch.allclose(subj.anatomy.tissues, spatial.warp(axial.tissues, u), atol=1e-6)
    warped = spatial.warp_labels(axial.labels, u)                 # the simulator's label resampling
    moved = metrics.dice(warped, subj.anatomy.labels).nanmean().item()
    unmoved = metrics.dice(axial.labels, subj.anatomy.labels).nanmean().item()
    assert moved == pytest.approx(1.0, abs=1e-6)
    assert unmoved < 0.95


def test_synthesize_contrast_t2_reverses_the_csf_wm_order(axial):
    csf, _, wm = axial.tissues[0]
    t1 = data.synthesize_contrast(axial.tissues, "t1", noise=0.0)[0, 0]
    t2 = data.synthesize_contrast(axial.tissues, "t2", noise=0.0)[0, 0]
    assert t1.shape == (96, 112)
    assert _mean_in(t1, wm) > _mean_in(t1, csf) + 0.2
    assert _mean_in(t2, csf) > _mean_in(t2, wm) + 0.2


def test_random_velocity_has_the_requested_shape_and_peak():
    v = data.random_velocity((24, 32), 0, magnitude=2.5, n=3)
    assert v.shape == (3, 2, 24, 32)
    assert torch.allclose(v.abs().flatten(1).max(1).values, torch.full((3,), 2.5))
    assert torch.equal(v, data.random_velocity((24, 32), 0, magnitude=2.5, n=3))


def test_random_affine_is_near_rigid_and_reproducible():
    m = data.random_affine((12, 14, 16), 4, n=2)
    assert m.shape == (2, 4, 4)
    assert torch.equal(m[:, 3], torch.tensor([[0.0, 0, 0, 1]] * 2))
    det = torch.linalg.det(m[:, :3, :3])
    assert ((det - 1).abs() < 0.2).all()
    assert torch.equal(m, data.random_affine((12, 14, 16), 4, n=2))


# ----------------------------------------------------------------------------- pairs

@pytest.fixture(scope="module")
def pairs(axial) -> data.PairDataset:
    return data.PairDataset(3, "test", template=axial, augment=False, cache=False)


def test_pair_dataset_train_and_test_seeds_are_disjoint(axial, pairs):
    train = data.PairDataset(3, "train", template=axial, augment=False, cache=False)
    train_seeds = set(train.batch()["seed"].tolist())
    test_seeds = set(pairs.batch()["seed"].tolist())
    assert train_seeds == {0, 1, 2}
    assert test_seeds == {data.SPLIT_SEEDS["test"] + i for i in range(3)}
    assert not train_seeds & test_seeds
    assert not torch.equal(train[0]["displacement"], pairs[0]["displacement"])


def test_pair_dataset_items_have_the_documented_shapes(pairs):
    item = pairs[0]
    assert len(pairs) == 3
    for key in ("moving", "fixed", "moving_mask", "fixed_mask"):
        assert item[key].shape == (1, 96, 112) and item[key].dtype == torch.float32, key
    for key in ("moving_labels", "fixed_labels"):
        assert item[key].shape == (1, 96, 112) and item[key].dtype == torch.int64, key
    assert item["displacement"].shape == (2, 96, 112)
    assert item["seed"].shape == ()
    batch = pairs.batch([0, 2])
    assert batch["moving"].shape == (2, 1, 96, 112)
    assert torch.equal(pairs[-1]["fixed"], pairs[2]["fixed"])
    with pytest.raises(IndexError, match="PairDataset"):
        pairs[3]


def test_pair_dataset_ground_truth_displacement_improves_label_dice(pairs):
    b = pairs.batch()
    before = metrics.dice(b["moving_labels"], b["fixed_labels"]).nanmean().item()
    after = metrics.dice(spatial.warp(b["moving_labels"], b["displacement"], mode="nearest"),
                         b["fixed_labels"]).nanmean().item()
    assert after > before + 0.1
    assert after > 0.9
    # and the intensities too: warp(moving, d) ≈ fixed
    err_before = (b["moving"] - b["fixed"]).abs().mean().item()
    err_after = (spatial.warp(b["moving"], b["displacement"]) - b["fixed"]).abs().mean().item()
    assert err_after < 0.5 * err_before


def test_pair_dataset_with_t2_contrast_gives_a_different_moving_image(axial, pairs):
    t2 = data.PairDataset(1, "test", template=axial, augment=False, contrast="t2", cache=False)
    assert torch.equal(t2[0]["fixed"], pairs[0]["fixed"])
    assert torch.equal(t2[0]["displacement"], pairs[0]["displacement"])
    # T2 is darker where T1 is bright: negative correlation with the T1 moving image
    a, b = t2[0]["moving"].flatten(), pairs[0]["moving"].flatten()
    inside = pairs[0]["moving_mask"].flatten() > 0
    assert np.corrcoef(a[inside].numpy(), b[inside].numpy())[0, 1] < 0


def test_pair_batch_matches_the_dataset_for_the_same_seed(axial, pairs):
    """pair_batch(1, seed) is item i of a split whose seed is SPLIT_SEEDS[split] + i."""
    for i in range(2):
        b = data.pair_batch(1, data.SPLIT_SEEDS["test"] + i, template=axial, augment=False)
        for key, value in b.items():
            assert value.shape == (1, *pairs[i][key].shape), key
            assert torch.equal(value[0], pairs[i][key]), key


def test_pair_batch_draws_fresh_pairs_from_one_generator(axial):
    g = torch.Generator().manual_seed(0)
    a, b = data.pair_batch(2, g, template=axial), data.pair_batch(2, g, template=axial)
    assert a["moving"].shape == (2, 1, 96, 112) and a["displacement"].shape == (2, 2, 96, 112)
    assert not torch.equal(a["displacement"], b["displacement"])
    assert not torch.equal(a["displacement"][0], a["displacement"][1])
    again = data.pair_batch(2, torch.Generator().manual_seed(0), template=axial)
    assert all(torch.equal(a[k], again[k]) for k in a)
    with pytest.raises(ValueError, match="pair_batch: n must be a positive int"):
        data.pair_batch(0)
    with pytest.raises(ValueError, match="pair_batch: contrast must be"):
        data.pair_batch(1, contrast="ct")


def test_label_groups_cover_the_aal_atlas_by_lobe():
    _, names = data.load_atlas("AAL")
    groups = data.label_groups(names)
    assert list(groups) == list(data.STRUCTURE_GROUPS)                   # no "other" for AAL
    assert sorted(v for g in groups.values() for v in g) == sorted(k for k in names if k != 0)
    assert names[groups["deep grey"][0]].startswith("Caudate")
    assert all(names[v].startswith(("Cerebelum", "Vermis")) for v in groups["cerebellum"])
    some = data.label_groups(names, present=[1, 2, 71])
    assert some == {"frontal": [1, 2], "deep grey": [71]}
    with pytest.raises(TypeError, match="label_groups: names must be a dict"):
        data.label_groups(["Precentral_L"])


# ----------------------------------------------------------------------------- config

def test_profile_quick_and_full_sizes():
    quick, full = config.profile("quick"), config.profile("full")
    assert quick.name == "quick" and quick.size_2d == (96, 112) and quick.size_3d == (80, 96, 80)
    assert quick.resolution_3d == 2 and full.resolution_3d == 1
    assert full.size_3d == (160, 192, 160)
    assert full.n_starts >= quick.n_starts >= 20
    assert config.profile(" Quick ") is quick


def test_profile_reads_the_environment_variable(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    assert config.profile().name == "full"
    monkeypatch.setenv("COURSE_PROFILE", "quick")
    assert config.profile().name == "quick"


def test_profile_rejects_an_unknown_name(monkeypatch):
    with pytest.raises(ValueError, match="profile: name must be one of"):
        config.profile("medium")
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    with pytest.raises(ValueError, match="COURSE_PROFILE"):
        config.profile()


def test_profile_is_frozen():
    with pytest.raises(AttributeError):
        config.profile("quick").train_steps = 1


@pytest.mark.parametrize("bad", [1.5, "3", True, None])
def test_seed_everything_rejects_non_int_seeds(bad):
    with pytest.raises(TypeError, match="seed_everything: seed must be an int"):
        config.seed_everything(bad)


def test_seed_everything_makes_torch_and_numpy_reproducible():
    g = config.seed_everything(123)
    a = (torch.rand(3), np.random.rand(3), torch.rand(3, generator=g))
    g = config.seed_everything(123)
    b = (torch.rand(3), np.random.rand(3), torch.rand(3, generator=g))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])


def test_coarsen_averages_intensities_and_takes_the_majority_label():
    labels = torch.tensor([[[[1, 1, 2, 0], [1, 3, 2, 2]]]])                 # blocks: {1,1,1,3} and {2,0,2,2}
    image = torch.arange(8, dtype=torch.float32).reshape(1, 1, 2, 4)
    a = data.Anatomy(image=image, tissues=image.expand(1, 3, 2, 4).clone(),
                     mask=torch.tensor([[[[1.0, 1, 0, 0], [1, 0, 1, 0]]]]), labels=labels)
    c = data.coarsen(a, 2)
    assert c.shape == (1, 2)
    assert torch.equal(c.labels, torch.tensor([[[[1, 2]]]]))
    assert torch.allclose(c.image, torch.tensor([[[[(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4]]]]))
    assert torch.equal(c.mask, torch.tensor([[[[1.0, 0.0]]]]))              # 3/4 brain -> 1, 1/4 -> 0
    assert c.tissues.shape == (1, 3, 1, 2)


def test_coarsen_of_the_template_keeps_most_labels_and_the_brain(axial):
    c = data.coarsen(data.template_slices("axial", size=(96, 112)), 2)
    assert c.shape == (48, 56)
    assert abs(float(c.mask.mean()) - float(axial.mask.mean())) < 0.02
    fine, coarse = set(metrics.present_labels(axial.labels)), set(metrics.present_labels(c.labels))
    assert coarse <= fine and len(coarse) >= 0.8 * len(fine)


@pytest.mark.parametrize("bad, error", [(("not an anatomy", 2), TypeError), ((None, 0), ValueError),
                                        ((None, 5), ValueError)])
def test_coarsen_rejects_bad_input_by_name(axial, bad, error):
    anatomy, factor = bad
    with pytest.raises(error, match="coarsen: (anatomy|factor|every spatial size)"):
        data.coarsen(axial if anatomy is None else anatomy, factor)
