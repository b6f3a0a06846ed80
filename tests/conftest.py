"""Shared fixtures for the unit tests of ``course_lib``.

The suite runs on one CPU thread and on small grids (2D 24×32, 3D 12×14×16) so that it stays
well under a minute; every random input comes from a fixed seed.
"""

import random

import numpy as np
import pytest
import torch

from course_lib import data, spatial

torch.set_num_threads(1)
torch.manual_seed(0)
np.random.seed(0)
random.seed(0)

SHAPE_2D = (24, 32)
SHAPE_3D = (12, 14, 16)
SHAPES = {2: SHAPE_2D, 3: SHAPE_3D}


def interior(ndim: int, margin: int = 3) -> tuple:
    """Index that drops ``margin`` voxels at every border of an ``(N, C, *spatial)`` tensor."""
    return (slice(None), slice(None)) + (slice(margin, -margin),) * ndim


def smooth_image(shape, seed: int = 0, sigma: float = 1.5, dtype=torch.float32) -> torch.Tensor:
    """A smooth textured image ``(1, 1, *shape)`` in roughly [0, 1] (blurred white noise)."""
    g = torch.Generator().manual_seed(seed)
    img = spatial.gaussian_blur(torch.rand(1, 1, *shape, generator=g, dtype=torch.float64), sigma)
    img = (img - img.min()) / (img.max() - img.min())
    return img.to(dtype)


def smooth_velocity(shape, seed: int = 0, magnitude: float = 3.0, spacing: int = 12,
                    dtype=torch.float64) -> torch.Tensor:
    """A smooth random velocity ``(1, ndim, *shape)`` (largest component ``magnitude`` voxels)."""
    return data.random_velocity(shape, seed, magnitude=magnitude, spacing=spacing).to(dtype)


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def ndim(request) -> int:
    """Run a test once in 2D and once in 3D."""
    return request.param


@pytest.fixture
def shape(ndim) -> tuple:
    return SHAPES[ndim]


@pytest.fixture
def image(shape) -> torch.Tensor:
    """Smooth textured float64 image ``(1, 1, *shape)``."""
    return smooth_image(shape, seed=1, dtype=torch.float64)


@pytest.fixture
def velocity(ndim, shape) -> torch.Tensor:
    """Smooth float64 velocity field: magnitude 3 voxels in 2D, 2 voxels in 3D (smaller grid)."""
    if ndim == 2:
        return smooth_velocity(shape, seed=2, magnitude=3.0, spacing=12)
    return smooth_velocity(shape, seed=2, magnitude=2.0, spacing=8)


@pytest.fixture
def displacement(velocity) -> torch.Tensor:
    """A smooth diffeomorphic displacement: ``exp(velocity)`` by scaling and squaring."""
    return spatial.integrate_velocity(velocity)
