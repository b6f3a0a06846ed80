"""One place for input validation: every error names the function, the argument, and the
expected and actual shape or type (house style: never a bare ``assert``)."""

from __future__ import annotations

import torch


def check_tensor(fn: str, name: str, x, *, ndims: tuple[int, ...] | None = None,
                 floating: bool = False, finite: bool = False) -> torch.Tensor:
    """Check that ``x`` is a tensor with one of ``ndims`` dimensions (and optionally float, finite)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if ndims is not None and x.dim() not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ValueError(
            f"{fn}: {name} must have {want} dimensions, got {x.dim()} (shape {tuple(x.shape)})"
        )
    if floating and not x.is_floating_point():
        raise TypeError(f"{fn}: {name} must be a floating-point tensor, got dtype {x.dtype}")
    if finite and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{fn}: {name} contains NaN or Inf values")
    return x


def check_image(fn: str, name: str, x, *, floating: bool = True, finite: bool = True) -> torch.Tensor:
    """An image batch ``(N, C, H, W)`` or ``(N, C, D, H, W)``."""
    return check_tensor(fn, name, x, ndims=(4, 5), floating=floating, finite=finite)


def check_field(fn: str, name: str, u, *, finite: bool = True) -> torch.Tensor:
    """A displacement/velocity field ``(N, ndim, *spatial)`` with ``ndim`` = number of spatial axes."""
    check_tensor(fn, name, u, ndims=(4, 5), floating=True, finite=finite)
    ndim = u.dim() - 2
    if u.shape[1] != ndim:
        raise ValueError(
            f"{fn}: {name} must have shape (N, {ndim}, *spatial) with one channel per spatial axis, "
            f"got shape {tuple(u.shape)}"
        )
    return u


def check_same_shape(fn: str, name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{fn}: {name_a} and {name_b} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_spatial_match(fn: str, name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Same batch size (or broadcastable batch of 1) and same spatial shape."""
    if a.shape[2:] != b.shape[2:]:
        raise ValueError(
            f"{fn}: {name_a} and {name_b} must have the same spatial shape, "
            f"got {tuple(a.shape[2:])} and {tuple(b.shape[2:])}"
        )
    if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
        raise ValueError(
            f"{fn}: {name_a} and {name_b} must have the same batch size (or one of them 1), "
            f"got {a.shape[0]} and {b.shape[0]}"
        )
