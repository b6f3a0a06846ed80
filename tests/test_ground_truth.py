"""The simulator's ground truth: C² velocity fields (no kinks on the control grid), label
resampling with warp_labels, and pair batches without labels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib import data, spatial


def _kink_ratio(v: torch.Tensor, spacing: int) -> float:
    """Mean |second difference| along axis 0 on the control-grid lines over that between them.

    A field that is linear between knots (the old bilinear upsampling) has second differences only
    at the knots, so the ratio is huge; a cubic B-spline's second derivative is continuous, so
    the knots look like every other row.
    """
    d2 = (v[:, :, 2:] - 2 * v[:, :, 1:-1] + v[:, :, :-2]).abs().mean(dim=(0, 1, 3))   # per row x = 1..H-2
    rows = torch.arange(1, v.shape[2] - 1)
    on = (rows % spacing) == 0
    return float(d2[on].mean() / d2[~on].mean())


def test_random_velocity_has_no_kinks_on_the_control_grid():
    shape, spacing = (97, 109), 12
    v = data.random_velocity(shape, 3, magnitude=3.0, spacing=spacing, n=16)
    assert _kink_ratio(v, spacing) < 2.0
    # the measure does see kinks: the same coefficients upsampled linearly pile up on the knots
    coarse = torch.randn(16, 2, 10, 11, generator=torch.Generator().manual_seed(3))
    linear = F.interpolate(coarse, size=((10 - 1) * spacing + 1, 109), mode="bilinear", align_corners=True)
    assert _kink_ratio(linear, spacing) > 100.0


@pytest.mark.parametrize("shape", [(40, 52), (20, 24, 18)])
def test_random_velocity_keeps_its_magnitude_and_is_reproducible(shape):
    v = data.random_velocity(shape, 5, magnitude=2.5, spacing=6, n=3)
    assert v.shape == (3, len(shape), *shape)
    assert torch.allclose(v.abs().flatten(1).max(1).values, torch.full((3,), 2.5))
    assert torch.equal(v, data.random_velocity(shape, 5, magnitude=2.5, spacing=6, n=3))
    assert not torch.equal(v, data.random_velocity(shape, 6, magnitude=2.5, spacing=6, n=3))


def test_simulated_deformations_are_diffeomorphic():
    u = spatial.integrate_velocity(data.random_velocity((91, 109), 0, magnitude=4.0, n=8))
    assert spatial.jacobian_determinant(u).min() > 0.2


def _one_hot_argmax(labels, u, n_labels):
    oh = F.one_hot(labels[:, 0], n_labels).movedim(-1, 1).to(u.dtype)
    return spatial.warp(oh, u).argmax(1, keepdim=True)


@pytest.mark.parametrize("shape", [(17, 21), (9, 11, 8)])
def test_warp_labels_linear_is_the_argmax_of_warped_one_hot_maps(shape):
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 6, (2, 1, *shape), generator=g)
    u = 3 * torch.randn(2, len(shape), *shape, generator=g)
    out = spatial.warp_labels(labels, u)
    assert out.dtype == labels.dtype and out.shape == labels.shape
    assert torch.equal(out, _one_hot_argmax(labels, u, 6))


def test_warp_labels_is_exact_for_the_identity_and_integer_shifts():
    labels = torch.randint(0, 5, (1, 1, 12, 14), generator=torch.Generator().manual_seed(2)).int()
    zero = torch.zeros(1, 2, 12, 14)
    assert torch.equal(spatial.warp_labels(labels, zero), labels)
    shift = zero.clone()
    shift[:, 1] = 2.0
    for mode in ("linear", "nearest"):
        assert torch.equal(spatial.warp_labels(labels, shift, mode=mode), spatial.warp(labels, shift, mode="nearest"))


def test_warp_labels_breaks_ties_to_the_smaller_label_and_broadcasts_batches():
    labels = torch.tensor([[[[3, 1], [3, 1]]]])            # (1, 1, 2, 2): columns of 3 and 1
    half = torch.zeros(2, 2, 2, 2)
    half[:, 1] = 0.5                                        # every voxel halfway between the columns
    out = spatial.warp_labels(labels, half)
    assert out.shape == (2, 1, 2, 2)
    assert torch.equal(out, torch.ones(2, 1, 2, 2, dtype=labels.dtype))


def test_warp_labels_round_trip_of_a_sub_voxel_shift_keeps_a_one_voxel_line():
    labels = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    labels[0, 0, :, 8] = 1
    u = torch.zeros(1, 2, 16, 16)
    u[:, 1] = 0.4
    there = spatial.warp_labels(labels, u)
    back = spatial.warp_labels(there, -u)
    assert torch.equal(back, labels)


def test_pair_batch_without_labels_gives_the_same_images():
    full = data.pair_batch(2, 7, magnitude=2.0)
    light = data.pair_batch(2, 7, magnitude=2.0, labels=False)
    assert "moving_labels" not in light and "fixed_labels" not in light
    for key in ("moving", "fixed", "moving_mask", "fixed_mask", "displacement"):
        assert torch.equal(full[key], light[key]), key


def test_simulated_labels_are_resampled_with_warp_labels():
    t = data.template_slices()
    s = data.synthesize_subject(4, t, augment=False)
    assert torch.equal(s.anatomy.labels, spatial.warp_labels(t.labels, s.displacement))
