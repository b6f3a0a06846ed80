"""Properties of the evaluation metrics: Dice, HD95, TRE, folding fraction and SDlogJ."""

import math

import numpy as np

import pytest
import torch

from course_lib import metrics, spatial


def _labels(shape, seed=0, n_labels=4) -> torch.Tensor:
    """Blocky label map ``(1, 1, *shape)`` int64 with labels 0..n_labels-1 all present."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, n_labels, (1, 1, *[max(2, s // 4) for s in shape]), generator=g)
    coarse.view(-1)[torch.randperm(coarse.numel(), generator=g)[:n_labels]] = torch.arange(n_labels)
    out = torch.nn.functional.interpolate(coarse.double(), size=shape, mode="nearest").long()
    assert len(out.unique()) == n_labels
    return out


def _box(shape, lo, hi) -> torch.Tensor:
    m = torch.zeros(1, 1, *shape, dtype=torch.int64)
    m[(0, 0, *[slice(a, b) for a, b in zip(lo, hi)])] = 1
    return m


# ----------------------------------------------------------------------------- Dice

def test_dice_of_a_map_with_itself_is_one_for_every_present_label(ndim, shape):
    lab = _labels(shape)
    d = metrics.dice(lab, lab)
    assert d.shape == (1, 3)                                   # labels 1, 2, 3 (0 is background)
    assert torch.equal(d, torch.ones(1, 3))
    assert metrics.present_labels(lab) == [1, 2, 3]


def test_dice_of_disjoint_masks_is_zero(ndim, shape):
    a = _box(shape, [0] * ndim, [s // 2 for s in shape])
    b = _box(shape, [s // 2 for s in shape], shape)
    assert metrics.dice(a, b).item() == 0.0


def test_dice_matches_a_hand_computed_overlap():
    a = torch.zeros(1, 1, 4, 5, dtype=torch.int64)
    b = torch.zeros(1, 1, 4, 5, dtype=torch.int64)
    a[0, 0, 0:2, 0:3] = 1        # 6 voxels
    b[0, 0, 1:3, 1:3] = 1        # 4 voxels, 2 shared with a (row 1, cols 1-2)
    a[0, 0, 3, :] = 2            # 5 voxels of label 2 in a, 0 in b
    b[0, 0, 3, 0] = 2            # 1 voxel of label 2 in b, shared
    d = metrics.dice(a, b, labels=[1, 2])
    assert torch.allclose(d, torch.tensor([[2 * 2 / (6 + 4), 2 * 1 / (5 + 1)]]))


def test_dice_is_nan_for_a_label_absent_from_both_maps():
    lab = _labels((8, 9))
    d = metrics.dice(lab, lab, labels=[1, 7, 2])
    assert d[0, 0].item() == 1.0 and d[0, 2].item() == 1.0
    assert math.isnan(d[0, 1].item())


def test_dice_is_per_sample_in_a_batch():
    a = torch.cat([_labels((8, 9), 0), _labels((8, 9), 1)])
    b = torch.cat([_labels((8, 9), 0), _labels((8, 9), 2)])
    d = metrics.dice(a, b, labels=[1, 2, 3])
    assert d.shape == (2, 3)
    assert torch.equal(d[0], torch.ones(3))
    assert torch.equal(d[1], metrics.dice(a[1:], b[1:], labels=[1, 2, 3])[0]) and (d[1] < 1).any()


# ----------------------------------------------------------------------------- HD95

def test_hd95_of_a_map_with_itself_is_zero(ndim, shape):
    lab = _labels(shape)
    assert torch.equal(metrics.hd95(lab, lab), torch.zeros(1, 3))


@pytest.mark.parametrize("axis", [0, 1])
def test_hd95_of_a_mask_shifted_by_three_voxels_is_three(axis):
    shape = (24, 32)
    a = _box(shape, (6, 8), (16, 20))
    b = torch.roll(a, 3, dims=2 + axis)
    assert metrics.hd95(a, b).item() == pytest.approx(3.0, abs=0.25)


def test_hd95_in_3d_and_with_spacing():
    shape = (12, 14, 16)
    a = _box(shape, (3, 3, 3), (9, 10, 11))
    b = torch.roll(a, 3, dims=4)                               # 3 voxels along spatial axis 2
    assert metrics.hd95(a, b).item() == pytest.approx(3.0, abs=0.25)
    assert metrics.hd95(a, b, spacing=(1.0, 1.0, 2.0)).item() == pytest.approx(6.0, abs=0.5)


def test_hd95_is_nan_where_a_label_is_missing_from_one_map():
    a = _box((10, 10), (2, 2), (6, 6))
    b = a.clone()
    a[0, 0, 8, 8] = 2
    out = metrics.hd95(a, b, labels=[1, 2])
    assert out[0, 0].item() == 0.0 and math.isnan(out[0, 1].item())


# ----------------------------------------------------------------------------- TRE

def test_tre_matches_hand_computed_distances_with_spacing():
    a = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    b = torch.tensor([[3.0, 4.0, 0.0], [1.0, 2.0, 5.0]])
    assert torch.allclose(metrics.tre(a, b), torch.tensor([5.0, 2.0]))
    # anisotropic voxels (mm): (3·2, 4·1, 0) → 7.2111; (0, 0, 2·0.5) → 1
    assert torch.allclose(metrics.tre(a, b, spacing=(2.0, 1.0, 0.5)), torch.tensor([math.sqrt(52.0), 1.0]))
    assert torch.allclose(metrics.tre(a[None], b[None], spacing=2.0), torch.tensor([[10.0, 4.0]]))


def test_tre_is_zero_for_identical_points():
    p = torch.rand(2, 5, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(metrics.tre(p, p), torch.zeros(2, 5))


# ----------------------------------------------------------------------------- folding, SDlogJ

def test_folding_fraction_is_zero_for_the_identity(ndim, shape, displacement):
    assert torch.equal(metrics.folding_fraction(torch.zeros(2, ndim, *shape)), torch.zeros(2))
    assert metrics.folding_fraction(displacement).item() == 0.0


def test_folding_fraction_counts_a_region_that_folds(ndim, shape):
    """u_0 = -2.5 x_0 on some columns of the last axis: det J = 1 - 2.5 = -1.5 there."""
    u = torch.zeros(1, ndim, *shape, dtype=torch.float64)
    x0 = spatial.identity_grid(shape, dtype=torch.float64)[0, 0]
    cols = slice(4, 12)
    u[(0, 0, ..., cols)] = -2.5 * x0[(..., cols)]
    det = spatial.jacobian_determinant(u)
    assert det[(0, ..., cols)].max() < 0
    assert metrics.folding_fraction(u).item() == pytest.approx(8 / shape[-1])


def test_folding_fraction_with_a_mask_counts_only_inside_it(ndim, shape):
    u = torch.zeros(1, ndim, *shape, dtype=torch.float64)
    u[:, 0] = -2.5 * spatial.identity_grid(shape, dtype=torch.float64)[0, 0]   # folds everywhere
    mask = torch.zeros(1, 1, *shape, dtype=torch.bool)
    mask[(0, 0, ..., slice(0, 5))] = True
    assert metrics.folding_fraction(u).item() == 1.0
    assert metrics.folding_fraction(u, mask=mask).item() == 1.0
    assert metrics.folding_fraction(torch.zeros_like(u), mask=mask).item() == 0.0


def test_sdlogj_is_zero_for_the_identity_and_for_a_translation(ndim, shape):
    assert torch.equal(metrics.sdlogj(torch.zeros(1, ndim, *shape)), torch.zeros(1))
    shift = torch.zeros(1, ndim, *shape, dtype=torch.float64)
    shift[:, 0] = 2.5
    shift[:, -1] = -1.0
    assert metrics.sdlogj(shift).item() == pytest.approx(0.0, abs=1e-12)


def test_sdlogj_is_zero_for_a_uniform_scaling_and_positive_for_a_smooth_warp(ndim, shape, displacement):
    scale = 0.1 * spatial.identity_grid(shape, dtype=torch.float64)             # det J = 1.1^ndim
    assert metrics.sdlogj(scale).item() == pytest.approx(0.0, abs=1e-10)
    assert metrics.sdlogj(displacement).item() > 0.01
    mask = torch.ones(1, 1, *shape, dtype=torch.bool)
    assert metrics.sdlogj(displacement, mask=mask).item() == pytest.approx(metrics.sdlogj(displacement).item())


def _hd95_whole_image(p, t, spacing):
    # the definition, with distance transforms over the whole image (no bounding box)
    from scipy import ndimage
    sp_, st = (m & ~ndimage.binary_erosion(m, border_value=0) for m in (p, t))
    return max(np.percentile(ndimage.distance_transform_edt(~st, sampling=spacing)[sp_], 95),
               np.percentile(ndimage.distance_transform_edt(~sp_, sampling=spacing)[st], 95))


def _hd95_brute_force(p, t, spacing):
    # every surface voxel against every surface voxel of the other map: no distance transform
    from scipy import ndimage
    sp_, st = (np.argwhere(m & ~ndimage.binary_erosion(m, border_value=0)) * np.asarray(spacing) for m in (p, t))
    d = np.sqrt(((sp_[:, None] - st[None]) ** 2).sum(-1))
    return max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))


@pytest.mark.parametrize("ndim", [2, 3])
def test_hd95_equals_the_brute_force_max_of_directed_percentiles(ndim):
    g = torch.Generator().manual_seed(10 + ndim)
    shape = (16, 18, 14)[:ndim]
    pool = torch.nn.functional.avg_pool2d if ndim == 2 else torch.nn.functional.avg_pool3d
    a, b = (pool(torch.rand(2, 1, *shape, generator=g), 5, 1, 2) for _ in range(2))
    a, b = ((x * 4 / x.amax(dim=tuple(range(1, ndim + 2)), keepdim=True)).long().clamp(0, 3) for x in (a, b))
    spacing = (1.0, 1.5, 2.0)[:ndim]
    out = metrics.hd95(a, b, labels=[1, 2, 3], spacing=spacing)
    checked = 0
    for n in range(2):
        for j, lab in enumerate([1, 2, 3]):
            p, t = (a[n, 0] == lab).numpy(), (b[n, 0] == lab).numpy()
            if p.any() and t.any():
                checked += 1
                assert out[n, j].item() == pytest.approx(_hd95_brute_force(p, t, spacing), abs=1e-5)
    assert checked >= 4


def test_hd95_takes_the_larger_directed_percentile_not_the_pooled_one():
    # target: a square; prediction: the same square plus a long thin tail of 12 voxels. From the
    # prediction's surface, the tail is far from the target (directed P95 large); from the target's
    # surface everything is near. Pooling both sets dilutes the tail; the definition keeps it.
    t = torch.zeros(1, 1, 40, 40, dtype=torch.long)
    t[0, 0, 5:25, 5:25] = 1
    p = t.clone()
    p[0, 0, 25:37, 14:16] = 1
    from scipy import ndimage
    pm, tm = p[0, 0].numpy() == 1, t[0, 0].numpy() == 1
    sp_, st = (m & ~ndimage.binary_erosion(m, border_value=0) for m in (pm, tm))
    pooled = np.percentile(np.concatenate([ndimage.distance_transform_edt(~st)[sp_],
                                           ndimage.distance_transform_edt(~sp_)[st]]), 95)
    value = metrics.hd95(p, t).item()
    assert value == pytest.approx(_hd95_brute_force(pm, tm, (1.0, 1.0)), abs=1e-5)
    assert value > pooled + 1.0


@pytest.mark.parametrize("ndim", [2, 3])
def test_hd95_in_the_bounding_box_equals_the_whole_image_computation(ndim):
    # smooth random label maps with 4 labels, some touching the image border, anisotropic spacing
    g = torch.Generator().manual_seed(ndim)
    shape = (20, 24, 18)[:ndim]
    pool = torch.nn.functional.avg_pool2d if ndim == 2 else torch.nn.functional.avg_pool3d
    a, b = (pool(torch.rand(1, 1, *shape, generator=g), 5, 1, 2) for _ in range(2))
    a, b = ((x * 4 / x.max()).long().clamp(0, 3) for x in (a, b))
    spacing = (1.0, 2.0, 1.5)[:ndim]
    out = metrics.hd95(a, b, labels=[1, 2, 3], spacing=spacing)[0]
    checked = 0
    for j, lab in enumerate([1, 2, 3]):
        p, t = (a[0, 0] == lab).numpy(), (b[0, 0] == lab).numpy()
        if p.any() and t.any():
            checked += 1
            assert out[j].item() == pytest.approx(_hd95_whole_image(p, t, spacing), abs=1e-5)
    assert checked >= 2, "too few labels present in both maps to compare"


# --------------------------------------------------------------------------- robust_difference


def test_robust_difference_values():
    a, b = [1.0, 2.0, 3.0], [5.0, 6.0, 7.0]
    r = metrics.robust_difference(a, b)
    assert r.difference == pytest.approx(-4.0)
    assert r.pooled_sd == pytest.approx(1.0)
    assert r.robust                                          # 4 > 2 * 1
    assert not metrics.robust_difference(a, b, k=5).robust    # 4 < 5 * 1
    d, sd, robust = metrics.robust_difference(torch.tensor([0.1, 0.3]), np.array([0.2, 0.2]))
    assert d == pytest.approx(0.0, abs=1e-6) and not robust and sd > 0


def test_robust_difference_is_antisymmetric():
    a, b = [0.81, 0.83, 0.80], [0.78, 0.79, 0.75]
    r1, r2 = metrics.robust_difference(a, b), metrics.robust_difference(b, a)
    assert r1.difference == pytest.approx(-r2.difference)
    assert r1.pooled_sd == pytest.approx(r2.pooled_sd) and r1.robust == r2.robust


@pytest.mark.parametrize("a, b, k, exc, words", [
    ([1.0], [1.0, 2.0], 2.0, ValueError, "a must be 1D with at least 2 values"),
    ([1.0, 2.0], [[1.0, 2.0]], 2.0, ValueError, "b must be 1D"),
    ([1.0, float("nan")], [1.0, 2.0], 2.0, ValueError, "a contains NaN"),
    ([1.0, 2.0], ["x", "y"], 2.0, TypeError, "b must be a sequence of numbers"),
    ([1.0, 2.0], [1.0, 2.0], 0, ValueError, "k must be a positive number"),
])
def test_robust_difference_bad_input(a, b, k, exc, words):
    with pytest.raises(exc, match=words):
        metrics.robust_difference(a, b, k=k)


# --------------------------------------------------------------------------- paired_difference


def test_paired_difference_values_against_the_t_interval():
    a, b = [0.82, 0.80, 0.79, 0.83, 0.81], [0.79, 0.78, 0.78, 0.78, 0.79]
    r = metrics.paired_difference(a, b)
    d = np.array(a) - np.array(b)
    half = 2.7764451 * d.std(ddof=1) / np.sqrt(5)               # t(0.975, 4 degrees of freedom)
    assert r.mean == pytest.approx(d.mean()) and r.sd == pytest.approx(d.std(ddof=1))
    assert (r.low, r.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert r.wins == 5 and r.n == 5 and r.robust


def test_paired_difference_pairs_seeds_where_the_unpaired_rule_cannot():
    # a seed effect shared by both recipes: large spread across seeds, a steady paired gain
    base = np.array([0.70, 0.80, 0.75, 0.85, 0.78])
    a, b = base + 0.01 + np.array([0.001, -0.001, 0.002, 0.0, -0.002]), base
    assert metrics.paired_difference(a, b).robust
    assert not metrics.robust_difference(a, b).robust


def test_paired_difference_straddles_zero_without_an_effect():
    r = metrics.paired_difference([0.80, 0.78, 0.81], [0.79, 0.80, 0.80])
    assert r.low < 0 < r.high and not r.robust and r.wins == 2
    assert metrics.paired_difference([0.79, 0.80, 0.80], [0.80, 0.78, 0.81]).mean == pytest.approx(-r.mean)


@pytest.mark.parametrize("a, b, conf, exc, words", [
    ([1.0, 2.0, 3.0], [1.0, 2.0], 0.95, ValueError, "one value per seed"),
    ([1.0], [1.0], 0.95, ValueError, "a must be 1D with at least 2 values"),
    ([1.0, 2.0], [1.0, float("inf")], 0.95, ValueError, "b contains NaN or Inf"),
    ([1.0, 2.0], [1.0, 2.0], 1.0, ValueError, "confidence must be in"),
    ([1.0, 2.0], [1.0, 2.0], 0.0, ValueError, "confidence"),
    ("ab", [1.0, 2.0], 0.95, TypeError, "a must be a sequence of numbers"),
])
def test_paired_difference_bad_input(a, b, conf, exc, words):
    with pytest.raises(exc, match=words):
        metrics.paired_difference(a, b, confidence=conf)


# --------------------------------------------------------------------------- EPE and DSC30

def test_epe_of_a_constant_error_is_its_length_in_voxels_and_mm():
    truth = torch.randn(2, 2, 10, 12)
    est = truth.clone()
    est[:, 0] += 3.0
    est[:, 1] -= 4.0
    torch.testing.assert_close(metrics.epe(est, truth), torch.full((2,), 5.0))
    torch.testing.assert_close(metrics.epe(truth, truth), torch.zeros(2))
    # anisotropic voxels: 3 voxels of 2 mm along axis 0 and 4 voxels of 0.5 mm along axis 1
    torch.testing.assert_close(metrics.epe(est, truth, spacing=(2.0, 0.5)), torch.full((2,), (36 + 4) ** 0.5))


def test_epe_counts_only_the_mask_and_broadcasts_a_single_truth():
    truth = torch.zeros(1, 3, 6, 7, 8)
    est = torch.zeros(2, 3, 6, 7, 8)
    est[:, 2, :3] = 1.0                                  # error 1 in the first half of axis 0 only
    mask = torch.zeros(1, 1, 6, 7, 8, dtype=torch.bool)
    mask[:, :, :3] = True
    torch.testing.assert_close(metrics.epe(est, truth, mask=mask), torch.ones(2))
    torch.testing.assert_close(metrics.epe(est, truth), torch.full((2,), 0.5))
    brute = torch.stack([((est[i] - truth[0]) ** 2).sum(0).sqrt()[mask[0, 0]].mean() for i in range(2)])
    torch.testing.assert_close(metrics.epe(est, truth, mask=mask), brute)


def test_epe_rejects_mismatched_fields_and_an_empty_mask():
    u = torch.zeros(2, 2, 8, 8)
    with pytest.raises(ValueError, match="epe: displacement and truth must have the same channels"):
        metrics.epe(u, torch.zeros(2, 2, 8, 9))
    with pytest.raises(ValueError, match="epe: mask is empty"):
        metrics.epe(u, u, mask=torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="epe: truth must have batch size 2"):
        metrics.epe(u, torch.zeros(3, 2, 8, 8))


def test_dsc30_is_the_30th_percentile_of_per_case_dice():
    per_case = torch.tensor([0.9, 0.5, 0.7, 0.8, 0.6, 0.85, 0.75, 0.4, 0.95, 0.65])
    assert metrics.dsc30(per_case) == pytest.approx(float(np.percentile(per_case.numpy(), 30)))
    # 30 % of the cases score at most DSC30
    assert (per_case <= metrics.dsc30(per_case) + 1e-12).float().mean() >= 0.3 - 1e-9
    # per label: each case is averaged over the labels it has (NaN: label absent)
    table = torch.tensor([[0.8, float("nan")], [0.6, 0.4], [0.9, 0.7]])
    assert metrics.dsc30(table) == pytest.approx(float(np.percentile([0.8, 0.5, 0.8], 30)))
    with pytest.raises(ValueError, match="dsc30: a case has no finite Dice"):
        metrics.dsc30(torch.tensor([[float("nan"), float("nan")], [0.5, 0.5]]))
