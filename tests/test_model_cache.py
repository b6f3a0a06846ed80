"""train.cached_model: a saved model is reused only when its recipe matches; a recipe trains the same
weights every time; files that could run code are refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from course_lib import train


@dataclasses.dataclass
class TinyConfig:
    width: int = 4


def build(cfg=TinyConfig(), seed=0):
    def make():
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(3, cfg.width), torch.nn.Tanh(), torch.nn.Linear(cfg.width, 1))
    return make


def trainer(steps=20, seed=0, calls=None):
    def run(model):
        if calls is not None:
            calls.append(1)
        g = torch.Generator().manual_seed(seed)

        def batch():
            x = torch.randn(8, 3, generator=g)
            return x, x.sum(1, keepdim=True)
        return train.fit(model, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), batch, steps=steps, lr=1e-2,
                         seed=seed, progress=False)
    return run


def recipe(steps=20, seed=0):
    return {"config": TinyConfig(), "steps": steps, "seed": seed, "lr": 1e-2, "data": "x ~ N(0, 1), y = sum(x)"}


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def test_one_recipe_trained_twice_gives_identical_weights():
    a, b = build()(), build()()
    trainer()(a)
    trainer()(b)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))


def test_trains_once_then_loads_the_same_weights(tmp_path):
    calls = []
    m1, info1 = train.cached_model("tiny", recipe(), build(), trainer(calls=calls), directory=tmp_path)
    assert info1["loaded"] is False and info1["path"] == tmp_path / "tiny.pt" and info1["path"].is_file()
    m2, info2 = train.cached_model("tiny", recipe(), build(), trainer(calls=calls), directory=tmp_path)
    assert info2["loaded"] is True and len(calls) == 1
    assert all(torch.equal(x, y) for x, y in zip(weights(m1), weights(m2)))
    assert info2["history"]["loss"] == info1["history"]["loss"]
    saved = train.load_checkpoint(info1["path"])
    assert saved["recipe"]["config"] == {"class": "TinyConfig", "width": 4}
    assert saved["recipe"]["environment"] == train.environment(m1)


def test_a_changed_recipe_retrains_and_overwrites(tmp_path):
    calls = []
    train.cached_model("tiny", recipe(), build(), trainer(calls=calls), directory=tmp_path)
    m, info = train.cached_model("tiny", recipe(steps=30), build(), trainer(steps=30, calls=calls), directory=tmp_path)
    assert info["loaded"] is False and len(calls) == 2
    assert train.load_checkpoint(info["path"])["recipe"]["steps"] == 30
    # another thread count is another environment: the saved weights are not reused
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads != 1 else 2)
        _, info = train.cached_model("tiny", recipe(steps=30), build(), trainer(steps=30, calls=calls),
                                     directory=tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert info["loaded"] is False and len(calls) == 3


class Payload:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_a_file_that_could_run_code_is_refused_not_overwritten(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save({"model": Payload()}, path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="load_checkpoint: .* refusing to unpickle"):
        train.cached_model("tiny", recipe(), build(), trainer(), directory=tmp_path)
    assert path.read_bytes() == before                     # untouched: the learner decides what to do with it


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(name="../escape"), ValueError, "cached_model: name must be a file name"),
    (dict(name=3), ValueError, "cached_model: name must be a file name"),
    (dict(recipe={}), TypeError, "cached_model: recipe must be a non-empty dict"),
    (dict(recipe={"fn": print}), TypeError, r"cached_model: recipe must hold plain data only .*; found "
                                            r"recipe\['fn'\] \(a builtin_function_or_method\)"),
    (dict(recipe={"w": torch.zeros(2)}), TypeError, "cached_model: recipe must not hold tensors"),
    (dict(build=None), TypeError, "cached_model: build must be a callable"),
    (dict(build=lambda: "model"), TypeError, r"cached_model: build\(\) must return a torch.nn.Module, got str"),
    (dict(train=None), TypeError, "cached_model: train must be a callable"),
    (dict(train=lambda m: [1.0]), TypeError, r"cached_model: train\(model\) must return a history dict or None"),
    (dict(directory=3), TypeError, "cached_model: directory must be a str"),
])
def test_bad_arguments(tmp_path, kwargs, exc, message):
    call = dict(name="tiny", recipe=recipe(), build=build(), train=trainer(), directory=tmp_path)
    call.update(kwargs)
    with pytest.raises(exc, match=message):
        train.cached_model(**call)


def test_save_checkpoint_refuses_a_recipe_that_is_not_plain(tmp_path):
    with pytest.raises(TypeError, match=r"save_checkpoint: recipe must hold plain data only.*recipe\['f'\]"):
        train.save_checkpoint(tmp_path / "x.pt", build()(), recipe={"f": print})
    with pytest.raises(TypeError, match="save_checkpoint: recipe must be a dict or None"):
        train.save_checkpoint(tmp_path / "x.pt", build()(), recipe=[1])
