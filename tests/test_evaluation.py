"""The evaluation protocol (course_lib.evaluation): known answers, agreement with metrics, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib import data, evaluation, metrics, spatial


@pytest.fixture(scope="module")
def pairs():
    template = data.template_slices("axial", size=(48, 56))
    return [data.pair_batch(1, 500 + i, template=template, magnitude=2.0, spacing=6, subject_magnitude=1.0)
            for i in range(3)]


def truth(p):
    return p["displacement"]


def identity(p):
    return torch.zeros_like(p["displacement"])


def test_the_true_field_gives_zero_epe_and_tre_and_the_ground_truth_dice(pairs):
    ev = evaluation.evaluate(truth, pairs, spacing=2.0)
    assert torch.equal(ev.epe, torch.zeros(3, dtype=torch.float64))
    assert float(ev.tre.abs().max()) < 1e-5 and float(ev.tre_mm.abs().max()) < 1e-5
    for i, p in enumerate(pairs):
        warped = spatial.warp_labels(p["moving_labels"], p["displacement"])
        expected = metrics.dice(warped, p["fixed_labels"], ev.labels)[0]
        got = ev.dice[i]
        assert torch.equal(torch.isnan(got), torch.isnan(expected))
        ok = ~torch.isnan(got)
        assert torch.allclose(got[ok], expected[ok].float())
    assert 0.8 < float(ev.pair_dice().mean()) < 1            # resampling labels twice loses a little


def test_identity_matches_metrics_and_has_no_folding(pairs):
    ev = evaluation.evaluate(identity, pairs, spacing=2.0, hd95=False)
    for i, p in enumerate(pairs):
        zero = torch.zeros_like(p["displacement"])
        assert math.isclose(ev.epe[i], float(metrics.epe(zero, p["displacement"], p["fixed_mask"])), rel_tol=1e-6)
        assert math.isclose(ev.epe_mm[i], 2 * float(ev.epe[i]), rel_tol=1e-6)
        # TRE at the centroids: the true displacement sampled there
        pts = evaluation.label_centroids(p["fixed_labels"])
        d_at = spatial.transform_points(pts, p["displacement"]) - pts
        assert math.isclose(ev.tre[i], float(d_at.norm(dim=-1).mean()), rel_tol=1e-5)
    assert float(ev.fold.abs().max()) == 0 and float(ev.sdlogj.abs().max()) == 0
    assert ev.hd95 is None


def test_hd95_dsc30_groups_and_summary_agree_with_metrics(pairs):
    ev0 = evaluation.evaluate(truth, pairs, hd95=False, landmarks=None)
    labels = ev0.labels
    groups = {"first": labels[:3], "rest": labels[3:]}
    ev = evaluation.evaluate(truth, pairs, groups=groups, spacing=2.0)
    assert list(ev.groups) == ["first", "rest"]
    assert torch.allclose(ev.group_dice[:, 0], ev.dice[:, :3].nanmean(1), equal_nan=True)
    assert torch.allclose(ev.group_dice[:, 1], ev.dice[:, 3:].nanmean(1), equal_nan=True)
    assert ev.dsc30() == metrics.dsc30(ev.dice)
    p = pairs[1]
    warped = spatial.warp_labels(p["moving_labels"], p["displacement"])
    both = [v for v in ev.labels if bool((warped == v).any() and (p["fixed_labels"] == v).any())]
    expected = metrics.hd95(warped, p["fixed_labels"], both, 2.0)[0]
    got = ev.hd95[1, [ev.labels.index(v) for v in both]]
    assert torch.allclose(got, expected)
    s = ev.summary()
    assert set(s) == {"Dice", "DSC30", "HD95", "EPE", "EPE mm", "TRE", "TRE mm", "fold %", "SDlogJ", "s/pair"}
    assert math.isclose(s["Dice"], float(ev.pair_dice().mean()), rel_tol=1e-6)
    assert ev0.tre is None and "TRE" not in ev0.summary()


def test_without_a_true_field_there_is_no_epe_or_tre(pairs):
    bare = [{k: v for k, v in p.items() if k != "displacement"} for p in pairs]
    ev = evaluation.evaluate(lambda p: torch.zeros(1, 2, *p["fixed_labels"].shape[2:]), bare, hd95=False)
    assert ev.epe is None and ev.tre is None
    assert set(ev.summary()) == {"Dice", "DSC30", "fold %", "SDlogJ", "s/pair"}


def test_timing_and_warmup(pairs):
    calls = []

    def slow(p):
        calls.append(1)
        return identity(p)
    ev = evaluation.evaluate(slow, pairs, hd95=False)
    assert len(calls) == len(pairs) + 1 and ev.seconds.shape == (3,) and bool((ev.seconds >= 0).all())
    calls.clear()
    evaluation.evaluate(slow, pairs, hd95=False, warmup=False)
    assert len(calls) == len(pairs)


def test_landmarks_callable(pairs):
    pts = torch.tensor([[[10.0, 12.0], [20.5, 30.0]]])
    ev = evaluation.evaluate(identity, pairs, hd95=False, landmarks=lambda p: pts)
    d_at = spatial.transform_points(pts, pairs[0]["displacement"]) - pts
    assert math.isclose(ev.tre[0], float(d_at.norm(dim=-1).mean()), rel_tol=1e-5)


def test_label_centroids():
    lab = torch.zeros(1, 1, 6, 8, dtype=torch.int64)
    lab[0, 0, 1:3, 2:6] = 4                      # rows 1-2, columns 2-5: centroid (1.5, 3.5)
    lab[0, 0, 5, 7] = 9
    c = evaluation.label_centroids(lab)
    assert torch.allclose(c, torch.tensor([[[1.5, 3.5], [5.0, 7.0]]]))
    assert torch.allclose(evaluation.label_centroids(lab, [9]), torch.tensor([[[5.0, 7.0]]]))
    with pytest.raises(ValueError, match="label_centroids: label 3 of values does not occur"):
        evaluation.label_centroids(lab, [3])
    with pytest.raises(TypeError, match="label_centroids: labels must be an integer label map"):
        evaluation.label_centroids(lab.float())
    with pytest.raises(ValueError, match="label_centroids: labels must be a batch of one"):
        evaluation.label_centroids(lab.repeat(2, 1, 1, 1))
    with pytest.raises(ValueError, match="label_centroids: labels has no non-zero label"):
        evaluation.label_centroids(torch.zeros_like(lab))


def test_pareto_front():
    seconds = {"affine": 0.01, "dense": 1.0, "net": 0.02, "net + io": 0.2, "slow and bad": 2.0, "tie": 0.02}
    dice = {"affine": 0.66, "dense": 0.78, "net": 0.75, "net + io": 0.79, "slow and bad": 0.7, "tie": 0.74}
    assert evaluation.pareto_front(seconds, dice) == ["affine", "net", "net + io"]
    assert evaluation.pareto_front({"a": 1.0}, {"a": 0.5}) == ["a"]
    with pytest.raises(ValueError, match="pareto_front: seconds and accuracy must name the same methods"):
        evaluation.pareto_front({"a": 1.0}, {"b": 0.5})
    with pytest.raises(ValueError, match=r"pareto_front: accuracy\['a'\] must be a finite number"):
        evaluation.pareto_front({"a": 1.0}, {"a": float("nan")})
    with pytest.raises(TypeError, match="pareto_front: seconds must be a non-empty dict"):
        evaluation.pareto_front([], {"a": 0.5})
    with pytest.raises(ValueError, match="pareto_front: seconds must be >= 0"):
        evaluation.pareto_front({"a": -1.0}, {"a": 0.5})


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(register=None), TypeError, "evaluate: register must be a callable pair -> displacement"),
    (dict(pairs={}), TypeError, "evaluate: pairs must be a list of pair dicts"),
    (dict(pairs=[]), ValueError, "evaluate: pairs is empty"),
    (dict(pairs=[1]), TypeError, r"evaluate: pairs\[0\] must be a dict"),
    (dict(labels=[]), ValueError, "evaluate: labels must name at least one label"),
    (dict(labels=[1.5]), TypeError, "evaluate: labels must be a sequence of int labels"),
    (dict(groups=[1]), TypeError, "evaluate: groups must be a dict"),
    (dict(groups={"g": [123456]}), ValueError, r"evaluate: groups\['g'\] must be a non-empty subset"),
    (dict(spacing=0.0), ValueError, "evaluate: spacing"),
    (dict(spacing=(1.0, 1.0, 1.0)), ValueError, "evaluate: spacing must be one number or 2"),
    (dict(hd95=1), TypeError, "evaluate: hd95"),
    (dict(warmup="yes"), TypeError, "evaluate: warmup"),
    (dict(landmarks="corners"), ValueError, "evaluate: landmarks"),
])
def test_bad_arguments(pairs, kwargs, exc, message):
    call = dict(register=identity, pairs=pairs[:1], hd95=False)
    call.update(kwargs)
    with pytest.raises(exc, match=message):
        evaluation.evaluate(**call)


@pytest.mark.parametrize("edit, exc, message", [
    (lambda p: p.pop("fixed_labels"), ValueError, r"evaluate: pairs\[0\] lacks \['fixed_labels'\]"),
    (lambda p: p.update(fixed_labels=p["fixed_labels"].float()), TypeError,
     r"evaluate: pairs\[0\]\['fixed_labels'\] must be an integer label map"),
    (lambda p: p.update(moving_labels=p["moving_labels"].repeat(2, 1, 1, 1)), ValueError,
     r"evaluate: pairs\[0\]\['moving_labels'\] must be a batch of one"),
    (lambda p: p.update(moving_labels=p["moving_labels"][..., :-1]), ValueError,
     r"evaluate: pairs\[0\] has label maps of shapes"),
])
def test_bad_pairs(pairs, edit, exc, message):
    p = dict(pairs[0])
    edit(p)
    with pytest.raises(exc, match=message):
        evaluation.evaluate(identity, [p], hd95=False)


def test_pairs_must_all_or_none_carry_the_truth(pairs):
    bare = {k: v for k, v in pairs[1].items() if k != "displacement"}
    with pytest.raises(ValueError, match=r"evaluate: either every pair carries its true 'displacement' or none does "
                                         r"\(pairs without it: \[1\]\)"):
        evaluation.evaluate(identity, [pairs[0], bare], hd95=False)


@pytest.mark.parametrize("result, exc, message", [
    (lambda p: torch.zeros(1, 2, 5, 5), ValueError, r"evaluate: register\(pairs\[0\]\) must return a displacement "
                                                    r"\(1, 2, 48, 56\) \(voxels, backward\), got \(1, 2, 5, 5\)"),
    (lambda p: torch.zeros(2, 2, 48, 56), ValueError, r"must return a displacement \(1, 2, 48, 56\)"),
    (lambda p: torch.zeros(1, 2, 48, 56, dtype=torch.int64), TypeError,
     r"evaluate: register\(pairs\[0\]\) must return a floating displacement tensor"),
    (lambda p: np.zeros((1, 2, 48, 56)), TypeError, "got ndarray"),
    (lambda p: torch.full((1, 2, 48, 56), float("nan")), ValueError, "returned a displacement with NaN or Inf"),
])
def test_bad_register_results(pairs, result, exc, message):
    with pytest.raises(exc, match=message):
        evaluation.evaluate(result, pairs[:1], hd95=False)


def test_a_label_absent_from_a_pair_is_nan_and_skipped(pairs):
    absent = 99999
    ev = evaluation.evaluate(truth, pairs, labels=ev_labels(pairs) + [absent], hd95=False)
    assert bool(torch.isnan(ev.dice[:, -1]).all())
    assert not bool(torch.isnan(ev.pair_dice()).any())


def ev_labels(pairs):
    return sorted(set().union(*(metrics.present_labels(p["fixed_labels"]) for p in pairs)))
