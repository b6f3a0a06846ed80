"""Structure groups of the AAL atlas, for reporting Dice per group rather than per label.

Part of :mod:`course_lib.data`.
"""

from __future__ import annotations

#: Structure groups of the AAL atlas by name prefix (lobes, limbic, deep grey, cerebellum), for
#: reporting Dice per group rather than per each of 116 labels.
STRUCTURE_GROUPS = {
    "frontal": ("Precentral", "Frontal", "Rolandic", "Supp_Motor", "Olfactory", "Rectus", "Paracentral"),
    "parietal": ("Postcentral", "Parietal", "SupraMarginal", "Angular", "Precuneus"),
    "temporal": ("Temporal", "Heschl", "Fusiform"),
    "occipital": ("Calcarine", "Cuneus", "Lingual", "Occipital"),
    "limbic": ("Cingulum", "Hippocampus", "ParaHippocampal", "Amygdala", "Insula"),
    "deep grey": ("Caudate", "Putamen", "Pallidum", "Thalamus"),
    "cerebellum": ("Cerebelum", "Vermis"),
}


def label_groups(names: dict, present=None) -> dict[str, list[int]]:
    """Group atlas labels into :data:`STRUCTURE_GROUPS` by the start of their names.

    Args:
        names: label → structure name, as returned by :func:`load_atlas` (``"AAL"``).
        present: optional labels to keep (e.g. those in a 2D slice); groups left empty are dropped.

    Returns:
        ``{group: [labels]}`` in the order of :data:`STRUCTURE_GROUPS`, plus ``"other"`` for names
        matching no group (none for AAL).
    """
    if not isinstance(names, dict):
        raise TypeError(f"label_groups: names must be a dict label -> name, got {type(names).__name__}")
    if present is not None and (isinstance(present, (str, bytes)) or not hasattr(present, "__iter__")):
        raise TypeError(f"label_groups: present must be a sequence of labels or None, got {type(present).__name__}")
    keep = None if present is None else {int(v) for v in present}
    groups: dict[str, list[int]] = {g: [] for g in STRUCTURE_GROUPS}
    groups["other"] = []
    for label in sorted(names):
        if label == 0 or (keep is not None and int(label) not in keep):
            continue
        group = next((g for g, prefixes in STRUCTURE_GROUPS.items()
                      if str(names[label]).startswith(prefixes)), "other")
        groups[group].append(int(label))
    return {g: v for g, v in groups.items() if v}
