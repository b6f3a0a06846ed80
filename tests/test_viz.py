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


# ------------------------------------------------------------------- figures: frames, det J, orientation

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from course_lib import spatial  # noqa: E402


def test_plot_grid_says_its_frame_and_draws_each_one():
    shape = (24, 28)
    u = torch.zeros(1, 2, *shape)
    u[:, 0] = 2.0                                           # fixed x reads the moving image at x + 2
    fig, (a, b) = plt.subplots(1, 2)
    viz.plot_grid(u, a, step=4, title="demo")
    viz.plot_grid(u, b, step=4, title="demo", frame="fixed")
    assert "moving frame" in a.get_title() and "fixed frame" in b.get_title()
    # moving frame: the fixed grid's vertical lines sit at x + 2 = 2, 6, ...
    xs = sorted({round(float(line.get_xdata()[0]), 3) for line in a.lines if np.ptp(line.get_xdata()) == 0})
    assert xs[:3] == [2.0, 6.0, 10.0]
    # fixed frame: the moving grid's line x' = 4 is pulled back to x = 2 (contours, not lines)
    assert not b.lines and b.collections
    plt.close(fig)
    with pytest.raises(ValueError, match="plot_grid: frame must be 'moving' or 'fixed'"):
        viz.plot_grid(u, frame="warped")
    with pytest.raises(ValueError, match="plot_grid: image and displacement must have the same spatial shape"):
        viz.plot_grid(u, image=torch.rand(1, 1, 10, 10))


def test_plot_jacobian_is_log_scaled_about_one_with_black_folds_and_a_labelled_colour_bar():
    shape = (20, 20)
    u = torch.zeros(1, 2, *shape)
    u[0, 0, 8:12] = -3.0 * torch.arange(4.0)[:, None]       # a fold: the map runs backwards there
    jac = spatial.jacobian_determinant(u)
    assert (jac <= 0).any()
    fig, ax = plt.subplots()
    im = viz.plot_jacobian(u, ax, vmax=4.0)
    assert isinstance(im.norm, LogNorm) and im.norm.vmin == pytest.approx(0.25) and im.norm.vmax == 4.0
    folds = [i for i in ax.images if i is not im]
    assert len(folds) == 1 and folds[0].cmap(0.5)[:3] == (0.0, 0.0, 0.0)
    assert "folded" in fig.axes[-1].get_ylabel()
    assert "folded px" in ax.get_title()
    plt.close(fig)
    mask = torch.zeros(1, 1, *shape)
    mask[..., :5, :] = 1                                    # excludes the fold
    fig, ax = plt.subplots()
    viz.plot_jacobian(u, ax, mask=mask)
    assert "in mask" in ax.get_title() and "0 folded px" in ax.get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="plot_jacobian: vmax must be > 1"):
        viz.plot_jacobian(u, vmax=1.0)
    with pytest.raises(ValueError, match="plot_jacobian: mask must have the displacement's spatial shape"):
        viz.plot_jacobian(u, mask=torch.ones(1, 1, 5, 5))


@pytest.mark.parametrize("axis, letters", [(2, "LRPA"), (1, "LRIS"), (0, "PAIS")])
def test_mark_orientation_letters_the_subjects_directions(axis, letters):
    fig, ax = plt.subplots()
    viz.show(torch.rand(6, 7, 8), ax, axis=axis, orientation=True)
    assert "".join(t.get_text() for t in ax.texts) == letters
    plt.close(fig)
    fig, ax = plt.subplots()
    viz.show(torch.rand(1, 1, 6, 7), ax, orientation=True)     # a 2D slice is axial
    assert "".join(t.get_text() for t in ax.texts) == "LRPA"
    plt.close(fig)
    with pytest.raises(ValueError, match="mark_orientation: axis must be 0, 1 or 2"):
        viz.mark_orientation(axis=3)
    with pytest.raises(TypeError, match="show: orientation must be a bool"):
        viz.show(torch.rand(6, 7), orientation="yes")


def test_show_labels_its_colour_bar():
    fig, ax = plt.subplots()
    viz.show(torch.rand(6, 7), ax, colorbar="intensity (a.u.)")
    assert fig.axes[-1].get_ylabel() == "intensity (a.u.)"
    plt.close(fig)
    with pytest.raises(TypeError, match="show: colorbar must be a bool or a label string"):
        viz.show(torch.rand(6, 7), colorbar=1)


def test_registration_viewer_titles_each_index_with_its_name():
    img, u = torch.rand(2, 1, 20, 24), torch.zeros(2, 2, 20, 24)
    widget = viz.registration_viewer(img, img, img, u, names=["affine", "dense"])
    assert widget.children[0].max == 1
    with pytest.raises(ValueError, match="registration_viewer: names must hold one title per pair \\(2\\), got 1"):
        viz.registration_viewer(img, img, img, u, names=["affine"])
    with pytest.raises(TypeError, match="registration_viewer: names must be a list of 2 strings"):
        viz.registration_viewer(img, img, img, u, names="affine")
