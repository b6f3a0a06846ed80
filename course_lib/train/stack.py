"""Several models of one architecture trained as one module (seeds batched with ``torch.func``).

Part of :mod:`course_lib.train`; introduced in lesson 07.
"""

from __future__ import annotations

import copy

import torch

from .._checks import check_number


class ModelStack(torch.nn.Module):
    """K models of one architecture trained as **one** module: several seeds for the price of fewer.

    The members' weights (and buffers, e.g. BatchNorm statistics) are stacked along a new first
    axis with :func:`torch.func.stack_module_state`, and the forward pass runs every member at once
    with :func:`torch.func.vmap` (batched convolutions instead of K small ones). ``forward(*inputs)``
    applies every member to the **same** inputs and returns the outputs stacked: ``(K, *out)``.

    Training with :func:`fit`: the step returns the **sum** of the members' losses, so each
    member's gradient is exactly the gradient of its own loss; Adam works element by element and
    ``fit(grad_clip=...)`` clips each member's own norm (:meth:`clip_grad_norm_`), so every member
    follows the trajectory it would follow alone, up to rounding (the batched convolutions add in
    another order). :meth:`unstack` returns the K trained models as ordinary modules (e.g. for
    :func:`recalibrate_batchnorm`, which looks for BatchNorm layers by module type).

    Why: at the small sizes of the quick profile a training step costs mostly fixed overhead, so K
    members in one batched step cost far less than K steps (lesson 07 measures it).

    >>> members = [torch.nn.Linear(3, 2) for _ in range(4)]
    >>> stack = ModelStack(members)
    >>> stack(torch.rand(5, 3)).shape
    torch.Size([4, 5, 2])
    >>> len(stack.unstack())
    4
    """

    def __init__(self, models):
        super().__init__()
        fn = "ModelStack"
        if isinstance(models, torch.nn.Module) or not isinstance(models, (list, tuple)):
            raise TypeError(f"{fn}: models must be a list or tuple of torch.nn.Module, got {type(models).__name__}")
        if not models:
            raise ValueError(f"{fn}: models must hold at least one model, got an empty {type(models).__name__}")
        for k, m in enumerate(models):
            if not isinstance(m, torch.nn.Module):
                raise TypeError(f"{fn}: models[{k}] must be a torch.nn.Module, got {type(m).__name__}")
            if type(m) is not type(models[0]):
                raise TypeError(f"{fn}: every model must have one architecture; models[0] is a "
                                f"{type(models[0]).__name__}, models[{k}] a {type(m).__name__}")
            if m.training != models[0].training:
                raise ValueError(f"{fn}: every model must be in the same mode; models[0] is in "
                                 f"{'train' if models[0].training else 'eval'} mode, models[{k}] in "
                                 f"{'train' if m.training else 'eval'} mode")
            shapes = {n: (tuple(t.shape), t.dtype) for n, t in [*m.named_parameters(), *m.named_buffers()]}
            if k == 0:
                first = shapes
            elif shapes != first:
                diff = sorted(set(shapes.items()) ^ set(first.items()))[:1]
                raise ValueError(f"{fn}: models[{k}] differs from models[0] in its weights "
                                 f"(name, (shape, dtype)): {diff}")
        if next(models[0].parameters(), None) is None:
            raise ValueError(f"{fn}: the models have no parameters to stack")
        params, buffers = torch.func.stack_module_state(list(models))
        self._param_names, self._buffer_names = list(params), list(buffers)
        self.weights = torch.nn.ParameterList(torch.nn.Parameter(p.detach().clone()) for p in params.values())
        for j, b in enumerate(buffers.values()):
            self.register_buffer(f"buffer_{j}", b.detach().clone())
        skeleton = copy.deepcopy(models[0]).to("meta")          # the architecture, without weights
        object.__setattr__(self, "_skeleton", skeleton)           # not a submodule: no meta parameters
        self.train(models[0].training)

    def __len__(self) -> int:
        return self.weights[0].shape[0]

    def train(self, mode: bool = True):
        super().train(mode)
        self._skeleton.train(mode)
        return self

    def _state(self):
        params = dict(zip(self._param_names, self.weights))
        buffers = {n: getattr(self, f"buffer_{j}") for j, n in enumerate(self._buffer_names)}
        return params, buffers

    def forward(self, *inputs):
        """Every member applied to the same ``inputs`` (as for one model): the outputs ``(K, *out)``."""
        if not inputs:
            raise TypeError("ModelStack.forward: expected the inputs of one member's forward, got none")
        params, buffers = self._state()
        skeleton = self._skeleton

        structure = []          # the output's pytree and its non-tensor leaves (a NamedTuple may hold None)

        def member(p, b, *x):
            leaves, spec = torch.utils._pytree.tree_flatten(torch.func.functional_call(skeleton, (p, b), x))
            structure[:] = [spec, leaves]
            return tuple(v for v in leaves if isinstance(v, torch.Tensor))

        tensors = iter(torch.func.vmap(member, in_dims=(0, 0) + (None,) * len(inputs))(params, buffers, *inputs))
        spec, leaves = structure
        return torch.utils._pytree.tree_unflatten(
            [next(tensors) if isinstance(v, torch.Tensor) else v for v in leaves], spec)

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Clip each member's gradient to a total norm of at most ``max_norm`` (the rule of
        :func:`torch.nn.utils.clip_grad_norm_`, member by member); returns the K norms before clipping."""
        check_number("ModelStack.clip_grad_norm_", "max_norm", max_norm, minimum=0, positive=True)
        grads = [p.grad for p in self.weights if p.grad is not None]
        if not grads:
            return torch.zeros(len(self))
        norms = torch.stack([g.flatten(1).double().pow(2).sum(1) for g in grads]).sum(0).sqrt()  # (K,)
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.to(g.dtype).view(-1, *([1] * (g.dim() - 1))))
        return norms.float()

    @torch.no_grad()
    def unstack(self) -> list:
        """The K members as ordinary modules (copies of the weights and buffers, same mode and device)."""
        params, buffers = self._state()
        device = self.weights[0].device
        members = []
        for k in range(len(self)):
            m = copy.deepcopy(self._skeleton).to_empty(device=device)
            for name, t in [*m.named_parameters(), *m.named_buffers()]:
                t.copy_((params.get(name) if name in params else buffers[name])[k])
            members.append(m.train(self.training))
        return members
