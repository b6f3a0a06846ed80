"""Unit tests for course_lib.train: BatchNorm recalibration and safe checkpoint loading."""

import pytest
import torch

from course_lib import train


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4)
        self.bn = torch.nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.lin(x))


def _batches(n, shift=5.0, scale=3.0):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(16, 3, generator=g) * scale + shift for _ in range(n)]


def test_recalibrate_batchnorm_matches_the_plain_average_of_batch_statistics():
    net = _Net()
    batches = _batches(10)
    assert train.recalibrate_batchnorm(net, lambda m, b: m(b), batches, n_batches=10) == 1
    with torch.no_grad():
        h = [net.lin(b) for b in batches]
    want_mean = torch.stack([x.mean(0) for x in h]).mean(0)
    want_var = torch.stack([x.var(0, unbiased=True) for x in h]).mean(0)
    assert torch.allclose(net.bn.running_mean, want_mean, atol=1e-5)
    assert torch.allclose(net.bn.running_var, want_var, atol=1e-4)
    assert not net.training and net.bn.momentum == 0.1          # eval mode, momentum restored


def test_recalibrate_batchnorm_fixes_stale_running_statistics():
    net = _Net()
    batches = _batches(8)
    net.bn.running_mean.fill_(-50.0)                             # stale: far from the data
    x = batches[0]
    net.train()
    with torch.no_grad():
        want = net(x)                                            # batch statistics
    net.eval()
    with torch.no_grad():
        stale = (net(x) - want).abs().mean().item()
    train.recalibrate_batchnorm(net, lambda m, b: m(b), batches)
    with torch.no_grad():
        fixed = (net(x) - want).abs().mean().item()
    assert stale > 10 and fixed < 0.5, (stale, fixed)


def test_recalibrate_batchnorm_leaves_weights_alone_and_accepts_a_callable_source():
    net = _Net()
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    g = torch.Generator().manual_seed(1)
    train.recalibrate_batchnorm(net, lambda m, b: m(b), lambda: torch.randn(8, 3, generator=g), n_batches=3)
    for k, v in before.items():
        assert torch.equal(net.state_dict()[k], v), k


def test_recalibrate_batchnorm_without_batchnorm_returns_zero():
    net = torch.nn.Linear(3, 2)
    assert train.recalibrate_batchnorm(net, lambda m, b: m(b), _batches(2)) == 0


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(model="net"), TypeError, "model must be a torch.nn.Module"),
    (dict(forward=3), TypeError, "forward must be callable"),
    (dict(n_batches=0), ValueError, "n_batches must be a positive int"),
    (dict(n_batches=2.0), TypeError, "n_batches must be an int"),
])
def test_recalibrate_batchnorm_bad_input(kwargs, exc, words):
    args = dict(model=_Net(), forward=lambda m, b: m(b), batches=_batches(2), n_batches=2)
    args.update(kwargs)
    with pytest.raises(exc, match=words):
        train.recalibrate_batchnorm(**args)


class _Payload:
    # unpickling this would call os.system: a checkpoint must never get that far
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /dev/null",))


def test_load_checkpoint_refuses_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": _Payload()}, path)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        train.load_checkpoint(path)


def test_load_checkpoint_bad_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        train.load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="path must be a str or pathlib.Path"):
        train.load_checkpoint(3)


def test_checkpoint_round_trip_with_optimizer_and_history(tmp_path):
    net = _Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = train.save_checkpoint(tmp_path / "n.pt", net, None, opt, step=3, history={"loss": [1.0, 0.5], "time": 2.0})
    net2 = _Net()
    ckpt = train.load_checkpoint(path, net2)
    assert ckpt["step"] == 3 and ckpt["history"]["loss"] == [1.0, 0.5]
    for k, v in net.state_dict().items():
        assert torch.equal(net2.state_dict()[k], v)


def test_decay_schedule_is_constant_then_linear_to_final():
    sched = train.decay_schedule(8, decay_from=0.5, final=0.2)
    factors = [sched(i) for i in range(8)]
    assert factors[:5] == [1.0] * 5                                      # the decay starts at step 4, from 1
    assert factors[-1] == pytest.approx(0.2)
    assert all(a > b for a, b in zip(factors[4:], factors[5:]))          # then strictly falling
    assert train.decay_schedule(1)(0) == 1.0                              # one step: no decay to apply


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(steps=10, decay_from=1.0), ValueError, "decay_from"),
    (dict(steps=10, final=1.5), ValueError, "final"),
    (dict(steps=0), ValueError, "steps"),
])
def test_decay_schedule_bad_input(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        train.decay_schedule(**kwargs)


def _lin_step(model, batch):
    return ((model(batch) - 1.0) ** 2).mean()


def test_fit_applies_the_schedule_at_every_step_and_a_resumed_run_continues_it(tmp_path):
    sched = train.decay_schedule(6, decay_from=0.5, final=0.1)
    seen = []

    def record(model, i, history):
        seen.append(opt.param_groups[0]["lr"])

    torch.manual_seed(0)
    ref = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(ref.parameters(), lr=0.1)
    batches = _batches(6)
    train.fit(ref, _lin_step, batches, steps=6, optimizer=opt, progress=False, lr_schedule=sched,
              callback=record, callback_every=1)
    assert seen == pytest.approx([0.1 * sched(i) for i in range(6)])
    # interrupted after 3 steps, resumed from the file with a fresh optimizer at the base rate
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    path = tmp_path / "lin.pt"
    train.fit(net, _lin_step, batches[:3], steps=3, lr=0.1, progress=False, lr_schedule=sched, checkpoint=path)
    net2 = torch.nn.Linear(3, 1)
    train.fit(net2, _lin_step, batches[3:], steps=6, lr=0.1, progress=False, lr_schedule=sched, checkpoint=path)
    for p, q in zip(net2.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_fit_rejects_a_schedule_that_returns_a_bad_factor():
    with pytest.raises(ValueError, match="lr_schedule"):
        train.fit(torch.nn.Linear(3, 1), _lin_step, _batches(2), steps=2, progress=False, lr_schedule=lambda i: -1.0)
    with pytest.raises(TypeError, match="lr_schedule"):
        train.fit(torch.nn.Linear(3, 1), _lin_step, _batches(2), steps=2, progress=False, lr_schedule=3)
