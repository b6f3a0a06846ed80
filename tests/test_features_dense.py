"""Unit tests for lesson 03's library pieces: dense/B-spline registration and features."""

import pytest
import torch

from course_lib import classical, features, metrics, regularizers, similarity, spatial

torch.set_num_threads(1)


def _blobs(shape, seed=0):
    """A smooth random image with corners and texture, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    img = spatial.gaussian_blur(torch.rand(1, 1, *shape, generator=g), 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    return img


def _random_affine_2d(seed=1):
    g = torch.Generator().manual_seed(seed)
    M = torch.eye(3, dtype=torch.float64)
    M[:2, :2] += (torch.rand(2, 2, generator=g, dtype=torch.float64) - 0.5) * 0.3
    M[:2, 2] = (torch.rand(2, generator=g, dtype=torch.float64) - 0.5) * 20
    return M


def test_bspline_zero_coefficients_give_zero_field():
    shape = (20, 24)
    coeffs = torch.zeros(2, 2, *classical.bspline_grid_size(shape, 5))
    assert classical.bspline_field(coeffs, shape, 5).abs().max() == 0


def test_bspline_constant_coefficients_give_constant_field():
    # cubic B-splines are a partition of unity: equal coefficients reproduce that constant
    shape = (20, 24, 18)
    coeffs = torch.full((1, 3, *classical.bspline_grid_size(shape, 6)), 1.5)
    u = classical.bspline_field(coeffs, shape, 6)
    assert torch.allclose(u, torch.full_like(u, 1.5), atol=1e-5)


def test_bspline_coarse_level_matches_resized_full_field():
    shape, coarse = (33, 41), (17, 21)
    g = torch.Generator().manual_seed(0)
    coeffs = torch.randn(1, 2, *classical.bspline_grid_size(shape, 8), generator=g)
    full = classical.bspline_field(coeffs, shape, 8)
    small = classical.bspline_field(coeffs, coarse, 8, full_shape=shape)
    ref = spatial.resize_displacement(full, coarse)
    assert (small - ref).abs().max() < 0.05 * full.abs().max()


def test_bspline_bad_coefficient_shape():
    with pytest.raises(ValueError, match="bspline_field: coeffs"):
        classical.bspline_field(torch.zeros(1, 2, 3, 3), (20, 24), 5)


@pytest.mark.parametrize("model", ["displacement", "bspline"])
def test_register_dense_recovers_a_smooth_deformation(model):
    fixed = _blobs((40, 48))
    g = torch.Generator().manual_seed(3)
    v = spatial.gaussian_blur(torch.randn(1, 2, 40, 48, generator=g), 6.0)
    true = spatial.integrate_velocity(v / v.abs().max() * 2.0)
    moving = spatial.warp(fixed, -true)       # approximately: warp(moving, true) ≈ fixed
    before = similarity.ssd(moving, fixed).item()
    res = classical.register_dense(moving, fixed, similarity.ssd, model=model, weight=0.05,
                                   levels=2, steps=[60, 60], lr=0.2 if model == "bspline" else 0.1,
                                   spacing=6)
    after = similarity.ssd(spatial.warp(moving, res.displacement), fixed).item()
    assert res.displacement.shape == (1, 2, 40, 48)
    assert after < 0.3 * before, (before, after)
    assert len(res.history) == 120 and res.level[0] == 1 and res.level[-1] == 0


def test_register_dense_stronger_regularization_is_smoother():
    fixed = _blobs((32, 32), seed=4)
    moving = _blobs((32, 32), seed=5)          # unrelated images: the regularizer must hold back
    energies = []
    for w in (0.001, 1.0):
        res = classical.register_dense(moving, fixed, similarity.ssd, weight=w, levels=1, steps=80)
        energies.append(regularizers.diffusion(res.displacement).item())
    assert energies[1] < energies[0], energies


def test_register_dense_diffeomorphic_folds_less_at_equal_regularization():
    # exp(v) is only guaranteed invertible for smooth v: with weak regularization on unrelated
    # images the plain field folds a lot, the integrated one much less (not zero: v is rough).
    fixed = _blobs((32, 32), seed=6)
    moving = _blobs((32, 32), seed=7)
    folds = {}
    for diffeo in (False, True):
        res = classical.register_dense(moving, fixed, similarity.ssd, weight=0.01, levels=1, steps=60,
                                       lr=0.3, diffeomorphic=diffeo)
        folds[diffeo] = metrics.folding_fraction(res.displacement).item()
    assert folds[True] < 0.5 * folds[False], folds


def test_register_dense_init_is_composed():
    fixed = _blobs((24, 28))
    init = torch.zeros(1, 2, 24, 28)
    init[:, 1] = 2.0
    res = classical.register_dense(fixed, fixed, similarity.ssd, levels=1, steps=1, lr=0.0, init=init)
    assert torch.allclose(res.displacement, init, atol=1e-5)


def test_register_dense_bad_input():
    a = torch.zeros(1, 1, 16, 16)
    with pytest.raises(ValueError, match="register_dense: moving and fixed"):
        classical.register_dense(a, torch.zeros(1, 1, 16, 17))
    with pytest.raises(ValueError, match="register_dense: model"):
        classical.register_dense(a, a, model="spline")
    with pytest.raises(ValueError, match="register_dense: steps"):
        classical.register_dense(a, a, levels=2, steps=[1, 2, 3])
    with pytest.raises(ValueError, match="register_dense: init"):
        classical.register_dense(a, a, init=torch.zeros(1, 2, 8, 8))


def test_transform_points_constant_and_interpolated():
    u = torch.zeros(1, 2, 10, 12)
    u[:, 0] = 1.5
    u[:, 1] = torch.arange(12.0)              # u_1(x) = x_1: linear, so interpolation is exact
    p = torch.tensor([[[2.0, 3.0], [4.5, 7.25]]])
    out = spatial.transform_points(p, u)
    assert torch.allclose(out, torch.tensor([[[3.5, 6.0], [6.0, 14.5]]]))
    with pytest.raises(ValueError, match="transform_points: points"):
        spatial.transform_points(torch.zeros(1, 2, 3), u)


def test_keypoints_inside_image_and_mask():
    img = _blobs((48, 56))
    mask = torch.zeros_like(img)
    mask[..., 10:40, 10:50] = 1
    kp = features.detect_keypoints(img, n=30, mask=mask)
    assert 0 < len(kp) <= 30
    assert (kp[:, 0] >= 10).all() and (kp[:, 0] < 40).all() and (kp[:, 1] >= 10).all()


def test_keypoints_in_3d():
    # regression: with the 2D Harris constant 0.04, det(S) - k·trace(S)³ < 0 everywhere in 3D
    # (det ≤ (trace/3)³), so no key point was ever found in a volume
    img = _blobs((24, 28, 20))
    kp = features.detect_keypoints(img, n=20, border=3)
    assert 0 < len(kp) <= 20 and kp.shape[1] == 3
    assert (kp >= 3).all() and (kp[:, 0] < 21).all() and (kp[:, 2] < 17).all()


def test_patch_descriptor_is_normalized_and_contrast_invariant():
    img = _blobs((40, 40))
    pts = torch.tensor([[10.0, 12.0], [20.5, 25.0]])
    d1 = features.patch_descriptor(img, pts, 3)
    d2 = features.patch_descriptor(2 * img + 1, pts, 3)
    assert d1.shape == (2, 49)
    assert torch.allclose(d1.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(d1, d2, atol=1e-5)


def test_matching_finds_translated_points():
    img = _blobs((64, 64), seed=2)
    shift = torch.zeros(1, 2, 64, 64)
    shift[:, 0], shift[:, 1] = 3.0, -2.0
    moving = spatial.warp(img, -shift)        # content moves by +shift: moving(x + s) = img(x)
    kp_f = features.detect_keypoints(img, n=40)
    kp_m = features.detect_keypoints(moving, n=40)
    for desc in (features.patch_descriptor, features.gradient_histogram_descriptor):
        m = features.match_descriptors(desc(img, kp_f), desc(moving, kp_m))
        assert len(m) >= 5
        d = kp_m[m[:, 1]] - kp_f[m[:, 0]]
        correct = ((d - torch.tensor([3.0, -2.0])).norm(dim=1) < 1.5).float().mean()
        assert correct > 0.8, (desc.__name__, correct)


def test_ransac_recovers_affine_with_40_percent_outliers():
    g = torch.Generator().manual_seed(0)
    M = _random_affine_2d()
    src = torch.rand(100, 2, generator=g, dtype=torch.float64) * 90
    dst = (M[:2, :2] @ src.T + M[:2, 2:]).T + 0.1 * torch.randn(100, 2, generator=g, dtype=torch.float64)
    bad = torch.randperm(100, generator=g)[:40]
    dst[bad] = torch.rand(40, 2, generator=g, dtype=torch.float64) * 90
    est, inliers = features.ransac_affine(src, dst, threshold=1.0)
    ls = features.fit_affine(src, dst)
    assert (est - M).abs().max() < 0.05
    assert (ls - M).abs().max() > 10 * (est - M).abs().max()      # least squares is broken
    good = torch.ones(100, dtype=torch.bool)
    good[bad] = False
    assert (inliers == good).float().mean() > 0.95


def test_tps_interpolates_control_points_exactly():
    g = torch.Generator().manual_seed(0)
    for shape in ((30, 34), (14, 16, 18)):
        nd = len(shape)
        pts = torch.rand(12, nd, generator=g, dtype=torch.float64) * (torch.tensor(shape, dtype=torch.float64) - 1)
        pts = pts.round()                      # on voxels, so the dense field holds the value exactly
        pts = torch.unique(pts, dim=0)
        vals = torch.randn(len(pts), nd, generator=g, dtype=torch.float64)
        f = features.tps_displacement(pts, vals, shape)
        at = f[0][(slice(None),) + tuple(pts.long().T)].T
        assert torch.allclose(at, vals, atol=1e-6)


def test_tps_reproduces_affine_fields():
    pts = torch.tensor([[2.0, 3.0], [20.0, 5.0], [10.0, 25.0], [25.0, 28.0], [14.0, 14.0]], dtype=torch.float64)
    A = torch.tensor([[0.1, -0.2], [0.05, 0.15]], dtype=torch.float64)
    vals = pts @ A.T + torch.tensor([1.0, -2.0], dtype=torch.float64)
    f = features.tps_displacement(pts, vals, (30, 32))
    grid = spatial.identity_grid((30, 32), dtype=torch.float64)[0]
    ref = torch.einsum("ij,jhw->ihw", A, grid) + torch.tensor([1.0, -2.0], dtype=torch.float64).view(2, 1, 1)
    assert torch.allclose(f[0], ref, atol=1e-6)


def test_features_bad_input():
    img = torch.zeros(1, 1, 16, 16)
    with pytest.raises(ValueError, match="detect_keypoints: image"):
        features.detect_keypoints(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="sample_patches: points"):
        features.sample_patches(img, torch.zeros(3, 3), 2)
    with pytest.raises(ValueError, match="match_descriptors: descriptors"):
        features.match_descriptors(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="ransac_affine: need at least 3"):
        features.ransac_affine(torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="tps_displacement: points and values"):
        features.tps_displacement(torch.zeros(4, 2), torch.zeros(4, 3), (8, 8))
    with pytest.raises(ValueError, match="gradient_histogram_descriptor: 2D"):
        features.gradient_histogram_descriptor(torch.zeros(1, 1, 8, 8, 8), torch.zeros(1, 3))
