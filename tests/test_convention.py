"""THE convention test (see the ``course_lib`` package docstring).

* channel *i* of a displacement is the displacement along spatial axis *i* = array axis ``2 + i``;
* transforms are backward (pull) maps: ``warp(img, u)(x) = img(x + u(x))``, so a constant
  displacement of ``+k`` along axis *i* moves the image content by ``-k`` along that axis;
* :func:`course_lib.spatial.to_normalized_grid` is the one conversion to ``grid_sample``'s grid:
  voxel 0 ↦ -1, voxel ``n - 1`` ↦ +1 (``align_corners=True``), channels in reversed order.
"""

import pytest
import torch
import torch.nn.functional as F

from course_lib import spatial
from conftest import SHAPES


def _impulse(shape, position) -> torch.Tensor:
    img = torch.zeros(1, 1, *shape, dtype=torch.float64)
    img[(0, 0) + tuple(position)] = 1.0
    return img


def _constant_field(shape, axis: int, k: float) -> torch.Tensor:
    u = torch.zeros(1, len(shape), *shape, dtype=torch.float64)
    u[:, axis] = k
    return u


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("k", [2, -3])
def test_constant_displacement_along_axis_i_moves_content_by_minus_k_along_array_axis_2_plus_i(ndim, k):
    shape = SHAPES[ndim]
    centre = [s // 2 for s in shape]
    img = _impulse(shape, centre)
    for axis in range(ndim):
        out = spatial.warp(img, _constant_field(shape, axis, float(k)))
        expected_pos = list(centre)
        expected_pos[axis] -= k
        # the impulse is found exactly one place, k voxels *against* the displacement, on axis 2+axis
        peak = torch.nonzero(out[0, 0] > 0.5).tolist()
        assert peak == [expected_pos], f"axis {axis}: impulse at {peak}, expected {expected_pos}"
        assert torch.allclose(out, _impulse(shape, expected_pos), atol=1e-6)
        # and nothing moved along the other axes
        assert out.sum().item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
def test_warp_pulls_values_out_of_x_plus_u(ndim):
    """warp(img, u)(x) = img(x + u(x)) on a linear ramp along each axis (exact for linear mode)."""
    shape = SHAPES[ndim]
    grid = spatial.identity_grid(shape, dtype=torch.float64)
    for axis in range(ndim):
        ramp = grid[:, axis:axis + 1]                            # img(x) = x_axis
        u = _constant_field(shape, axis, 1.25)
        out = spatial.warp(ramp, u, padding="zeros")
        inside = [slice(None)] * (2 + ndim)
        inside[2 + axis] = slice(0, shape[axis] - 2)             # x + 1.25 stays in the image
        assert torch.allclose(out[tuple(inside)], (ramp + 1.25)[tuple(inside)], atol=1e-9)


@pytest.mark.parametrize("ndim", [2, 3])
def test_to_normalized_grid_maps_voxel_0_to_minus_1_and_last_voxel_to_plus_1(ndim):
    shape = SHAPES[ndim]
    grid = spatial.to_normalized_grid(spatial.identity_grid(shape, dtype=torch.float64))
    assert grid.shape == (1, *shape, ndim)
    first = grid[(0,) + (0,) * ndim]
    last = grid[(0,) + tuple(s - 1 for s in shape)]
    assert torch.equal(first, torch.full((ndim,), -1.0, dtype=torch.float64))
    assert torch.allclose(last, torch.ones(ndim, dtype=torch.float64), atol=1e-12)
    # linear in between: x_norm = 2 x / (n - 1) - 1
    for axis in range(ndim):
        idx = [0] * ndim
        idx[axis] = 1
        assert grid[(0, *idx)][ndim - 1 - axis].item() == pytest.approx(2.0 / (shape[axis] - 1) - 1.0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_to_normalized_grid_reverses_channel_order_for_grid_sample(ndim):
    shape = SHAPES[ndim]
    coords = spatial.identity_grid(shape, dtype=torch.float64)
    grid = spatial.to_normalized_grid(coords)
    for axis in range(ndim):
        # grid_sample's last-axis entry j describes spatial axis ndim - 1 - j (x = last axis)
        expected = 2 * coords[0, axis] / (shape[axis] - 1) - 1
        assert torch.allclose(grid[0, ..., ndim - 1 - axis], expected, atol=1e-12)


@pytest.mark.parametrize("ndim", [2, 3])
def test_grid_sample_on_the_normalized_identity_grid_returns_the_image(ndim):
    shape = SHAPES[ndim]
    img = torch.rand(1, 2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grid = spatial.to_normalized_grid(spatial.identity_grid(shape, dtype=torch.float64))
    out = F.grid_sample(img, grid, mode="bilinear", align_corners=spatial.ALIGN_CORNERS)
    assert torch.allclose(out, img, atol=1e-12)


def test_to_normalized_grid_uses_the_sampled_image_sizes():
    """``sizes`` is the shape of the image sampled, not of the coordinate grid."""
    coords = torch.tensor([[0.0, 9.0], [0.0, 4.0]], dtype=torch.float64).view(1, 2, 2, 1)
    grid = spatial.to_normalized_grid(coords, sizes=(10, 5))
    assert torch.allclose(grid[0, :, 0], torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=torch.float64))


def test_align_corners_is_true():
    assert spatial.ALIGN_CORNERS is True


def test_identity_grid_channel_i_is_the_index_along_axis_i():
    g = spatial.identity_grid((2, 3, 4))
    assert g.shape == (1, 3, 2, 3, 4)
    for axis, n in enumerate((2, 3, 4)):
        view = [1, 1, 1]
        view[axis] = n
        assert torch.equal(g[0, axis], torch.arange(n, dtype=torch.float32).view(view).expand(2, 3, 4))
