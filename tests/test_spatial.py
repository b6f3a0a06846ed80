"""Mathematical properties of ``course_lib.spatial`` (lesson 01): identity, translations, affine
matrices, inverse consistency, composition, Jacobians, resizing, label warps, gradcheck."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from course_lib import data, spatial
from conftest import interior, smooth_image, smooth_velocity


def _const(shape, values, dtype=torch.float64) -> torch.Tensor:
    """Constant field ``(1, ndim, *shape)`` with channel i equal to ``values[i]``."""
    return torch.tensor(values, dtype=dtype).view(1, -1, *([1] * len(shape))).expand(1, len(shape), *shape).clone()


# ----------------------------------------------------------------------------- identity, shifts

def test_zero_field_is_the_identity(ndim, shape):
    img32 = smooth_image(shape, seed=3)
    img64 = img32.double()
    assert (spatial.warp(img32, torch.zeros(1, ndim, *shape)) - img32).abs().max() < 1e-6
    assert (spatial.warp(img64, torch.zeros(1, ndim, *shape, dtype=torch.float64)) - img64).abs().max() < 1e-12
    labels = torch.randint(0, 7, (1, 1, *shape), generator=torch.Generator().manual_seed(0))
    assert torch.equal(spatial.warp(labels, torch.zeros(1, ndim, *shape), mode="nearest"), labels)


def test_integer_translation_moves_by_exactly_that(ndim, shape, image):
    t = [2, -1, 3][:ndim]
    out = spatial.warp(image, _const(shape, t))
    # out[x] = image[x + t] wherever x + t is inside the image
    dst = tuple(slice(max(0, -k), n - max(0, k)) for k, n in zip(t, shape))
    src = tuple(slice(max(0, k), n - max(0, -k)) for k, n in zip(t, shape))
    assert torch.allclose(out[(..., *dst)], image[(..., *src)], atol=1e-12)


def test_warp_broadcasts_a_batch_of_one_against_a_batch_of_fields(ndim, shape, image):
    fields = torch.stack([_const(shape, [1] * ndim)[0], _const(shape, [-1] * ndim)[0]])
    out = spatial.warp(image, fields)
    assert out.shape == (2, 1, *shape)
    assert torch.allclose(out[1], spatial.warp(image, fields[1:])[0], atol=1e-12)


def test_warp_affine_of_a_rigid_translation_equals_the_shifted_image(ndim, shape, image):
    t = torch.tensor([[1.0, -2.0, 1.0][:ndim]], dtype=torch.float64)
    angles = torch.zeros(1, 1 if ndim == 2 else 3, dtype=torch.float64)
    m = spatial.rigid_matrix(angles, t, [(s - 1) / 2 for s in shape])
    out = spatial.warp_affine(image, m)
    assert torch.allclose(out, spatial.warp(image, _const(shape, t[0].tolist())), atol=1e-12)
    dst = tuple(slice(max(0, -int(k)), n - max(0, int(k))) for k, n in zip(t[0], shape))
    src = tuple(slice(max(0, int(k)), n - max(0, -int(k))) for k, n in zip(t[0], shape))
    assert torch.allclose(out[(..., *dst)], image[(..., *src)], atol=1e-12)


@pytest.mark.parametrize("k", [6, 12])
def test_affine_matrix_of_zero_params_is_the_identity(k):
    m = spatial.affine_matrix(torch.zeros(3, k))
    d = 2 if k == 6 else 3
    assert torch.equal(m, torch.eye(d + 1).expand(3, -1, -1))


def test_affine_matrix_reads_params_as_rows_of_m_minus_identity():
    p = torch.tensor([[0.1, 0.2, 3.0, -0.3, 0.05, -4.0]])
    expected = torch.tensor([[[1.1, 0.2, 3.0], [-0.3, 1.05, -4.0], [0.0, 0.0, 1.0]]])
    assert torch.allclose(spatial.affine_matrix(p), expected)


def test_affine_to_displacement_of_the_identity_is_zero(ndim, shape):
    u = spatial.affine_to_displacement(torch.eye(ndim + 1, dtype=torch.float64)[None], shape)
    assert u.shape == (1, ndim, *shape)
    assert torch.equal(u, torch.zeros_like(u))


def test_affine_to_displacement_is_m_x_minus_x(ndim, shape):
    m = data.random_affine(shape, 5).double()
    u = spatial.affine_to_displacement(m, shape)
    x = torch.tensor([s - 2 for s in shape], dtype=torch.float64)
    mx = m[0, :ndim, :ndim] @ x + m[0, :ndim, ndim]
    assert torch.allclose(u[(0, slice(None), *[s - 2 for s in shape])], mx - x, atol=1e-10)


# ----------------------------------------------------------------------------- inverse, compose

def test_affine_composed_with_its_inverse_is_the_identity(ndim, shape):
    m = data.random_affine(shape, 7, rotation=5.0, translation=1.0, scale=0.03, shear=0.02).double()
    fwd = spatial.affine_to_displacement(m, shape)
    inv = spatial.affine_to_displacement(torch.linalg.inv(m), shape)
    for first, second in ((fwd, inv), (inv, fwd)):
        err = spatial.compose(first, second)
        assert err[interior(ndim, 3)].abs().max() < 1e-3


def test_integrated_velocity_composed_with_integrated_negative_velocity_is_the_identity(ndim, velocity):
    fwd = spatial.integrate_velocity(velocity)
    inv = spatial.integrate_velocity(-velocity)
    assert fwd.abs().max() > 1.0                        # a real deformation, not a near-identity
    for first, second in ((fwd, inv), (inv, fwd)):
        err = spatial.compose(first, second)
        assert err[interior(ndim, 3)].abs().max() < 0.05


def test_compose_matches_warping_twice(ndim, shape):
    img = smooth_image(shape, seed=4, sigma=2.0, dtype=torch.float64)
    spacing = 12 if ndim == 2 else 8
    first = spatial.integrate_velocity(smooth_velocity(shape, 3, magnitude=2.0, spacing=spacing))
    second = spatial.integrate_velocity(smooth_velocity(shape, 4, magnitude=2.0, spacing=spacing))
    twice = spatial.warp(spatial.warp(img, first), second)
    once = spatial.warp(img, spatial.compose(first, second))
    inner = interior(ndim, 3)
    err = (twice - once)[inner].abs().max()
    assert err < 0.05
    assert err < 0.25 * (twice - img)[inner].abs().max()          # far below the size of the warp


def test_compose_of_affine_fields_is_the_matrix_product_in_pull_order(ndim, shape):
    """warp(warp(img, A), B)(x) = img(A B x): compose(first=A, second=B) is the field of A @ B
    (exact for affine fields at interior voxels, and A @ B != B @ A here)."""
    a = data.random_affine(shape, 1, rotation=20.0, translation=2.0).double()
    b = data.random_affine(shape, 2, rotation=20.0, translation=2.0).double()
    got = spatial.compose(spatial.affine_to_displacement(a, shape), spatial.affine_to_displacement(b, shape))
    inner = interior(ndim, 3)
    assert (got - spatial.affine_to_displacement(a @ b, shape))[inner].abs().max() < 1e-9
    assert (got - spatial.affine_to_displacement(b @ a, shape))[inner].abs().max() > 0.1

def test_compose_with_zero_is_neutral(ndim, displacement):
    zero = torch.zeros_like(displacement)
    assert torch.allclose(spatial.compose(displacement, zero), displacement, atol=1e-12)
    assert torch.allclose(spatial.compose(zero, displacement), displacement, atol=1e-12)


def test_compose_of_translations_adds_them(ndim, shape):
    a, b = _const(shape, [1.5] * ndim), _const(shape, [-0.25] * ndim)
    out = spatial.compose(a, b)
    assert torch.allclose(out[interior(ndim, 2)], (a + b)[interior(ndim, 2)], atol=1e-12)


def test_integrate_velocity_of_a_constant_field_is_that_translation(ndim, shape):
    v = _const(shape, [0.75] * ndim)
    u = spatial.integrate_velocity(v)
    assert torch.allclose(u[interior(ndim, 2)], v[interior(ndim, 2)], atol=1e-10)


def test_integrate_velocity_with_zero_steps_returns_the_velocity(velocity):
    assert torch.equal(spatial.integrate_velocity(velocity, steps=0), velocity)


# ----------------------------------------------------------------------------- Jacobian

def _quadratic_field(shape):
    """u_i(x) = Σ_j b_ij x_j + Σ_{j<=k} a_ijk x_j x_k (scaled to ~1 voxel) and its analytic det J."""
    ndim = len(shape)
    g = torch.Generator().manual_seed(11)
    x = spatial.identity_grid(shape, dtype=torch.float64)[0]               # (ndim, *shape)
    scale = 1.0 / max(shape)
    b = (torch.rand(ndim, ndim, generator=g, dtype=torch.float64) - 0.5) * 0.4
    a = (torch.rand(ndim, ndim, ndim, generator=g, dtype=torch.float64) - 0.5) * 0.4 * scale
    u = torch.einsum("ij,j...->i...", b, x) + torch.einsum("ijk,j...,k...->i...", a, x, x)
    # d u_i / d x_m = b_im + Σ_k (a_imk + a_ikm) x_k
    jac = b.view(ndim, ndim, *([1] * ndim)) + torch.einsum("imk,k...->im...", a + a.transpose(1, 2), x)
    jac = jac + torch.eye(ndim, dtype=torch.float64).view(ndim, ndim, *([1] * ndim))
    det = torch.linalg.det(jac.movedim((0, 1), (-2, -1)))
    return u[None], det[None]


def test_jacobian_determinant_of_a_quadratic_field_matches_the_analytic_one(ndim, shape):
    u, det = _quadratic_field(shape)
    got = spatial.jacobian_determinant(u)
    assert got.shape == (1, *shape)
    inner = (slice(None),) + (slice(1, -1),) * ndim
    assert (got - det)[inner].abs().max() < 1e-4
    assert det.std() > 0.01                                                # not a constant det


def test_jacobian_determinant_of_an_affine_field_is_det_of_the_matrix_everywhere(ndim, shape):
    m = data.random_affine(shape, 3, scale=0.2).double()
    got = spatial.jacobian_determinant(spatial.affine_to_displacement(m, shape))
    assert torch.allclose(got, torch.linalg.det(m[0]).expand_as(got), atol=1e-10)


def test_scaling_and_squaring_of_a_smooth_velocity_has_positive_jacobian(ndim, shape):
    for seed in range(3):
        v = smooth_velocity(shape, seed, magnitude=3.0, spacing=12 if ndim == 2 else 8)
        det = spatial.jacobian_determinant(spatial.integrate_velocity(v))
        assert det.min() > 0
        assert det.max() - det.min() > 0.2                                # it does change volumes


# ----------------------------------------------------------------------------- resize, labels

def test_resize_displacement_scales_a_constant_field_by_m_minus_1_over_n_minus_1(ndim, shape):
    values = [1.0, -2.0, 0.5][:ndim]
    new = tuple(2 * s - 1 for s in shape) if ndim == 2 else (23, 20, 9)
    out = spatial.resize_displacement(_const(shape, values), new)
    assert out.shape == (1, ndim, *new)
    for i, (m, n) in enumerate(zip(new, shape)):
        assert torch.allclose(out[0, i], torch.full(new, values[i] * (m - 1) / (n - 1), dtype=torch.float64))


def test_resize_displacement_keeps_the_same_physical_map(ndim, shape):
    """Resizing an affine field gives the same map in the new voxel units (exact for affine)."""
    m = data.random_affine(shape, 2).double()
    u = spatial.affine_to_displacement(m, shape)
    small = tuple((s + 1) // 2 for s in shape)
    # the resized field is the same affine map expressed in the new voxel units: S M S^-1
    scale = torch.tensor([(a - 1) / (b - 1) for a, b in zip(small, shape)], dtype=torch.float64)
    s_mat = torch.diag(torch.cat([scale, torch.ones(1, dtype=torch.float64)]))
    expected = spatial.affine_to_displacement(s_mat @ m @ torch.linalg.inv(s_mat), small)
    assert torch.allclose(spatial.resize_displacement(u, small), expected, atol=1e-9)


def test_nearest_warp_keeps_labels_integer_and_only_input_values(ndim, shape, displacement):
    g = torch.Generator().manual_seed(1)
    labels = torch.tensor([0, 3, 7, 42])[torch.randint(0, 4, (1, 1, *shape), generator=g)]
    out = spatial.warp(labels, displacement.float(), mode="nearest")
    assert out.dtype == torch.int64
    assert set(out.unique().tolist()) <= {0, 3, 7, 42}
    assert not torch.equal(out, labels)                                   # it did move
    out_aff = spatial.warp_affine(labels.int(), data.random_affine(shape, 0), mode="nearest")
    assert out_aff.dtype == torch.int32 and set(out_aff.unique().tolist()) <= {0, 3, 7, 42}


def test_transform_points_agrees_with_the_dense_field(ndim, shape, displacement):
    pts = torch.tensor([[[3.0, 4.0, 5.0][:ndim], [s - 4 for s in shape]]], dtype=torch.float64)
    out = spatial.transform_points(pts, displacement)
    for p, q in zip(pts[0], out[0]):
        idx = (0, slice(None), *[int(c) for c in p])
        assert torch.allclose(q, p + displacement[idx], atol=1e-10)


# ----------------------------------------------------------------------------- rotations

@pytest.mark.parametrize("k", [1, 3])
def test_rotation_matrix_is_orthonormal_with_determinant_one(k):
    angles = (torch.rand(5, k, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5) * 2 * math.pi
    r = spatial.rotation_matrix(angles)
    d = 2 if k == 1 else 3
    assert r.shape == (5, d, d)
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(d, dtype=torch.float64).expand(5, d, d), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(5, dtype=torch.float64), atol=1e-12)


def test_rotation_matrix_2d_turns_axis_0_towards_axis_1():
    r = spatial.rotation_matrix(torch.tensor([[math.pi / 2]], dtype=torch.float64))
    assert torch.allclose(r[0] @ torch.tensor([1.0, 0.0], dtype=torch.float64),
                          torch.tensor([0.0, 1.0], dtype=torch.float64), atol=1e-12)


def test_rotation_matrix_3d_is_r2_r1_r0_of_right_handed_rotations_about_each_axis():
    a, b, c = 0.3, -0.7, 1.1
    r = lambda *ang: spatial.rotation_matrix(torch.tensor([ang], dtype=torch.float64))[0]
    e = torch.eye(3, dtype=torch.float64)
    for axis in range(3):
        ang = [0.0, 0.0, 0.0]
        ang[axis] = math.pi / 2
        # the axis is fixed; axis+1 turns into axis+2 (cyclic, right-handed)
        assert torch.allclose(r(*ang) @ e[axis], e[axis], atol=1e-12)
        assert torch.allclose(r(*ang) @ e[(axis + 1) % 3], e[(axis + 2) % 3], atol=1e-12)
    assert torch.allclose(r(a, b, c), r(0, 0, c) @ r(0, b, 0) @ r(a, 0, 0), atol=1e-12)

def test_rigid_matrix_keeps_the_centre_fixed():
    centre = torch.tensor([5.5, 6.5, 7.5], dtype=torch.float64)
    m = spatial.rigid_matrix(torch.tensor([[0.3, -0.2, 0.5]], dtype=torch.float64),
                             torch.zeros(1, 3, dtype=torch.float64), centre)
    assert torch.allclose(m[0, :3, :3] @ centre + m[0, :3, 3], centre, atol=1e-12)
    assert torch.equal(m[0, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64))


def test_warp_returns_the_image_dtype_whatever_the_displacement_dtype(ndim, shape, image, displacement):
    assert spatial.warp(image, displacement.float()).dtype == torch.float64
    assert spatial.warp(image.float(), displacement).dtype == torch.float32
    assert torch.allclose(spatial.warp(image, displacement.float()), spatial.warp(image, displacement), atol=1e-5)

# ----------------------------------------------------------------------------- modules, blur

def test_warp_module_equals_the_function_and_has_extra_repr(displacement, image):
    mod = spatial.Warp(mode="linear", padding="zeros")
    assert torch.equal(mod(image, displacement), spatial.warp(image, displacement, "linear", "zeros"))
    assert "padding='zeros'" in repr(mod)


def test_gaussian_blur_preserves_constants_and_the_mean_of_an_impulse(ndim, shape):
    const = torch.full((1, 1, *shape), 2.5, dtype=torch.float64)
    assert torch.allclose(spatial.gaussian_blur(const, 1.3), const, atol=1e-12)
    imp = torch.zeros(1, 1, *shape, dtype=torch.float64)
    imp[(0, 0, *[s // 2 for s in shape])] = 1.0
    out = spatial.gaussian_blur(imp, 1.0)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-9)
    assert out.max() < 0.5 and spatial.gaussian_blur(imp, 0) is imp


# ----------------------------------------------------------------------------- gradcheck

def _off_grid_field(ndim, shape, seed):
    """Displacement with every sample point 0.2-0.8 voxel away from a grid position."""
    g = torch.Generator().manual_seed(seed)
    frac = 0.2 + 0.6 * torch.rand(1, ndim, *shape, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(1, ndim, *shape, generator=g) > 0.5, 1.0, -1.0).double()
    return frac * sign


@pytest.mark.parametrize("small", [(5, 6), (4, 5, 3)], ids=["2d", "3d"])
def test_gradcheck_warp_linear_wrt_image_and_displacement(small):
    ndim = len(small)
    img = torch.rand(1, 2, *small, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    u = _off_grid_field(ndim, small, 1)
    img.requires_grad_(True)
    u.requires_grad_(True)
    assert gradcheck(lambda i, d: spatial.warp(i, d, "linear", "border"), (img, u))
    assert gradcheck(lambda i, d: spatial.warp(i, d, "linear", "zeros"), (img, u))


@pytest.mark.parametrize("small", [(6, 7), (5, 4, 6)], ids=["2d", "3d"])
def test_gradcheck_integrate_velocity(small):
    v = (0.8 * smooth_velocity(small, 0, magnitude=1.0, spacing=3) + 0.3).requires_grad_(True)
    assert gradcheck(lambda x: spatial.integrate_velocity(x, steps=3), (v,))


@pytest.mark.parametrize("small", [(5, 6), (4, 5, 3)], ids=["2d", "3d"])
def test_gradcheck_jacobian_determinant(small):
    u = torch.randn(1, len(small), *small, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    assert gradcheck(spatial.jacobian_determinant, (u,))


@pytest.mark.parametrize("small", [(7, 6), (5, 4, 6)], ids=["2d", "3d"])
def test_gradcheck_gaussian_blur(small):
    img = torch.rand(2, 1, *small, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    assert gradcheck(lambda x: spatial.gaussian_blur(x, 0.8), (img,))
