"""COURSE_SEED: training seeds move with it, held-out data does not; checkpoint values are recorded."""

import math

import pytest
import torch

from course_lib import config, data


def test_default_course_seed_leaves_seeds_unchanged(monkeypatch):
    monkeypatch.delenv("COURSE_SEED", raising=False)
    assert config.course_seed() == 0
    assert config.train_seed(5) == 5


def test_course_seed_offsets_training_seeds(monkeypatch):
    monkeypatch.setenv("COURSE_SEED", "2")
    assert config.course_seed() == 2
    assert config.train_seed(5) == 5 + 2 * 7919
    # seed_everything seeds torch with the offset seed
    config.seed_everything(5)
    a = torch.rand(3)
    torch.manual_seed(5 + 2 * 7919)
    assert torch.equal(a, torch.rand(3))
    # offset training seeds stay inside the train block of the split seeds
    monkeypatch.setenv("COURSE_SEED", "99")
    assert data.SPLIT_SEEDS["train"] + config.train_seed(100_000) < data.SPLIT_SEEDS["val"]


def test_course_seed_never_changes_held_out_pairs(monkeypatch):
    template = data.template_slices("axial", size=(48, 56))
    monkeypatch.setenv("COURSE_SEED", "0")
    a = data.pair_batch(1, data.SPLIT_SEEDS["test"] + 3, template=template)
    monkeypatch.setenv("COURSE_SEED", "3")
    config.seed_everything(0)
    b = data.pair_batch(1, data.SPLIT_SEEDS["test"] + 3, template=template)
    assert torch.equal(a["moving"], b["moving"]) and torch.equal(a["displacement"], b["displacement"])


@pytest.mark.parametrize("raw", ["x", "1.5", "-1", "100"])
def test_bad_course_seed_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("COURSE_SEED", raw)
    with pytest.raises(ValueError, match="COURSE_SEED must be an integer in \\[0, 99\\]"):
        config.course_seed()


@pytest.mark.parametrize("bad, exc", [(1.0, TypeError), (True, TypeError), (-1, ValueError)])
def test_train_seed_rejects_bad_seeds(bad, exc):
    with pytest.raises(exc, match="train_seed: seed must be"):
        config.train_seed(bad)


def test_record_checkpoint_keeps_floats_and_rejects_non_numbers():
    config.CHECKPOINT_VALUES.clear()
    config.record_checkpoint("99.1", gain=torch.tensor(0.25), wins=3, ok=True, nan=float("nan"))
    rec = config.CHECKPOINT_VALUES["99.1"]
    assert rec["gain"] == 0.25 and rec["wins"] == 3.0 and rec["ok"] == 1.0 and math.isnan(rec["nan"])
    with pytest.raises(TypeError, match="record_checkpoint: x must be a number, got str"):
        config.record_checkpoint("99.2", x="a")
    with pytest.raises(ValueError, match="record_checkpoint: x must be a scalar, got shape \\(2,\\)"):
        config.record_checkpoint("99.2", x=torch.zeros(2))
    with pytest.raises(TypeError, match="record_checkpoint: check must be a non-empty str"):
        config.record_checkpoint("", x=1.0)
    config.CHECKPOINT_VALUES.clear()
