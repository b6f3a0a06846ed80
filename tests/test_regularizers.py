"""Properties of the smoothness penalties (lessons 03 and 08): what they vanish on, that they are
positive otherwise, their scaling, module twins and gradcheck."""

import pytest
import torch
from torch.autograd import gradcheck

from course_lib import data, regularizers as reg, spatial


def _const(shape, values) -> torch.Tensor:
    ndim = len(shape)
    return torch.tensor(values, dtype=torch.float64).view(1, ndim, *([1] * ndim)).expand(1, ndim, *shape).clone()


def _random_affine_field(shape, seed) -> torch.Tensor:
    """Dense displacement of a random (clearly non-rigid) affine, ``(1, ndim, *shape)``."""
    m = data.random_affine(shape, seed, rotation=20.0, translation=4.0, scale=0.2, shear=0.2).double()
    return spatial.affine_to_displacement(m, shape)


def test_diffusion_is_zero_on_constant_fields(ndim, shape):
    assert reg.diffusion(torch.zeros(1, ndim, *shape, dtype=torch.float64)).item() == 0.0
    assert reg.diffusion(_const(shape, [1.5, -2.0, 0.25][:ndim])).item() == 0.0


def test_diffusion_is_positive_on_non_constant_fields(ndim, shape, displacement):
    assert reg.diffusion(displacement).item() > 1e-4
    assert reg.diffusion(_random_affine_field(shape, 0)).item() > 1e-4


def test_diffusion_of_a_linear_field_is_its_squared_slope(ndim, shape):
    """u_0 = a x_0 has forward differences a along axis 0: diffusion = a² / ndim (mean per channel)."""
    u = torch.zeros(1, ndim, *shape, dtype=torch.float64)
    u[:, 0] = 0.3 * spatial.identity_grid(shape, dtype=torch.float64)[0, 0]
    # mean over (N, ndim channels, ...) of the squared difference: a² on channel 0, 0 on others
    assert reg.diffusion(u).item() == pytest.approx(0.3 ** 2 / ndim, rel=1e-12)


def test_diffusion_scales_quadratically(ndim, displacement):
    assert reg.diffusion(3 * displacement).item() == pytest.approx(9 * reg.diffusion(displacement).item(), rel=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bending_energy_vanishes_on_random_affine_fields(ndim, shape, seed):
    u = _random_affine_field(shape, seed)
    assert u.abs().max() > 1.0                                     # a real deformation
    assert reg.bending_energy(u).item() < 1e-8


def test_bending_energy_is_positive_on_smooth_random_fields(ndim, displacement, velocity):
    assert reg.bending_energy(displacement).item() > 1e-6
    assert reg.bending_energy(velocity).item() > 1e-6


def test_bending_energy_of_a_quadratic_field_counts_cross_terms_twice():
    """u_0 = x_0 x_1 (2D) has ∂²u_0/∂x_0∂x_1 = 1, no pure second derivatives: energy = 2 / 2."""
    shape = (6, 7)
    x = spatial.identity_grid(shape, dtype=torch.float64)[0]
    u = torch.zeros(1, 2, *shape, dtype=torch.float64)
    u[:, 0] = x[0] * x[1]
    assert reg.bending_energy(u).item() == pytest.approx(1.0, rel=1e-12)   # 2 · mean over 2 channels


def test_bending_energy_is_not_fooled_by_translation(ndim, shape, displacement):
    shifted = displacement + _const(shape, [2.0] * ndim)
    assert reg.bending_energy(shifted).item() == pytest.approx(reg.bending_energy(displacement).item(), rel=1e-9)


def test_module_twins_equal_the_functions(displacement):
    assert reg.Diffusion()(displacement).item() == reg.diffusion(displacement).item()
    assert reg.BendingEnergy()(displacement).item() == reg.bending_energy(displacement).item()


@pytest.mark.parametrize("fn", [reg.diffusion, reg.bending_energy], ids=["diffusion", "bending"])
@pytest.mark.parametrize("small", [(5, 6), (4, 3, 5)], ids=["2d", "3d"])
def test_gradcheck_regularizers(fn, small):
    u = torch.randn(2, len(small), *small, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    assert gradcheck(fn, (u,))
