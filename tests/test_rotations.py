"""Rotation representations and the geodesic distance (``course_lib.rotations``, lesson 07).

Properties: round trips between every pair of representations (matrix, Euler, axis-angle,
quaternion) on random rotations in float64; the matrices are rotations and agree with
``spatial.rotation_matrix``; the geodesic distance equals the known rotation angle, is symmetric,
and has a finite gradient at, and near, 0 and π; bad input is refused with a clear message.
"""

import math

import pytest
import torch

from course_lib import rotations as rot, spatial

TOL = 1e-6
N = 500
F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def rotvecs(n=N, seed=0, max_angle=math.pi):
    return rot.random_rotation_vectors(n, max_angle, generator=gen(seed))


def matrices(n=N, seed=0):
    return rot.quaternion_to_matrix(rot.random_quaternions(n, generator=gen(seed)))


def euler_angles(n=N, seed=0):
    """Euler angles inside the canonical range (a0, a2 in (-π, π), a1 in (-π/2, π/2))."""
    u = torch.rand(n, 3, generator=gen(seed), dtype=F64) * 2 - 1
    return u * torch.tensor([math.pi, math.pi / 2, math.pi], dtype=F64) * 0.999


def same_quaternion(q1, q2):
    """Largest difference between q1 and q2 up to the sign (q and -q are the same rotation)."""
    return torch.minimum((q1 - q2).abs().amax(-1), (q1 + q2).abs().amax(-1)).max().item()


# ------------------------------------------------------------------------------------ matrices

def test_outputs_are_rotations():
    for r in (matrices(), rot.axis_angle_to_matrix(rotvecs()), rot.euler_to_matrix(euler_angles())):
        eye = torch.eye(3, dtype=F64)
        assert (r.transpose(1, 2) @ r - eye).abs().max() < 1e-12
        assert (torch.linalg.det(r) - 1).abs().max() < 1e-12


def test_axis_vectors_match_course_euler_convention():
    """Rotation vector a·e_i is the course's rotation R_i(a) about spatial axis i."""
    a = torch.linspace(-3, 3, 13, dtype=F64)
    for i in range(3):
        v = torch.zeros(13, 3, dtype=F64)
        v[:, i] = a
        assert torch.allclose(rot.axis_angle_to_matrix(v), spatial.rotation_matrix(v), atol=1e-14)


def test_euler_order_is_r2_r1_r0():
    ang = euler_angles(20, seed=3)
    parts = []
    for i in range(3):
        v = torch.zeros_like(ang)
        v[:, i] = ang[:, i]
        parts.append(rot.axis_angle_to_matrix(v))
    assert torch.allclose(rot.euler_to_matrix(ang), parts[2] @ parts[1] @ parts[0], atol=1e-14)


def test_quaternion_matches_rodrigues():
    v = rotvecs(100, seed=4)
    theta = v.norm(dim=-1, keepdim=True)
    e = v / theta
    k = torch.zeros(100, 3, 3, dtype=F64)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -e[:, 2], e[:, 1], -e[:, 0]
    k = k - k.transpose(1, 2)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    rodrigues = torch.eye(3, dtype=F64) + s * k + (1 - c) * k @ k
    assert torch.allclose(rot.axis_angle_to_matrix(v), rodrigues, atol=1e-13)


# ---------------------------------------------------------------------------------- round trips

def test_round_trip_matrix_euler_matrix():
    r = matrices(seed=1)
    assert (rot.euler_to_matrix(rot.matrix_to_euler(r)) - r).abs().max() < TOL


def test_round_trip_euler_matrix_euler():
    a = euler_angles(seed=2)
    assert (rot.matrix_to_euler(rot.euler_to_matrix(a)) - a).abs().max() < TOL


def test_euler_gimbal_lock_still_reconstructs_the_matrix():
    a = euler_angles(50, seed=5)
    a[:25, 1], a[25:, 1] = math.pi / 2, -math.pi / 2
    r = rot.euler_to_matrix(a)
    assert (rot.euler_to_matrix(rot.matrix_to_euler(r)) - r).abs().max() < TOL


def test_euler_2d_round_trip():
    a = (torch.rand(50, 1, generator=gen(6), dtype=F64) * 2 - 1) * math.pi * 0.999
    r = rot.euler_to_matrix(a)
    assert r.shape == (50, 2, 2)
    assert (rot.matrix_to_euler(r) - a).abs().max() < TOL


def test_round_trip_matrix_axis_angle_matrix():
    r = matrices(seed=7)
    assert (rot.axis_angle_to_matrix(rot.matrix_to_axis_angle(r)) - r).abs().max() < TOL


def test_round_trip_axis_angle_matrix_axis_angle():
    v = rotvecs(seed=8, max_angle=math.pi * 0.999)     # angle < π: the vector is unique
    assert (rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(v)) - v).abs().max() < TOL


def test_round_trip_matrix_quaternion_matrix():
    r = matrices(seed=9)
    assert (rot.quaternion_to_matrix(rot.matrix_to_quaternion(r)) - r).abs().max() < TOL


def test_round_trip_quaternion_matrix_quaternion():
    q = rot.random_quaternions(N, generator=gen(10))
    q2 = rot.matrix_to_quaternion(rot.quaternion_to_matrix(q))
    assert (q2[:, 0] >= 0).all()
    assert same_quaternion(q, q2) < TOL


def test_round_trip_quaternion_axis_angle_both_ways():
    q = rot.random_quaternions(N, generator=gen(11))
    assert same_quaternion(rot.axis_angle_to_quaternion(rot.quaternion_to_axis_angle(q)), q) < TOL
    v = rotvecs(seed=12, max_angle=math.pi * 0.999)
    assert (rot.quaternion_to_axis_angle(rot.axis_angle_to_quaternion(v)) - v).abs().max() < TOL


def test_round_trip_euler_quaternion_and_euler_axis_angle():
    a = euler_angles(seed=13)
    q = rot.matrix_to_quaternion(rot.euler_to_matrix(a))
    assert (rot.matrix_to_euler(rot.quaternion_to_matrix(q)) - a).abs().max() < TOL
    v = rot.matrix_to_axis_angle(rot.euler_to_matrix(a))
    assert (rot.matrix_to_euler(rot.axis_angle_to_matrix(v)) - a).abs().max() < TOL


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-5, math.pi - 1e-7, math.pi])
def test_round_trips_at_the_ends(angle):
    """Angles 0 and π (w = 0) are where naive formulas divide by zero."""
    e = torch.nn.functional.normalize(torch.randn(20, 3, generator=gen(14), dtype=F64), dim=-1)
    v = e * angle
    r = rot.axis_angle_to_matrix(v)
    r2 = rot.axis_angle_to_matrix(rot.matrix_to_axis_angle(r))
    assert torch.isfinite(r2).all() and (r2 - r).abs().max() < TOL
    assert (rot.quaternion_to_matrix(rot.matrix_to_quaternion(r)) - r).abs().max() < TOL
    assert (rot.matrix_to_axis_angle(r).norm(dim=-1) - angle).abs().max() < TOL


def test_quaternion_sign_and_scale_do_not_matter():
    q = rot.random_quaternions(30, generator=gen(15))
    r = rot.quaternion_to_matrix(q)
    assert torch.allclose(rot.quaternion_to_matrix(-3.0 * q), r, atol=1e-14)


# ------------------------------------------------------------------------------ geodesic distance

def test_geodesic_distance_equals_the_rotation_angle():
    v = rotvecs(seed=16)
    r1 = matrices(seed=17)
    r2 = r1 @ rot.axis_angle_to_matrix(v)                 # relative rotation R1ᵀR2 = exp(v)
    d = rot.geodesic_distance(r1, r2)
    assert d.shape == (N,)
    assert (d - v.norm(dim=-1)).abs().max() < 1e-12
    # left multiplication too (bi-invariance)
    assert (rot.geodesic_distance(r1, rot.axis_angle_to_matrix(v) @ r1) - v.norm(dim=-1)).abs().max() < 1e-12


def test_geodesic_distance_symmetric_and_zero_on_itself():
    r1, r2 = matrices(seed=18), matrices(seed=19)
    assert torch.allclose(rot.geodesic_distance(r1, r2), rot.geodesic_distance(r2, r1), atol=1e-14)
    assert rot.geodesic_distance(r1, r1).abs().max() < 1e-7
    d = rot.geodesic_distance(r1, r2)
    assert (d >= 0).all() and (d <= math.pi).all()


def test_geodesic_distance_exact_near_zero_and_pi():
    e = torch.nn.functional.normalize(torch.randn(10, 3, generator=gen(20), dtype=F64), dim=-1)
    for angle in (1e-8, 1e-6, math.pi - 1e-6, math.pi - 1e-8):
        d = rot.geodesic_distance(torch.eye(3, dtype=F64).expand(10, 3, 3), rot.axis_angle_to_matrix(e * angle))
        assert (d - angle).abs().max() < 1e-10, angle


def test_geodesic_distance_2d():
    a, b = (torch.rand(2, 40, 1, generator=gen(21), dtype=F64) * 2 - 1) * math.pi
    d = rot.geodesic_distance(rot.euler_to_matrix(a), rot.euler_to_matrix(b))
    want = torch.remainder(b - a + math.pi, 2 * math.pi) - math.pi
    assert (d - want.abs()[:, 0]).abs().max() < 1e-12


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-6, 0.5, math.pi - 1e-6, math.pi - 1e-12, math.pi])
def test_geodesic_gradient_finite_at_and_near_0_and_pi(angle):
    e = torch.nn.functional.normalize(torch.randn(8, 3, generator=gen(22), dtype=F64), dim=-1)
    target = rot.axis_angle_to_matrix(e * angle)
    # gradient w.r.t. the matrix entries and w.r.t. Euler angles (what a network predicts)
    pred = torch.eye(3, dtype=F64).repeat(8, 1, 1).requires_grad_()
    rot.GeodesicLoss()(pred, target).backward()
    assert torch.isfinite(pred.grad).all()
    ang = torch.zeros(8, 3, dtype=F64, requires_grad=True)
    rot.geodesic_distance(rot.euler_to_matrix(ang), target).sum().backward()
    assert torch.isfinite(ang.grad).all()
    v = (e * angle).requires_grad_()
    rot.geodesic_distance(rot.axis_angle_to_matrix(v), torch.eye(3, dtype=F64).expand(8, 3, 3)).sum().backward()
    assert torch.isfinite(v.grad).all()


def test_geodesic_gradcheck():
    a = (torch.rand(4, 3, generator=gen(23), dtype=F64) * 2 - 1).requires_grad_()
    b = rot.euler_to_matrix(torch.rand(4, 3, generator=gen(24), dtype=F64))
    assert torch.autograd.gradcheck(lambda x: rot.geodesic_distance(rot.euler_to_matrix(x), b), (a,))
    v = (rotvecs(4, seed=25, max_angle=2.5)).requires_grad_()
    assert torch.autograd.gradcheck(rot.axis_angle_to_matrix, (v,))


def test_geodesic_gradient_points_towards_the_target():
    """One small gradient step on Euler angles lowers the distance."""
    target = matrices(16, seed=26)
    ang = torch.zeros(16, 3, dtype=F64, requires_grad=True)
    d0 = rot.geodesic_distance(rot.euler_to_matrix(ang), target)
    d0.sum().backward()
    with torch.no_grad():
        d1 = rot.geodesic_distance(rot.euler_to_matrix(ang - 1e-3 * ang.grad), target)
    assert (d1 <= d0.detach() + 1e-12).all()


def test_geodesic_loss_reductions_and_zero_on_identical():
    r1, r2 = matrices(12, seed=27), matrices(12, seed=28)
    d = rot.geodesic_distance(r1, r2)
    assert torch.allclose(rot.GeodesicLoss()(r1, r2), d.mean())
    assert torch.allclose(rot.GeodesicLoss("sum")(r1, r2), d.sum())
    assert torch.equal(rot.GeodesicLoss("none")(r1, r2), d)
    assert rot.GeodesicLoss()(r1, r1).item() < 1e-7
    assert rot.GeodesicLoss()(r1.float(), r1.float()).item() < 1e-3
    assert "reduction='sum'" in repr(rot.GeodesicLoss("sum"))


def test_float32_works():
    v = rotvecs(50, seed=29).float()
    d = rot.geodesic_distance(torch.eye(3).expand(50, 3, 3), rot.axis_angle_to_matrix(v))
    assert d.dtype == torch.float32 and (d - v.norm(dim=-1)).abs().max() < 1e-5


# ------------------------------------------------------------------------------------ bad input

R3 = torch.eye(3)[None].repeat(2, 1, 1)
NAN_R = R3.clone()
NAN_R[1, 0, 0] = float("nan")


def case(id_, fn, exc, match):
    return pytest.param(fn, exc, match, id=id_)


BAD = [
    case("geo-not-3x3", lambda: rot.geodesic_distance(torch.eye(4)[None], torch.eye(4)[None]), ValueError,
         r"geodesic_distance: r1 must be \(N, 2, 2\) or \(N, 3, 3\).*got shape \(1, 4, 4\)"),
    case("geo-unbatched", lambda: rot.geodesic_distance(torch.eye(3), torch.eye(3)), ValueError,
         r"geodesic_distance: r1 must have 3 dimensions, got 2 \(shape \(3, 3\)\)"),
    case("geo-not-square", lambda: rot.geodesic_distance(torch.zeros(2, 3, 4), R3), ValueError,
         r"geodesic_distance: r1 must be .*got shape \(2, 3, 4\)"),
    case("geo-batch", lambda: rot.geodesic_distance(R3, R3[:1]), ValueError,
         r"geodesic_distance: r1 and r2 must have the same shape \(N, 3, 3\), got \(2, 3, 3\) and \(1, 3, 3\)"),
    case("geo-2d-vs-3d", lambda: rot.geodesic_distance(torch.eye(2)[None], torch.eye(3)[None]), ValueError,
         r"geodesic_distance: r1 and r2 must have the same shape"),
    case("geo-nan", lambda: rot.geodesic_distance(R3, NAN_R), ValueError, r"geodesic_distance: r2 contains NaN"),
    case("geo-int", lambda: rot.geodesic_distance(R3.long(), R3), TypeError,
         r"geodesic_distance: r1 must be a floating-point tensor"),
    case("geo-numpy", lambda: rot.geodesic_distance(R3.numpy(), R3), TypeError,
         r"geodesic_distance: r1 must be a torch.Tensor, got ndarray"),
    case("loss-batch", lambda: rot.GeodesicLoss()(R3, R3[:1]), ValueError, r"GeodesicLoss.forward: input and target"),
    case("loss-reduction", lambda: rot.GeodesicLoss("max"), ValueError, r"GeodesicLoss: reduction must be one of"),
    case("euler-shape", lambda: rot.euler_to_matrix(torch.zeros(2, 2)), ValueError,
         r"euler_to_matrix: angles must be \(N, 1\) or \(N, 3\).*got shape \(2, 2\)"),
    case("euler-unbatched", lambda: rot.euler_to_matrix(torch.zeros(3)), ValueError,
         r"euler_to_matrix: angles must have 2 dimensions, got 1"),
    case("euler-nan", lambda: rot.euler_to_matrix(torch.tensor([[0.0, float("nan"), 0.0]])), ValueError,
         r"euler_to_matrix: angles contains NaN"),
    case("matrix-to-euler-4x4", lambda: rot.matrix_to_euler(torch.eye(4)[None]), ValueError,
         r"matrix_to_euler: matrix must be \(N, 2, 2\) or \(N, 3, 3\).*got shape \(1, 4, 4\)"),
    case("aa-shape", lambda: rot.axis_angle_to_matrix(torch.zeros(2, 4)), ValueError,
         r"axis_angle_to_matrix: rotvec must be \(N, 3\).*got shape \(2, 4\)"),
    case("aa-int", lambda: rot.axis_angle_to_matrix(torch.zeros(2, 3, dtype=torch.int64)), TypeError,
         r"axis_angle_to_matrix: rotvec must be a floating-point tensor"),
    case("matrix-to-aa-2x2", lambda: rot.matrix_to_axis_angle(torch.eye(2)[None]), ValueError,
         r"matrix_to_axis_angle: matrix must be \(N, 3, 3\).*got shape \(1, 2, 2\)"),
    case("quat-shape", lambda: rot.quaternion_to_matrix(torch.zeros(2, 3)), ValueError,
         r"quaternion_to_matrix: quaternion must be \(N, 4\).*got shape \(2, 3\)"),
    case("quat-zero", lambda: rot.quaternion_to_matrix(torch.zeros(2, 4)), ValueError,
         r"quaternion_to_matrix: quaternion must be non-zero"),
    case("quat-to-aa-zero", lambda: rot.quaternion_to_axis_angle(torch.zeros(1, 4)), ValueError,
         r"quaternion_to_axis_angle: quaternion must be non-zero"),
    case("matrix-to-quat-nan", lambda: rot.matrix_to_quaternion(NAN_R), ValueError,
         r"matrix_to_quaternion: matrix contains NaN"),
    case("random-n", lambda: rot.random_rotation_vectors(0), ValueError, r"random_rotation_vectors: n must be"),
    case("random-angles", lambda: rot.random_rotation_vectors(3, max_angle=1.0, min_angle=2.0), ValueError,
         r"random_rotation_vectors: need 0 <= min_angle <= max_angle"),
    case("random-quat-n", lambda: rot.random_quaternions(-1), ValueError, r"random_quaternions: n must be"),
]


@pytest.mark.parametrize("fn, exc, match", BAD)
def test_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()
