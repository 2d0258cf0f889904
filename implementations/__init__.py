"""Interchangeable BPTT backends behind one interface, and how to find them.

    backend = get_backend("numpy", dtype="float32")
    backend.forward(spec, params, xs, h0=None)                         -> ForwardResult
    backend.bptt(spec, params, xs, targets, h0=None, truncation=None)  -> BPTTResult

Names: the built-ins below, any ``package.module:attr`` (a backend object, or a
class or callable returning one), and names registered by other packages under the
entry-point group ``bptt_suite.backends``.

Writing a backend of your own: ``implementations.adapter`` has the validation, the
truncation blocks, the overflow errors and the declaration of unsupported features
that the contract (docs/contract.md) asks of every backend.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from importlib.metadata import entry_points

from .base import Backend, check_dtype

ENTRY_POINT_GROUP = "bptt_suite.backends"

#: name -> (module, class) of the built-in backends, imported when asked for.
BUILTIN = {
    "reference": "ReferenceBackend",
    "numpy": "NumpyBackend",
    "torch": "TorchBackend",
    "torch:cuda": "TorchCudaBackend",
    "torch-autograd": "TorchAutogradBackend",
    "rtrl": "RTRLBackend",
}
NEEDS_TORCH = ("torch", "torch:cuda", "torch-autograd")


def _torch_state():
    """(installed, cuda available)."""
    if importlib.util.find_spec("torch") is None:
        return False, False
    import torch

    return True, bool(torch.cuda.is_available())


def _entry_points():
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_backends():
    """The names usable on this machine: built-ins whose requirements are met, then
    the registered entry points."""
    has_torch, has_cuda = _torch_state()
    names = [n for n in BUILTIN
             if (n not in NEEDS_TORCH or has_torch) and (n != "torch:cuda" or has_cuda)]
    return names + sorted(n for n in _entry_points() if n not in BUILTIN)


def _unknown(name, why):
    return ValueError(f"unknown backend {name!r} ({why}); available: {', '.join(available_backends())}, "
                      f"or 'package.module:attr' naming a backend")


def _load_attr(spec):
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise _unknown(spec, "expected 'package.module:attr'")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise _unknown(spec, f"cannot import {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _unknown(spec, f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _instantiate(obj, name, dtype):
    """A backend object as it is; a class or callable is called, with dtype= when it
    takes one."""
    if inspect.isclass(obj) or (callable(obj) and not hasattr(obj, "bptt")):
        try:
            takes_dtype = "dtype" in inspect.signature(obj).parameters
        except (TypeError, ValueError):
            takes_dtype = True
        obj = obj(dtype=dtype) if takes_dtype else obj()
    missing = [m for m in ("forward", "bptt") if not callable(getattr(obj, m, None))]
    missing += [a for a in ("name", "dtype") if not isinstance(getattr(obj, a, None), str)]
    if missing:
        raise TypeError(f"backend {name!r} resolved to {obj!r}, which lacks {', '.join(missing)} "
                        f"(a backend has methods forward and bptt and string attributes name and dtype)")
    return obj


def get_backend(name, dtype="float64"):
    """The backend called ``name``, computing in ``dtype`` ("float32" or "float64")."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a backend name (str); got {type(name).__name__}")
    dtype = check_dtype(dtype)
    if name in BUILTIN:
        has_torch, _ = _torch_state()
        if name in NEEDS_TORCH and not has_torch:
            raise _unknown(name, "PyTorch is not installed: pip install torch")
        from . import backends

        return getattr(backends, BUILTIN[name])(dtype=dtype)
    eps = _entry_points()
    if name in eps:
        return _instantiate(eps[name].load(), name, dtype)
    if ":" in name:
        return _instantiate(_load_attr(name), name, dtype)
    raise _unknown(name, "not a built-in, registered or 'package.module:attr' name")


__all__ = ["Backend", "get_backend", "available_backends", "BUILTIN", "ENTRY_POINT_GROUP"]
