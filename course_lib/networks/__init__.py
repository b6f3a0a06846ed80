"""Networks of the course, one file per concept, all 2D and 3D from one code path.

* ``StackedAutoencoder`` (``autoencoder.py``) — lesson 04, learned features (Wu et al.).
* ``PatchSimilarityNet`` (``similarity_net.py``) — lesson 05, learned similarity (Cheng et al.).
* ``AffineRegressor`` (``regressor.py``) — lessons 06-07, supervised regression, geodesic loss.
* ``UNet`` (``unet.py``) and ``VoxelMorph`` (``voxelmorph.py``) — lessons 08-09, unsupervised,
  diffeomorphic, weakly and dually supervised dense registration (Balakrishnan, Dalca, Hu, Fan).
* ``Discriminator`` (``discriminator.py``) — lesson 10, adversarial registration: a patch
  discriminator on image pairs or displacement fields (Fan, Yan, Hu et al. 2018); trained with
  :func:`course_lib.train.fit_adversarial`.
"""

from __future__ import annotations

# one import line per network file (keep alphabetical)
from .autoencoder import SAEConfig, StackedAutoencoder  # noqa: F401
from .discriminator import Discriminator, DiscriminatorConfig  # noqa: F401
from .regressor import AffineRegressor, RegressorConfig  # noqa: F401
from .similarity_net import PatchSimilarityConfig, PatchSimilarityNet  # noqa: F401
from .unet import UNet  # noqa: F401
from .voxelmorph import VoxelMorph, VoxelMorphConfig, VoxelMorphOutput  # noqa: F401
