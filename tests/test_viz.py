"""The viewers of course_lib.viz build for 2D and 3D registrations and reject mismatched input."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from course_lib import viz  # noqa: E402


@pytest.mark.parametrize("shape", [(20, 24), (10, 12, 8)])
def test_registration_viewer_builds_for_2d_and_3d(shape):
    n, ndim = 2, len(shape)
    img = torch.rand(n, 1, *shape)
    u = 0.5 * torch.randn(n, ndim, *shape)
    widget = viz.registration_viewer(img, img, img, u)
    names = [getattr(c, "description", "") for c in widget.children]
    assert "pair" in names and (("slice" in names) == (ndim == 3))
    # a 2D image has no slice: no control may stand for one (an idle "position" slider did once)
    sliders = [c for c in widget.children if hasattr(c, "value") and hasattr(c, "min")]
    assert [c.description for c in sliders] == (["pair", "slice"] if ndim == 3 else ["pair"])


@pytest.mark.parametrize("shape", [(20, 24), (10, 12, 8)])
def test_compare_viewer_has_a_slice_slider_only_in_3d(shape):
    img = torch.rand(1, 1, *shape)
    widget = viz.compare_viewer(img, img, img)
    sliders = [c for c in widget.children if hasattr(c, "value") and hasattr(c, "min")]
    assert [c.description for c in sliders] == (["slice"] if len(shape) == 3 else [])


def test_registration_viewer_rejects_mismatched_input():
    img = torch.rand(2, 1, 20, 24)
    with pytest.raises(ValueError, match="registration_viewer: warped must have 2 pairs of spatial shape"):
        viz.registration_viewer(img, img, img[:1], torch.zeros(2, 2, 20, 24))
    with pytest.raises(ValueError, match="registration_viewer: displacement must have 2 channels"):
        viz.registration_viewer(img, img, img, torch.zeros(2, 3, 20, 24))
    with pytest.raises(ValueError, match="registration_viewer: moving must be a"):
        viz.registration_viewer(img[0, 0], img, img, torch.zeros(2, 2, 20, 24))
