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


def test_save_checkpoint_refuses_history_that_is_not_plain_data(tmp_path):
    net = torch.nn.Linear(2, 1)
    with pytest.raises(TypeError, match=r"history must hold plain data.*history\['model'\]"):
        train.save_checkpoint(tmp_path / "n.pt", net, history={"loss": [1.0], "model": net})
    with pytest.raises(TypeError, match=r"history\['loss'\]\[1\] \(a object\)"):
        train.save_checkpoint(tmp_path / "n.pt", net, history={"loss": [1.0, object()]})
    with pytest.raises(TypeError, match="non-string keys"):
        train.save_checkpoint(tmp_path / "n.pt", net, history={1: [1.0]})
    assert not (tmp_path / "n.pt").exists()


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


# ------------------------------------------------------------------------------------ ModelStack

class _StackNet(torch.nn.Module):
    # no bias before the BatchNorm: its gradient would be 0 up to rounding, and Adam would turn
    # that rounding into full-size steps that differ between any two summation orders
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4, bias=False)
        self.bn = torch.nn.BatchNorm1d(4)
        self.out = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.out(torch.relu(self.bn(self.lin(x))))


def _members(k=3, seed=0):
    torch.manual_seed(seed)
    return [_StackNet() for _ in range(k)]


def test_model_stack_trains_each_member_as_if_alone():
    # Adam is element-wise and the step sums the members' losses: each member's trajectory (with
    # per-member gradient clipping and BatchNorm in train mode) is the one it follows alone
    batches = _batches(8, shift=2.0)
    targets = [0.5, -1.0, 2.0]                                   # a different loss per member

    alone = []
    for k, m in enumerate(_members()):
        def step(model, batch, t=targets[k]):
            return ((model(batch) - t) ** 2).mean() * 50          # large: the clipping is active
        train.fit(m, step, batches, steps=8, lr=0.05, progress=False, grad_clip=0.5)
        alone.append(m)

    stack = train.ModelStack(_members())

    def stacked_step(model, batch):
        out = model(batch)                                        # (K, 16, 4)
        return sum(((out[k] - t) ** 2).mean() * 50 for k, t in enumerate(targets))

    train.fit(stack, stacked_step, batches, steps=8, lr=0.05, progress=False, grad_clip=0.5)
    for a, b in zip(alone, stack.unstack()):
        for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.allclose(p.float(), q.float(), atol=1e-5), n
    assert not stack.training and not stack.unstack()[0].training


def test_model_stack_forward_matches_the_members_and_unstack_copies():
    members = [m.eval() for m in _members(4)]
    stack = train.ModelStack(members)
    x = torch.randn(5, 3)
    out = stack(x)
    assert out.shape == (4, 5, 4)
    for k, m in enumerate(members):
        assert torch.allclose(out[k], m(x), atol=1e-6)
    copies = stack.unstack()
    with torch.no_grad():
        copies[0].lin.weight.add_(1.0)                           # a copy, not a view of the stack
    assert torch.allclose(stack(x)[0], members[0](x), atol=1e-6)


def test_model_stack_clips_each_member_to_its_own_norm():
    stack = train.ModelStack([torch.nn.Linear(3, 1, bias=False) for _ in range(2)])
    stack.weights[0].grad = torch.tensor([[[3.0, 4.0, 0.0]], [[0.3, 0.4, 0.0]]])   # norms 5 and 0.5
    norms = stack.clip_grad_norm_(1.0)
    assert torch.allclose(norms, torch.tensor([5.0, 0.5]))
    g = stack.weights[0].grad
    assert torch.allclose(g[0].norm(), torch.tensor(1.0), atol=1e-5)        # clipped to 1
    assert torch.allclose(g[1], torch.tensor([[0.3, 0.4, 0.0]]))             # below 1: untouched


@pytest.mark.parametrize("models, exc, words", [
    (torch.nn.Linear(3, 1), TypeError, "models must be a list or tuple"),
    ([], ValueError, "at least one model"),
    ([torch.nn.Linear(3, 1), "net"], TypeError, r"models\[1\] must be a torch.nn.Module"),
    ([torch.nn.Linear(3, 1), torch.nn.Conv1d(3, 1, 1)], TypeError, "one architecture"),
    ([torch.nn.Linear(3, 1), torch.nn.Linear(4, 1)], ValueError, r"models\[1\] differs from models\[0\]"),
    ([torch.nn.ReLU()], ValueError, "no parameters"),
    ([torch.nn.Linear(3, 1), torch.nn.Linear(3, 1).eval()], ValueError, "same mode"),
])
def test_model_stack_bad_input(models, exc, words):
    with pytest.raises(exc, match=r"ModelStack: .*" + words):
        train.ModelStack(models)
    stack = train.ModelStack([torch.nn.Linear(3, 1)])
    with pytest.raises(ValueError, match="ModelStack.clip_grad_norm_: max_norm"):
        stack.clip_grad_norm_(-1.0)


def test_model_stack_keeps_the_output_structure_with_none_fields():
    from typing import NamedTuple

    class Out(NamedTuple):
        y: torch.Tensor
        extra: torch.Tensor | None

    class TwoHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            return Out(self.lin(x), None)

    stack = train.ModelStack([TwoHead(), TwoHead()])
    out = stack(torch.rand(5, 3))
    assert isinstance(out, Out) and out.y.shape == (2, 5, 2) and out.extra is None
