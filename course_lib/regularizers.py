"""Smoothness penalties on displacement fields ``(N, ndim, *spatial)`` (voxels).

Introduced in lessons 03 and 08.

* :func:`diffusion` — mean squared first derivative ``Σ_i Σ_j (∂u_i/∂x_j)²``; zero for constant
  (translation) fields, *not* for general affine fields.
* :func:`bending_energy` — mean squared second derivative
  ``Σ_i [Σ_j (∂²u_i/∂x_j²)² + 2 Σ_{j<k} (∂²u_i/∂x_j∂x_k)²]``; zero for every affine field.

Derivatives are finite differences on the interior (no padding), so both are exact for the fields
they should vanish on. References: Fischer & Modersitzki 2002; Rueckert et al. 1999.
"""

from __future__ import annotations

import torch

from ._checks import check_field, check_min_size

__all__ = ["diffusion", "bending_energy", "Diffusion", "BendingEnergy"]


def _diff(u: torch.Tensor, axis: int) -> torch.Tensor:
    """Forward difference along spatial ``axis`` (array dim ``2 + axis``), one voxel shorter."""
    d = 2 + axis
    return u.narrow(d, 1, u.shape[d] - 1) - u.narrow(d, 0, u.shape[d] - 1)


def diffusion(displacement: torch.Tensor) -> torch.Tensor:
    """Mean squared gradient of the displacement (scalar); every spatial size must be >= 2."""
    return _diffusion("diffusion", displacement)


def _diffusion(fn: str, displacement) -> torch.Tensor:
    check_field(fn, "displacement", displacement)
    check_min_size(fn, "displacement", displacement, 2)     # a forward difference needs 2 voxels
    ndim = displacement.shape[1]
    return sum((_diff(displacement, j) ** 2).mean() for j in range(ndim))


def bending_energy(displacement: torch.Tensor) -> torch.Tensor:
    """Mean squared second derivatives, cross terms counted twice (scalar); every spatial size
    must be >= 3."""
    return _bending_energy("bending_energy", displacement)


def _bending_energy(fn: str, displacement) -> torch.Tensor:
    check_field(fn, "displacement", displacement)
    check_min_size(fn, "displacement", displacement, 3)
    ndim = displacement.shape[1]
    total = 0.0
    for j in range(ndim):
        total = total + (_diff(_diff(displacement, j), j) ** 2).mean()
        for k in range(j + 1, ndim):
            total = total + 2 * (_diff(_diff(displacement, j), k) ** 2).mean()
    return total


class Diffusion(torch.nn.Module):
    """Module twin of :func:`diffusion`."""

    def forward(self, displacement: torch.Tensor) -> torch.Tensor:
        return _diffusion("Diffusion.forward", displacement)


class BendingEnergy(torch.nn.Module):
    """Module twin of :func:`bending_energy`."""

    def forward(self, displacement: torch.Tensor) -> torch.Tensor:
        return _bending_energy("BendingEnergy.forward", displacement)
