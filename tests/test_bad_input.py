"""Bad input gets a ValueError/TypeError whose message names the function and the argument
(house style: never a bare ``assert``, never a silent broadcast)."""

import pytest
import torch

from course_lib import config, data, metrics, regularizers as reg, similarity as sim, spatial

H, W = 6, 7
IMG = torch.rand(1, 1, H, W)
IMG3 = torch.rand(1, 1, 4, 5, 6)
U = torch.zeros(1, 2, H, W)
U3 = torch.zeros(1, 3, 4, 5, 6)
LAB = torch.ones(1, 1, H, W, dtype=torch.int64)
NAN_IMG = IMG.clone().index_put_((torch.tensor(0), torch.tensor(0), torch.tensor(2), torch.tensor(3)),
                                 torch.tensor(float("nan")))
NAN_U = U.clone().index_put_((torch.tensor(0), torch.tensor(1), torch.tensor(1), torch.tensor(1)),
                             torch.tensor(float("nan")))
EYE3 = torch.eye(3)[None]


def case(id_, fn, exc, match):
    return pytest.param(fn, exc, match, id=id_)


SPATIAL = [
    case("warp-image-ndim", lambda: spatial.warp(IMG[0], U), ValueError, r"warp: image must have 4 or 5 dim"),
    case("warp-disp-ndim", lambda: spatial.warp(IMG, U[0]), ValueError, r"warp: displacement must have 4 or 5"),
    case("warp-disp-channels", lambda: spatial.warp(IMG, U[:, :1]), ValueError, r"warp: displacement must have shape \(N, 2"),
    case("warp-2d-field-3d-image", lambda: spatial.warp(IMG3, U), ValueError, r"warp: displacement must have 3 channels"),
    case("warp-spatial-mismatch", lambda: spatial.warp(IMG, torch.zeros(1, 2, H, W + 1)), ValueError,
         r"warp: image and displacement must have the same spatial shape"),
    case("warp-batch-mismatch", lambda: spatial.warp(IMG.expand(2, 1, H, W), U.expand(3, 2, H, W)), ValueError,
         r"warp: image and displacement must have the same batch size"),
    case("warp-int-image-linear", lambda: spatial.warp(LAB, U), TypeError, r"warp: integer image .* needs mode='nearest'"),
    case("warp-int-displacement", lambda: spatial.warp(IMG, U.long()), TypeError, r"warp: displacement must be a floating"),
    case("warp-nan-image", lambda: spatial.warp(NAN_IMG, U), ValueError, r"warp: image contains NaN"),
    case("warp-nan-displacement", lambda: spatial.warp(IMG, NAN_U), ValueError, r"warp: displacement contains NaN"),
    case("warp-mode", lambda: spatial.warp(IMG, U, mode="cubic"), ValueError, r"warp: mode must be"),
    case("warp-padding", lambda: spatial.warp(IMG, U, padding="reflect"), ValueError, r"warp: padding must be"),
    case("warp-not-a-tensor", lambda: spatial.warp(IMG.numpy(), U), TypeError, r"warp: image must be a torch.Tensor"),
    case("identity_grid-shape", lambda: spatial.identity_grid((5,)), ValueError, r"identity_grid: shape"),
    case("to_normalized_grid-channels", lambda: spatial.to_normalized_grid(torch.zeros(1, 3, H, W)), ValueError,
         r"to_normalized_grid: coords must have shape"),
    case("to_normalized_grid-sizes", lambda: spatial.to_normalized_grid(U, sizes=(H,)), ValueError,
         r"to_normalized_grid: sizes must have 2"),
    case("affine_matrix-width", lambda: spatial.affine_matrix(torch.zeros(1, 5)), ValueError, r"affine_matrix: params"),
    case("affine_matrix-ndim", lambda: spatial.affine_matrix(torch.zeros(6)), ValueError, r"affine_matrix: params must have 2"),
    case("affine_matrix-int", lambda: spatial.affine_matrix(torch.zeros(1, 6, dtype=torch.int64)), TypeError,
         r"affine_matrix: params must be a floating"),
    case("rotation_matrix-width", lambda: spatial.rotation_matrix(torch.zeros(1, 2)), ValueError, r"rotation_matrix: angles"),
    case("rigid_matrix-angles", lambda: spatial.rigid_matrix(torch.zeros(1, 2), torch.zeros(1, 2), [0, 0]), ValueError,
         r"rigid_matrix: angles"),
    case("rigid_matrix-translation", lambda: spatial.rigid_matrix(torch.zeros(1, 1), torch.zeros(1, 3), [0, 0]), ValueError,
         r"rigid_matrix: translation must be \(1, 2\)"),
    case("rigid_matrix-center", lambda: spatial.rigid_matrix(torch.zeros(1, 1), torch.zeros(1, 2), [0, 0, 0]), ValueError,
         r"rigid_matrix: center must have 2"),
    case("warp_affine-matrix-size", lambda: spatial.warp_affine(IMG3, EYE3), ValueError, r"warp_affine: matrix must be \(N, 4, 4\)"),
    case("warp_affine-matrix-nan", lambda: spatial.warp_affine(IMG, EYE3 * float("nan")), ValueError,
         r"warp_affine: matrix contains NaN"),
    case("warp_affine-image-ndim", lambda: spatial.warp_affine(IMG[0], EYE3), ValueError, r"warp_affine: image must have 4 or 5"),
    case("affine_to_displacement-ndim", lambda: spatial.affine_to_displacement(EYE3, (4, 5, 6)), ValueError,
         r"affine_to_displacement: matrix must be \(N, 4, 4\)"),
    case("compose-mismatch", lambda: spatial.compose(U, torch.zeros(1, 2, H + 1, W)), ValueError,
         r"compose: first and second must have the same spatial shape"),
    case("compose-nan", lambda: spatial.compose(U, NAN_U), ValueError, r"compose: second contains NaN"),
    case("integrate_velocity-steps", lambda: spatial.integrate_velocity(U, steps=-1), ValueError,
         r"integrate_velocity: steps must be a non-negative int"),
    case("integrate_velocity-channels", lambda: spatial.integrate_velocity(torch.zeros(1, 3, H, W)), ValueError,
         r"integrate_velocity: velocity must have shape"),
    case("jacobian_determinant-size", lambda: spatial.jacobian_determinant(torch.zeros(1, 2, 1, W)), ValueError,
         r"jacobian_determinant: every spatial size must be >= 2"),
    case("jacobian_determinant-nan", lambda: spatial.jacobian_determinant(NAN_U), ValueError,
         r"jacobian_determinant: displacement contains NaN"),
    case("resize_displacement-size", lambda: spatial.resize_displacement(U, (3,)), ValueError,
         r"resize_displacement: size must have 2"),
    case("resize_image-size", lambda: spatial.resize_image(IMG, (3, 4, 5)), ValueError, r"resize_image: size must have 2"),
    case("gaussian_blur-sigma", lambda: spatial.gaussian_blur(IMG, -1.0), ValueError, r"gaussian_blur: sigma must be >= 0"),
    case("gaussian_blur-int", lambda: spatial.gaussian_blur(LAB, 1.0), TypeError, r"gaussian_blur: image must be a floating"),
    case("transform_points-shape", lambda: spatial.transform_points(torch.zeros(1, 4, 3), U), ValueError,
         r"transform_points: points must be \(N, P, 2\)"),
]

SIM_FNS = [sim.ssd, sim.ncc, sim.lncc, sim.mutual_information, sim.nmi]
SIMILARITY = []
for f in SIM_FNS:
    n = f.__name__
    SIMILARITY += [
        case(f"{n}-ndim", lambda f=f: f(IMG[0], IMG[0]), ValueError, rf"{n}: a must have 4 or 5 dim"),
        case(f"{n}-mismatch", lambda f=f: f(IMG, torch.rand(1, 1, H, W + 1)), ValueError, rf"{n}: a and b must have the same shape"),
        case(f"{n}-batch-broadcast", lambda f=f: f(IMG, IMG.expand(2, 1, H, W)), ValueError, rf"{n}: a and b must have the same shape"),
        case(f"{n}-int", lambda f=f: f(IMG, LAB), TypeError, rf"{n}: b must be a floating"),
        case(f"{n}-nan", lambda f=f: f(NAN_IMG, IMG), ValueError, rf"{n}: a contains NaN"),
    ]
SIMILARITY += [
    case("lncc-channels", lambda: sim.lncc(IMG.expand(1, 2, H, W), IMG.expand(1, 2, H, W)), ValueError, r"lncc: images must have 1 channel"),
    case("lncc-window", lambda: sim.lncc(IMG, IMG, window=4), ValueError, r"lncc: window must be a positive odd int"),
    case("mutual_information-bins", lambda: sim.mutual_information(IMG, IMG, bins=1), ValueError, r"mutual_information: bins"),
    case("nmi-sigma", lambda: sim.nmi(IMG, IMG, sigma=-0.1), ValueError, r"nmi: sigma must be a positive"),
    case("as_loss-not-a-similarity", lambda: sim.as_loss(torch.nn.MSELoss()), TypeError, r"as_loss: similarity must be"),
]

REGULARIZERS = []
for f in (reg.diffusion, reg.bending_energy):
    n = f.__name__
    REGULARIZERS += [
        case(f"{n}-ndim", lambda f=f: f(U[0]), ValueError, rf"{n}: displacement must have 4 or 5"),
        case(f"{n}-channels", lambda f=f: f(torch.zeros(1, 1, H, W)), ValueError, rf"{n}: displacement must have shape \(N, 2"),
        case(f"{n}-int", lambda f=f: f(U.long()), TypeError, rf"{n}: displacement must be a floating"),
        case(f"{n}-nan", lambda f=f: f(NAN_U), ValueError, rf"{n}: displacement contains NaN"),
    ]
REGULARIZERS.append(case("bending_energy-size", lambda: reg.bending_energy(torch.zeros(1, 2, 2, W)), ValueError,
                         r"bending_energy: every spatial size must be >= 3"))

METRICS = []
for f in (metrics.dice, metrics.hd95):
    n = f.__name__
    METRICS += [
        case(f"{n}-float-labels", lambda f=f: f(LAB.float(), LAB), TypeError, rf"{n}: pred must be an integer label map"),
        case(f"{n}-bool-labels", lambda f=f: f(LAB, LAB.bool()), TypeError, rf"{n}: target must be an integer label map"),
        case(f"{n}-ndim", lambda f=f: f(LAB[0], LAB[0]), ValueError, rf"{n}: pred must have 4 or 5 dim"),
        case(f"{n}-channels", lambda f=f: f(LAB.expand(1, 2, H, W), LAB.expand(1, 2, H, W)), ValueError,
             rf"{n}: pred must be \(N, 1, \*spatial\)"),
        case(f"{n}-mismatch", lambda f=f: f(LAB, LAB.expand(2, 1, H, W)), ValueError, rf"{n}: pred and target must have the same shape"),
        case(f"{n}-empty", lambda f=f: f(torch.zeros_like(LAB), torch.zeros_like(LAB)), ValueError,
             rf"{n}: target has no foreground label"),
        case(f"{n}-empty-list", lambda f=f: f(LAB, LAB, labels=[]), ValueError, rf"{n}: labels must name at least one"),
    ]
METRICS += [
    case("dice-absent-labels", lambda: metrics.dice(LAB, LAB, labels=[5, 6]), ValueError, r"dice: none of labels \[5, 6\]"),
    case("tre-mismatch", lambda: metrics.tre(torch.zeros(4, 3), torch.zeros(5, 3)), ValueError,
         r"tre: points_a and points_b must have the same shape"),
    case("tre-dim", lambda: metrics.tre(torch.zeros(4, 4), torch.zeros(4, 4)), ValueError, r"tre: points must be \(\.\.\., P, 2 or 3\)"),
    case("tre-int", lambda: metrics.tre(torch.zeros(4, 3, dtype=torch.int64), torch.zeros(4, 3)), TypeError,
         r"tre: points_a must be a floating"),
    case("tre-nan", lambda: metrics.tre(torch.zeros(4, 3), torch.full((4, 3), float("nan"))), ValueError, r"tre: points_b contains NaN"),
    case("folding_fraction-nan", lambda: metrics.folding_fraction(NAN_U), ValueError, r"folding_fraction: displacement contains NaN"),
    case("folding_fraction-mask", lambda: metrics.folding_fraction(U, mask=torch.ones(1, 1, H, W + 1)), ValueError,
         r"folding_fraction: mask must be \(N, 1, 6, 7\)"),
    case("sdlogj-channels", lambda: metrics.sdlogj(torch.zeros(1, 3, H, W)), ValueError, r"sdlogj: displacement must have shape"),
    case("sdlogj-mask-ndim", lambda: metrics.sdlogj(U, mask=torch.ones(H, W)), ValueError, r"sdlogj: mask must have 4 dim"),
]

DATA = [
    case("random_velocity-shape", lambda: data.random_velocity((5,)), ValueError, r"random_velocity: shape"),
    case("random_velocity-magnitude", lambda: data.random_velocity((5, 6), magnitude=-1.0), ValueError, r"random_velocity: need"),
    case("random_velocity-seed", lambda: data.random_velocity((5, 6), 1.5), TypeError, r"random_velocity: generator must be an int seed"),
    case("random_affine-shape", lambda: data.random_affine((5, 6, 7, 8)), ValueError, r"random_affine: shape"),
    case("synthesize_subject-seed", lambda: data.synthesize_subject("7", template=data.Anatomy(IMG, IMG, IMG, LAB)),
         TypeError, r"synthesize_subject: seed must be an int seed"),
    case("synthesize_contrast-channels", lambda: data.synthesize_contrast(IMG), ValueError, r"synthesize_contrast: tissues must be \(N, 3"),
    case("synthesize_contrast-kind", lambda: data.synthesize_contrast(IMG.expand(1, 3, H, W), "ct"), ValueError,
         r"synthesize_contrast: kind must be one of"),
    case("synthesize_contrast-nan", lambda: data.synthesize_contrast(NAN_IMG.expand(1, 3, H, W)), ValueError,
         r"synthesize_contrast: tissues contains NaN"),
    case("template_slices-axis", lambda: data.template_slices("oblique"), ValueError, r"template_slices: axis must be one of"),
    case("template_slices-index", lambda: data.template_slices("axial", index=500), ValueError, r"template_slices: index must be in"),
    case("template_volume-size", lambda: data.template_volume(size=(80, 96)), ValueError, r"template_volume: size must be \(D, H, W\)"),
    case("load_mni152-resolution", lambda: data.load_mni152(3), ValueError, r"load_mni152: resolution must be 1 or 2"),
    case("load_atlas-name", lambda: data.load_atlas("Brodmann"), ValueError, r"load_atlas: name must be one of"),
    case("PairDataset-split", lambda: data.PairDataset(2, "holdout", cache=False), ValueError, r"PairDataset: split must be one of"),
    case("PairDataset-n", lambda: data.PairDataset(0, cache=False), ValueError, r"PairDataset: n must be an int"),
    case("PairDataset-contrast", lambda: data.PairDataset(2, contrast="ct", cache=False), ValueError, r"PairDataset: contrast must be"),
    case("profile-name", lambda: config.profile("slow"), ValueError, r"profile: name must be one of"),
    case("seed_everything-float", lambda: config.seed_everything(0.5), TypeError, r"seed_everything: seed must be an int"),
]


@pytest.mark.parametrize("fn, exc, match", SPATIAL + SIMILARITY + REGULARIZERS + METRICS + DATA)
def test_bad_input_raises_a_clear_error_naming_function_and_argument(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def test_shape_errors_show_the_expected_and_the_actual_shape():
    with pytest.raises(ValueError) as info:
        spatial.warp(IMG, torch.zeros(1, 2, H, W + 1))
    assert "(6, 7)" in str(info.value) and "(6, 8)" in str(info.value)
    with pytest.raises(ValueError) as info:
        sim.ncc(IMG, torch.rand(1, 1, H, W + 1))
    assert "(1, 1, 6, 7)" in str(info.value) and "(1, 1, 6, 8)" in str(info.value)
    with pytest.raises(TypeError) as info:
        metrics.dice(LAB.float(), LAB)
    assert "torch.float32" in str(info.value)


def test_good_input_of_the_same_kinds_passes():
    """The cases above fail because of the one thing that is wrong, not because of the fixtures."""
    assert spatial.warp(IMG, U).shape == IMG.shape
    assert spatial.warp(IMG3, U3).shape == IMG3.shape
    assert spatial.warp(LAB, U, mode="nearest").dtype == torch.int64
    for f in SIM_FNS:
        assert torch.isfinite(f(IMG, IMG))
    assert reg.diffusion(U).item() == 0.0 and reg.bending_energy(U).item() == 0.0
    assert metrics.dice(LAB, LAB).item() == 1.0 and metrics.hd95(LAB, LAB).item() == 0.0
    assert metrics.folding_fraction(U, mask=torch.ones(1, 1, H, W)).item() == 0.0

