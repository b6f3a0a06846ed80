"""Properties of the similarity measures (lesson 02): SSD, NCC, LNCC, MI, NMI, their module twins,
``higher_is_better`` / :func:`as_loss`, and gradcheck in float64."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from course_lib import similarity as sim
from conftest import SHAPE_2D, SHAPE_3D, smooth_image

LEVELS = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64)


def _level_index(shape=SHAPE_2D, seed=0) -> torch.Tensor:
    """Piecewise-constant map of level indices 0..4 in 4×4 blocks ``(1, 1, *shape)``."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 5, (1, 1, *[s // 4 for s in shape]), generator=g)
    idx = F.interpolate(coarse.double(), size=shape, mode="nearest").long()
    assert set(idx.unique().tolist()) == {0, 1, 2, 3, 4}
    return idx


def _shuffled(a: torch.Tensor, seed=0) -> torch.Tensor:
    perm = torch.randperm(a.numel(), generator=torch.Generator().manual_seed(seed))
    return a.flatten()[perm].view_as(a)


@pytest.fixture(params=[SHAPE_2D, SHAPE_3D], ids=["2d", "3d"])
def textured(request) -> torch.Tensor:
    return smooth_image(request.param, seed=5, sigma=1.0, dtype=torch.float64)


# ----------------------------------------------------------------------------- SSD, NCC, LNCC

def test_ssd_of_an_image_with_itself_is_zero(textured):
    assert sim.ssd(textured, textured).item() == 0.0
    assert sim.ssd(textured, textured + 0.5).item() == pytest.approx(0.25)


def test_ncc_is_one_for_a_positive_affine_intensity_map(textured):
    assert sim.ncc(textured, 2 * textured + 3).item() == pytest.approx(1.0, abs=1e-5)


def test_ncc_is_minus_one_for_a_negated_image(textured):
    assert sim.ncc(textured, -textured).item() == pytest.approx(-1.0, abs=1e-5)


def test_ncc_is_near_zero_for_independent_noise():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 1, 1, 64, 64, generator=g, dtype=torch.float64)
    assert abs(sim.ncc(a, b).item()) < 0.05


def test_ncc_averages_per_image_over_the_batch(textured):
    a = torch.cat([textured, textured])
    b = torch.cat([2 * textured, -textured])
    assert sim.ncc(a, b).item() == pytest.approx(0.0, abs=1e-6)


def test_lncc_of_a_textured_image_with_itself_is_one(textured):
    # eps = 1e-5 is added to var(a) var(b): on intensities of a few tens the local variances
    # dwarf it and LNCC(a, a) = 1; on [0, 1] intensities it stays close to (but below) 1.
    a = 50 * textured
    assert sim.lncc(a, a, window=5).item() == pytest.approx(1.0, abs=1e-3)
    assert sim.lncc(a, 2 * a + 1, window=5).item() == pytest.approx(1.0, abs=1e-3)
    assert sim.lncc(textured, textured, window=5).item() > 0.9


def test_lncc_drops_for_a_shuffled_image(textured):
    assert sim.lncc(textured, _shuffled(textured), window=5).item() < 0.3


# ----------------------------------------------------------------------------- MI, NMI

def test_mutual_information_is_invariant_to_an_invertible_intensity_remap():
    idx = _level_index()
    a = LEVELS[idx]
    # permuted, unevenly spaced distinct values (min gap 6/28 of the range ≈ 6.6 bins of 32)
    b = torch.tensor([10.0, -3.0, 25.0, 4.0, 17.0], dtype=torch.float64)[idx]
    mi_aa = sim.mutual_information(a, a).item()
    mi_ab = sim.mutual_information(a, b).item()
    assert mi_ab == pytest.approx(mi_aa, rel=0.02)
    # and both equal the entropy of the level distribution (the Parzen smear cancels)
    p = torch.bincount(idx.flatten()).double() / idx.numel()
    assert mi_aa == pytest.approx(-(p * p.log()).sum().item(), rel=0.02)


def test_mutual_information_of_an_image_with_itself_beats_a_shuffled_copy(textured):
    mi_self = sim.mutual_information(textured, textured).item()
    mi_shuffled = sim.mutual_information(textured, _shuffled(textured)).item()
    assert mi_self > mi_shuffled + 0.5
    assert mi_shuffled >= -1e-6


def test_mutual_information_is_symmetric(textured):
    b = textured ** 2 + 0.1 * _shuffled(textured)
    assert sim.mutual_information(textured, b).item() == pytest.approx(
        sim.mutual_information(b, textured).item(), rel=1e-9)


def test_nmi_lies_in_one_to_two(textured):
    for b in (textured, _shuffled(textured), textured ** 3, 1 - textured):
        value = sim.nmi(textured, b).item()
        assert 1.0 - 1e-6 <= value <= 2.0 + 1e-6


def test_nmi_of_a_few_level_image_with_itself_is_two():
    """With the levels on bin centres and a narrow Parzen window the soft histogram is (almost)
    the hard one, so NMI(a, a) = 2 H(A) / H(A) = 2."""
    a = LEVELS[_level_index()] / 4                      # levels 0, 1/4, ..., 1 → bins 0, 8, ..., 32
    assert sim.nmi(a, a, bins=33, sigma=0.25 / 32).item() == pytest.approx(2.0, abs=0.01)
    assert sim.nmi(a, a).item() > sim.nmi(a, _shuffled(a)).item() + 0.3


# ----------------------------------------------------------------------------- flags, losses, modules

@pytest.mark.parametrize("name, higher", [("ssd", False), ("ncc", True), ("lncc", True),
                                          ("mutual_information", True), ("nmi", True)])
def test_higher_is_better_flags(name, higher):
    assert getattr(sim, name).higher_is_better is higher


@pytest.mark.parametrize("fn", [sim.ssd, sim.ncc, sim.lncc, sim.mutual_information, sim.nmi])
def test_as_loss_is_lower_for_the_better_match(fn):
    a = smooth_image(SHAPE_2D, seed=5, sigma=1.0, dtype=torch.float64)
    loss = sim.as_loss(fn)
    good, bad = loss(a, a).item(), loss(a, _shuffled(a)).item()
    assert good < bad
    assert good == pytest.approx(-fn(a, a).item() if fn.higher_is_better else fn(a, a).item())


@pytest.mark.parametrize("module, fn, kwargs", [
    (sim.SSD, sim.ssd, {}), (sim.NCC, sim.ncc, {}), (sim.LNCC, sim.lncc, {"window": 5}),
    (sim.MutualInformation, sim.mutual_information, {"bins": 16}), (sim.NMI, sim.nmi, {"bins": 16}),
])
def test_module_twins_equal_the_functions_and_show_their_hyper_parameters(module, fn, kwargs):
    a = smooth_image(SHAPE_2D, seed=5, dtype=torch.float64)
    b = smooth_image(SHAPE_2D, seed=6, dtype=torch.float64)
    mod = module(**kwargs)
    assert mod(a, b).item() == fn(a, b, **kwargs).item()
    assert mod.higher_is_better is fn.higher_is_better
    for k, v in kwargs.items():
        assert f"{k}={v!r}" in repr(mod)
    sign = -1.0 if fn.higher_is_better else 1.0
    assert sim.as_loss(mod)(a, b).item() == pytest.approx(sign * fn(a, b, **kwargs).item())


def test_similarities_table_names_the_five_functions():
    assert sim.SIMILARITIES == {"SSD": sim.ssd, "NCC": sim.ncc, "LNCC": sim.lncc,
                                "MI": sim.mutual_information, "NMI": sim.nmi}


# ----------------------------------------------------------------------------- gradcheck

def _pair(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(1, 1, *shape, generator=g, dtype=torch.float64).requires_grad_(True)
    b = torch.rand(1, 1, *shape, generator=g, dtype=torch.float64).requires_grad_(True)
    return a, b


@pytest.mark.parametrize("small", [(5, 6), (3, 4, 5)], ids=["2d", "3d"])
def test_gradcheck_ncc(small):
    assert gradcheck(sim.ncc, _pair(small))


@pytest.mark.parametrize("small", [(5, 6), (3, 4, 5)], ids=["2d", "3d"])
def test_gradcheck_lncc(small):
    assert gradcheck(lambda a, b: sim.lncc(a, b, window=3), _pair(small))


@pytest.mark.parametrize("fn", [sim.mutual_information, sim.nmi], ids=["mi", "nmi"])
@pytest.mark.parametrize("small", [(5, 6), (3, 4, 5)], ids=["2d", "3d"])
def test_gradcheck_mutual_information_and_nmi(fn, small):
    # fixed intensity range: the per-image min/max scaling is deliberately not differentiated
    assert gradcheck(lambda a, b: fn(a, b, bins=8, vmin=-0.1, vmax=1.1), _pair(small))
    assert gradcheck(lambda a, b: fn(a, b, bins=6, sigma=0.3, vmin=-0.1, vmax=1.1), _pair(small, 1))


@pytest.mark.parametrize("shape", [(2, 1, 13, 17), (1, 2, 7, 9, 11)])
@pytest.mark.parametrize("window", [1, 3, 9, 31])
def test_box_mean_equals_avg_pool_without_padding(shape, window):
    # lncc's running-sum box filter must equal avg_pool with count_include_pad=False,
    # including windows larger than the image
    import torch.nn.functional as F
    from course_lib.similarity import _box_mean
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(window), dtype=torch.float64)
    pool = F.avg_pool2d if len(shape) == 4 else F.avg_pool3d
    pad = window // 2
    if pad > min(shape[2:]) // 2:   # avg_pool refuses padding > half the kernel: compare by brute force
        ref = torch.empty_like(x)
        for idx in torch.cartesian_prod(*[torch.arange(s) for s in shape[2:]]).view(-1, len(shape) - 2):
            sl = tuple(slice(max(int(i) - pad, 0), int(i) + pad + 1) for i in idx)
            ref[(slice(None), slice(None)) + tuple(int(i) for i in idx)] = x[(slice(None), slice(None)) + sl].mean(
                dim=tuple(range(2, len(shape))))
    else:
        ref = pool(x, window, stride=1, padding=pad, count_include_pad=False)
    assert torch.allclose(_box_mean(x, window), ref, atol=1e-10)
