"""One place for input validation (house style: never a bare ``assert``, never a silent broadcast).

**The bad-input contract.** Every public function of ``course_lib`` checks its arguments before
it computes anything (and before it returns a widget or starts a training loop). A bad argument
raises

* ``TypeError`` when it has the wrong *type*: not a tensor, a list or ``None`` where a tensor is
  needed, an integer tensor where real numbers are needed (or a float tensor where labels are),
  a float or a string where an int is needed, a tensor whose dtype differs from a network's
  weights;
* ``ValueError`` when it has the right type but a wrong *value*: wrong number of dimensions or
  channels, mismatched shapes, an empty tensor, NaN or Inf, a zero or negative size, a number out
  of range, an unknown option string.

The message starts with the name of the public function or method that was called
(``"warp: ..."``, ``"VoxelMorph.forward: ..."``), names the argument, and gives the expected and
the actual shape, dtype or value. Helpers that do the work for several public functions take
that name as their first argument ``fn``, so an error never names an inner helper.

**The dtype policy** (one rule for the whole library):

1. *Functions* (``spatial``, ``similarity``, ``regularizers``, ``metrics``, ``classical``,
   ``features``, ``rotations``) accept any floating dtype. When they combine several floating
   tensors of different dtypes (float32 with float64), they compute in the common dtype
   :func:`torch.promote_types` and return it, as PyTorch's own arithmetic does (``ssd(a32, b64)``
   is float64). The one documented exception is resampling: :func:`~course_lib.spatial.warp` and
   :func:`~course_lib.spatial.warp_affine` return the *image's* dtype, whatever the field's.
2. *Networks* (``course_lib.networks``) do not cast: an input whose dtype differs from the
   weights' dtype is a ``TypeError`` that names both (move the model with ``model.double()`` or
   the input with ``x.to(dtype)``).
3. *Integer tensors* are never silently used as real numbers: images, fields, points, angles,
   parameters and matrices must be floating (``TypeError`` otherwise), so a matrix builder cannot
   truncate scale factors to integers. Label maps are the reverse: they must be integer.

Python numbers (sizes, steps, weights, sigmas) are checked the same way: an int argument must be
an ``int`` (or NumPy integer), not a ``bool``, a float or a string; a real argument must be a
finite real number unless documented otherwise.
"""

from __future__ import annotations

import math
import numbers
import operator

import torch

def _kind(x) -> str:
    """How an error message describes a value of the wrong type (tensors with dtype and shape)."""
    if isinstance(x, torch.Tensor):
        return f"a tensor of dtype {x.dtype} and shape {tuple(x.shape)}"
    return "None" if x is None else type(x).__name__


# --------------------------------------------------------------------------------------- tensors

def check_tensor(fn: str, name: str, x, *, ndims: tuple[int, ...] | None = None,
                 floating: bool = False, finite: bool = False, nonempty: bool = False) -> torch.Tensor:
    """Check that ``x`` is a tensor with one of ``ndims`` dimensions (optionally float, finite, non-empty)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {_kind(x)}")
    if ndims is not None and x.dim() not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ValueError(
            f"{fn}: {name} must have {want} dimensions, got {x.dim()} (shape {tuple(x.shape)})"
        )
    if floating and not x.is_floating_point():
        raise TypeError(f"{fn}: {name} must be a floating-point tensor, got dtype {x.dtype}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"{fn}: {name} must not be empty, got shape {tuple(x.shape)}")
    if finite and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{fn}: {name} contains NaN or Inf values (shape {tuple(x.shape)})")
    return x


def check_image(fn: str, name: str, x, *, floating: bool = True, finite: bool = True,
                channels: int | None = None, ndim: int | None = None) -> torch.Tensor:
    """An image batch ``(N, C, H, W)`` or ``(N, C, D, H, W)``, non-empty (optionally ``C = channels``
    and ``ndim`` spatial axes)."""
    ndims = (4, 5) if ndim is None else (ndim + 2,)
    check_tensor(fn, name, x, ndims=ndims, floating=floating, finite=finite, nonempty=True)
    if channels is not None and x.shape[1] != channels:
        axes = ", ".join("HW" if x.dim() == 4 else "DHW")
        raise ValueError(f"{fn}: {name} must have {channels} channel{'s' if channels > 1 else ''} "
                         f"(N, {channels}, {axes}), got shape {tuple(x.shape)}")
    return x


def check_labels(fn: str, name: str, x, *, ndim: int | None = None) -> torch.Tensor:
    """An integer label map ``(N, 1, *spatial)`` (not float, not bool), non-empty."""
    ndims = (4, 5) if ndim is None else (ndim + 2,)
    check_tensor(fn, name, x, ndims=ndims, nonempty=True)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{fn}: {name} must be an integer label map, got dtype {x.dtype}")
    if x.shape[1] != 1:
        raise ValueError(f"{fn}: {name} must be (N, 1, *spatial), got {tuple(x.shape)}")
    return x


def check_field(fn: str, name: str, u, *, finite: bool = True) -> torch.Tensor:
    """A displacement/velocity field ``(N, ndim, *spatial)`` with ``ndim`` = number of spatial axes."""
    check_tensor(fn, name, u, ndims=(4, 5), floating=True, nonempty=True)
    ndim = u.dim() - 2
    if u.shape[1] != ndim:
        raise ValueError(
            f"{fn}: {name} must have shape (N, {ndim}, *spatial) with one channel per spatial axis, "
            f"got shape {tuple(u.shape)}"
        )
    return check_tensor(fn, name, u, finite=finite)


def check_min_size(fn: str, name: str, x: torch.Tensor, minimum: int) -> None:
    """Every spatial size of ``x`` ``(N, C, *spatial)`` is at least ``minimum``."""
    if min(x.shape[2:]) < minimum:
        raise ValueError(f"{fn}: every spatial size must be >= {minimum}, got {tuple(x.shape[2:])} "
                         f"({name} of shape {tuple(x.shape)})")


def check_same_shape(fn: str, name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{fn}: {name_a} and {name_b} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_spatial_match(fn: str, name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor,
                        *, broadcast: bool = True) -> None:
    """Same spatial shape and the same batch size (with ``broadcast``, one of them may be 1)."""
    if a.shape[2:] != b.shape[2:]:
        raise ValueError(
            f"{fn}: {name_a} and {name_b} must have the same spatial shape, "
            f"got {tuple(a.shape[2:])} and {tuple(b.shape[2:])}"
        )
    if a.shape[0] != b.shape[0] and not (broadcast and 1 in (a.shape[0], b.shape[0])):
        extra = " (or one of them 1)" if broadcast else ""
        raise ValueError(
            f"{fn}: {name_a} and {name_b} must have the same batch size{extra}, "
            f"got {a.shape[0]} and {b.shape[0]}"
        )


def check_batch(fn: str, name: str, x: torch.Tensor, n: int, of: str, *, allow_one: bool = True) -> None:
    """``x`` has batch size ``n`` (that of argument ``of``), or 1 when ``allow_one``."""
    if x.shape[0] != n and not (allow_one and x.shape[0] == 1):
        want = f"{n} (the batch size of {of})" + (" or 1" if allow_one and n != 1 else "")
        raise ValueError(f"{fn}: {name} must have batch size {want}, got shape {tuple(x.shape)}")


def promote(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors cast to their common floating dtype (rule 1 of the dtype policy)."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return tuple(t if t.dtype == dtype else t.to(dtype) for t in tensors)


def check_model_dtype(fn: str, name: str, x: torch.Tensor, module: torch.nn.Module) -> None:
    """A network input must have the dtype of the network's weights (rule 2 of the dtype policy)."""
    p = next(module.parameters(), None)
    if p is not None and x.dtype != p.dtype:
        raise TypeError(f"{fn}: {name} must have dtype {p.dtype} (the weights' dtype), got {x.dtype}; "
                        f"convert the input with .to({p.dtype}) or the model with .to({x.dtype})")


# --------------------------------------------------------------------------------------- numbers

def check_int(fn: str, name: str, v, *, minimum: int | None = None, maximum: int | None = None,
              optional: bool = False):
    """An int (Python or NumPy integer, not bool) in ``[minimum, maximum]``; returns it as ``int``."""
    if v is None and optional:
        return None
    if isinstance(v, bool) or isinstance(v, torch.Tensor) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{fn}: {name} must be an int, got {_kind(v)}" + (f" {v!r}" if isinstance(v, (float, str)) else ""))
    v = int(v)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        if maximum is None:
            want = {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")
        else:
            want = f"an int in [{'-inf' if minimum is None else minimum}, {maximum}]"
        raise ValueError(f"{fn}: {name} must be {want}, got {v}")
    return v


def check_number(fn: str, name: str, v, *, minimum: float | None = None, positive: bool = False,
                 maximum: float | None = None, optional: bool = False, finite: bool = True):
    """A real number (int, float, NumPy scalar or one-element tensor; not bool), finite unless
    ``finite=False``, ``>= minimum`` (``> minimum`` with ``positive``) and ``<= maximum``."""
    if v is None and optional:
        return None
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_complex() and v.dtype != torch.bool:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a real number, got {_kind(v)}")
    v = float(v)
    if math.isnan(v) or (finite and math.isinf(v)):
        raise ValueError(f"{fn}: {name} must be a finite number, got {v}")
    if minimum is not None and (v <= minimum if positive else v < minimum):
        raise ValueError(f"{fn}: {name} must be {'>' if positive else '>='} {minimum:g}, got {v:g}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{fn}: {name} must be <= {maximum:g}, got {v:g}")
    return v


def check_size(fn: str, name: str, size, ndim: int | tuple[int, ...] | None = None,
               minimum: int = 1) -> tuple[int, ...]:
    """A spatial size: a sequence of ``ndim`` ints (or one of ``ndim`` if a tuple), each ``>= minimum``."""
    if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or not hasattr(size, "__iter__"):
        raise TypeError(f"{fn}: {name} must be a sequence of ints, got {_kind(size)}")
    try:
        out = tuple(operator.index(s) for s in size if not isinstance(s, bool))
    except TypeError:
        raise TypeError(f"{fn}: {name} must be a sequence of ints, got {tuple(size)!r}") from None
    if len(out) != len(size):
        raise TypeError(f"{fn}: {name} must be a sequence of ints, got {tuple(size)!r}")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and len(out) not in allowed:
        want = " or ".join(str(k) for k in allowed)
        raise ValueError(f"{fn}: {name} must have {want} entries, got {out}")
    if any(s < minimum for s in out):
        raise ValueError(f"{fn}: every entry of {name} must be >= {minimum}, got {out}")
    return out


def check_option(fn: str, name: str, v, options) -> str:
    """One of the allowed option strings (anything else, ``None`` included, is a ``ValueError``)."""
    if not isinstance(v, str) or v not in options:
        raise ValueError(f"{fn}: {name} must be one of {tuple(options)}, got {v!r}")
    return v


def check_flags(fn: str, **flags) -> None:
    """Each keyword must be a real bool (not 0/1, not a string)."""
    for name, v in flags.items():
        if not isinstance(v, bool):
            raise TypeError(f"{fn}: {name} must be a bool, got {type(v).__name__}")


def check_callable(fn: str, name: str, v, what: str = "callable") -> None:
    if not callable(v):
        raise TypeError(f"{fn}: {name} must be {what}, got {_kind(v)}")


def check_keywords(fn: str, kwargs: dict, allowed) -> None:
    """Module twins accept only their function's keyword arguments (caught when built, not when used)."""
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{fn}: unknown keyword argument{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(unknown)}; allowed: {', '.join(allowed) or 'none'}")
