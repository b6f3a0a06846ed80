"""Networks of the course, one file per concept, all 2D and 3D from one code path.

* ``StackedAutoencoder`` (``autoencoder.py``) — lesson 04, learned features (Wu et al.).
* ``PatchSimilarityNet`` (``similarity_net.py``) — lesson 05, learned similarity (Cheng et al.).

Later lessons add ``UNet``/``VoxelMorph`` (08), ``AffineRegressor`` (06) and ``Discriminator`` (10).
"""

from __future__ import annotations

# one import line per network file (keep alphabetical)
from .autoencoder import SAEConfig, StackedAutoencoder  # noqa: F401
from .regressor import AffineRegressor, RegressorConfig  # noqa: F401
from .similarity_net import PatchSimilarityConfig, PatchSimilarityNet  # noqa: F401
