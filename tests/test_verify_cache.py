"""data.verify_cache: rounding-size differences pass, real differences fail with a clear message."""

import json

import numpy as np
import pytest

from course_lib import data


def _build(tmp_path, monkeypatch, image):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "cache"))
    data._cached_npz("v1_test_2mm", lambda: {"image": image, "labels": np.arange(12).reshape(3, 4)},
                     {"source": "test", "resolution_mm": 2})
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(data.cache_summaries()))
    return ref


def _rewrite(tmp_path, image):
    np.savez_compressed(tmp_path / "cache" / "v1_test_2mm.npz", image=image, labels=np.arange(12).reshape(3, 4))


def test_verify_accepts_rounding_and_rejects_real_changes(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    image = rng.random((8, 8)).astype(np.float32)
    ref = _build(tmp_path, monkeypatch, image)
    assert data.verify_cache(ref)["checked"] == ["v1_test_2mm.npz"]
    # last-bit rounding: passes
    _rewrite(tmp_path, np.nextafter(image, np.float32(2)))
    data.verify_cache(ref)
    # a real change (one voxel off by 0.1): fails and names file, array and quantity
    changed = image.copy()
    changed[3, 3] += 0.1
    _rewrite(tmp_path, changed)
    with pytest.raises(ValueError, match=r"v1_test_2mm.npz: image (sum|sumsq|max)"):
        data.verify_cache(ref)
    # another shape: fails
    _rewrite(tmp_path, image[:4])
    with pytest.raises(ValueError, match=r"image is float32\[4, 8\], expected float32\[8, 8\]"):
        data.verify_cache(ref)


def test_verify_needs_the_reference(tmp_path):
    with pytest.raises(FileNotFoundError, match="verify_cache: reference summaries not found"):
        data.verify_cache(tmp_path / "missing.json")


def test_pair_sets_are_keyed_by_parameters_not_file_name():
    key = data._entry_key("pairs_0123abcd.pt", {"sha256": "x", "split": "test", "n": 8, "summary": {}})
    assert key == 'pairs {"n": 8, "split": "test"}'
    assert data._entry_key("v1_mni152_2mm.npz", {"sha256": "x"}) == "v1_mni152_2mm.npz"
