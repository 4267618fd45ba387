"""What the check modules use: the submission handle, failures a student can act on, comparisons.

A check computes the expected value with ``reference`` *in the grader process*, asks the worker
for the student's value (plain data), and compares them in this order: type, then dtype and
shape, then values (then gradients).  Every failure is a :class:`CheckFailed` whose message says
which function, which input, what was expected and what came back, and, when the student's
value matches a known mistake, a hint that names it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch

from ..sandbox import protocol as P
from ..sandbox.host import Limits, Worker, WorkerFailure
from ..spec import Exercise


class CheckFailed(Exception):
    """A check that failed: ``kind`` is one of ``wrong``, ``notimpl``, ``error``, ``timeout``, ``crash``,
    ``memory``, ``output``, ``exit``, ``forbidden``, ``missing``, ``protocol``."""

    def __init__(self, message: str, kind: str = "wrong"):
        super().__init__(message)
        self.message, self.kind = message, kind

    def __str__(self) -> str:
        return self.message


def fail(message: str, kind: str = "wrong"):
    raise CheckFailed(message, kind)


# ----------------------------------------------------------------------------- grading context
@dataclass
class Context:
    """Set by :mod:`autograder.grading.runner` before pytest runs the checks."""

    files: dict[str, str]                    # exercise id -> path of the submitted file
    all_files: dict[str, str]                # file name -> path, copied next to each exercise
    limits: Limits = field(default_factory=Limits)
    static: dict[str, list] = field(default_factory=dict)   # exercise id -> scan findings
    workers: list = field(default_factory=list)


CONTEXT: Context | None = None


@dataclass(frozen=True)
class Fixture:
    """A reference to an object the worker builds itself (see :mod:`autograder.sandbox.fixtures`)."""

    name: str
    args: tuple = ()
    kwargs: tuple = ()

    def wire(self):
        return {"__t": "fixture", "name": self.name, "args": [wire(a) for a in self.args],
                "kwargs": {k: wire(v) for k, v in self.kwargs}}


def fx(name: str, *args, **kwargs) -> Fixture:
    return Fixture(name, args, tuple(sorted(kwargs.items())))


@dataclass(frozen=True)
class Handle:
    id: int
    label: str

    def wire(self):
        return {"__t": "handle", "id": self.id}


def wire(v):
    if isinstance(v, (Fixture, Handle)):
        return v.wire()
    if type(v) is list:
        return [wire(x) for x in v]
    if type(v) is tuple:
        return {"__t": "tuple", "items": [wire(x) for x in v]}
    if type(v) is dict:
        return {k: wire(x) for k, x in v.items()}
    if isinstance(v, torch.Tensor) and v.requires_grad:
        d = P.encode(v.detach())
        d["rg"] = True
        return d
    return P.encode(v)


class Submission:
    """The student's exercise module, reached through a worker process."""

    def __init__(self, exercise: Exercise, worker: Worker | None, missing: str | None = None,
                 refused: str | None = None):
        self.exercise, self.worker, self.missing, self.refused = exercise, worker, missing, refused
        self.timed_out: set[str] = set()
        self.last_stdout = ""
        self.test_output = ""

    # -------------------------------------------------------------- low level
    def _req(self, req: dict, what: str, timeout: float | None = None, allow_raise: bool = False):
        if self.missing:
            fail(self.missing, "missing")
        if self.refused:
            fail(self.refused, "forbidden")
        key = req.get("fn") or req.get("cls") or req.get("name") or ""
        if key in self.timed_out:
            fail(f"{what}: not run, because {key} timed out in an earlier check", "timeout")
        try:
            reply = self.worker.request(req, timeout)
        except WorkerFailure as f:
            if allow_raise and f.kind == "raised" and not (f.reply or {}).get("forbidden"):
                return Raised(f.reply.get("exc") or {})
            if f.kind == "timeout" and key:
                self.timed_out.add(key)
            if self.worker.load_error is f:
                what = f"importing {self.exercise.filename}"
            raise CheckFailed(self._explain(f, what), _KIND.get(f.kind, f.kind)) from None
        self.last_stdout = reply.stdout
        if reply.stdout:
            self.test_output = (self.test_output + reply.stdout)[-8000:]
        if reply.raw.get("forbidden"):
            fail(f"{what}: your code used {', '.join(reply.raw['forbidden'])}, which {self.exercise.id} forbids",
                 "forbidden")
        return reply

    def _explain(self, f: WorkerFailure, what: str) -> str:
        r = f.reply or {}
        if f.kind == "notimpl":
            name = what.split("(", 1)[0]
            return f"{name}: not implemented yet (NotImplementedError: {f.message})"
        if f.kind == "raised":
            exc = r.get("exc", {})
            where = ""
            frames = exc.get("frames") or []
            if frames and frames[-1].get("file"):
                fr = frames[-1]
                where = f" at {fr['file']} line {fr['line']} ({fr['func']}): {fr['code']}"
            events = r.get("events") or []
            refused = f" [sandbox refused: {'; '.join(events)}]" if events else ""
            return f"{what} raised {exc.get('type', 'an exception')}: {exc.get('msg', '')}{where}{refused}"
        if f.kind == "forbidden":
            return f"{what}: {f.message}"
        return f"{what}: {f.message}"

    # -------------------------------------------------------------- API for checks
    def call(self, fn: str, *args, _what: str | None = None, _timeout: float | None = None, _rng: bool = False,
             _attrs: list | None = None, **kwargs):
        """``fn(*args, **kwargs)`` in the worker; returns the decoded plain value."""
        return self.call_full(fn, *args, _what=_what, _timeout=_timeout, _rng=_rng, _attrs=_attrs, **kwargs).value

    def call_full(self, fn: str, *args, _what=None, _timeout=None, _rng=False, _attrs=None, _grad=None, **kwargs):
        what = f"{fn}({_what})" if _what else f"{fn}(...)"
        req = {"op": "call", "fn": fn, "args": wire(list(args)), "kwargs": {k: wire(v) for k, v in kwargs.items()}}
        if _rng:
            req["rng"] = True
        if _attrs:
            req["attrs"] = list(_attrs)
        if _grad is not None:
            req["grad"] = _grad
        if fn not in self.exercise.graded:
            raise ValueError(f"grader bug: {fn} is not graded in {self.exercise.id}")
        return self._req(req, what, _timeout)

    def call_grad(self, fn: str, *args, _what=None, _out_grad=None, _index=(), **kwargs):
        """Call with gradients: tensors in ``args`` with ``requires_grad`` become leaves in the worker.

        Returns ``(value, grads)``: ``grads`` lists the leaves' ``.grad`` in argument order after
        ``(out * out_grad).sum().backward()``.
        """
        grad = {"out_grad": None if _out_grad is None else P.encode(_out_grad), "index": list(_index)}
        reply = self.call_full(fn, *args, _what=_what, _grad=grad, **kwargs)
        if reply.raw.get("grad_error"):
            fail(f"{_what or fn}: gradient check: {reply.raw['grad_error']}")
        return reply.value, reply.grads

    def new(self, cls: str, *args, _what=None, **kwargs) -> Handle:
        h = Handle(self.worker.new_handle() if self.worker else 0, cls)
        self._req({"op": "new", "cls": cls, "id": h.id, "args": wire(list(args)),
                   "kwargs": {k: wire(v) for k, v in kwargs.items()}}, _what or f"{cls}(...)")
        return h

    def fixture(self, name: str, *args, _keep: bool = True, **kwargs):
        """Build a fixture in the worker: a :class:`Handle` (``_keep``) or its plain value."""
        spec = fx(name, *args, **kwargs).wire()
        # the grader's own code (the first torch.optim.SGD imports torch._dynamo: ~2 s of CPU, far more
        # on a loaded machine): a longer limit than the student's calls, within the per-student one
        limit = None if self.worker is None else max(3 * self.worker.limits.call_timeout, 30.0)
        if _keep:
            h = Handle(self.worker.new_handle() if self.worker else 0, name)
            self._req({"op": "fixture", "spec": spec, "id": h.id}, f"preparing {name}", limit)
            return h
        return self._req({"op": "fixture", "spec": spec}, f"reading {name}", limit).value

    def method(self, h: Handle, name: str, *args, _what=None, _grad=None, **kwargs):
        req = {"op": "method", "handle": h.id, "name": name, "args": wire(list(args)),
               "kwargs": {k: wire(v) for k, v in kwargs.items()}}
        if _grad is not None:
            req["grad"] = _grad
        reply = self._req(req, _what or f"{h.label}.{name}(...)")
        return reply

    def get(self, h: Handle, names: list[str], _what=None) -> dict:
        return self._req({"op": "get", "handle": h.id, "names": list(names)}, _what or f"reading {h.label}").value

    def set(self, h: Handle, values: dict, _what=None):
        self._req({"op": "set", "handle": h.id, "values": wire(values)}, _what or f"loading {h.label}'s parameters")


_KIND = {"raised": "error"}


@dataclass
class Raised:
    """The student's call raised: ``exc`` has ``type``, ``bases`` (builtin classes), ``msg``."""

    exc: dict


# ----------------------------------------------------------------------------- descriptions
def describe(x, limit: int = 60) -> str:
    """Short, readable description of an input or output for messages."""
    if isinstance(x, P.Rejected):
        return f"a {x.type_name} ({x.why})"
    if isinstance(x, torch.Tensor):
        if x.numel() <= 8:
            vals = ", ".join(_fmt(v) for v in x.flatten().tolist())
            return f"tensor([{vals}]{'' if x.dim() == 1 else f', shape {tuple(x.shape)}'}, {_dt(x.dtype)})"
        return f"a {_dt(x.dtype)} tensor of shape {tuple(x.shape)}"
    if isinstance(x, np.ndarray):
        return f"a numpy array of shape {x.shape}, dtype {x.dtype}"
    if isinstance(x, float):
        return _fmt(x)
    s = repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _dt(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.6g}"
    return repr(v)


def type_name(x) -> str:
    if isinstance(x, P.Rejected):
        return x.type_name
    if isinstance(x, torch.Tensor):
        return "torch.Tensor"
    if isinstance(x, np.ndarray):
        return "numpy.ndarray"
    if isinstance(x, np.generic):
        return f"numpy.{type(x).__name__}"
    return type(x).__name__


# ----------------------------------------------------------------------------- hints
# One copy of the hint logic, shared with the lessons: autograder/checks/mistakes.py.
from .mistakes import Hint, hint_for, matches as _matches  # noqa: E402,F401


# ----------------------------------------------------------------------------- comparisons
def check_tensor(got, expected: torch.Tensor, *, fn: str, what: str, rtol: float = 1e-4, atol: float = 1e-5,
                 hints=(), name: str = "the result", check_dtype: bool = True, shape_hints=()) -> None:
    """type -> dtype -> shape -> values; raises :class:`CheckFailed` with the first difference."""
    head = f"{fn}({what})"
    if isinstance(got, P.Rejected):
        fail(f"{head}: {name} is {got.type_name}, {got.why}; expected a torch.Tensor of shape "
             f"{tuple(expected.shape)}")
    if not isinstance(got, torch.Tensor):
        extra = " (convert with torch.from_numpy)" if isinstance(got, np.ndarray) else ""
        fail(f"{head}: {name} is a {type_name(got)}{extra}; expected a torch.Tensor of shape "
             f"{tuple(expected.shape)}, dtype {_dt(expected.dtype)}." + hint_for(got, hints))
    if check_dtype and got.dtype != expected.dtype:
        tip = ""
        if expected.dtype == torch.float32 and got.dtype == torch.float64:
            tip = " (a float64 tensor: did you build it from numpy or Python floats? keep the input's dtype)"
        elif expected.dtype.is_floating_point and not got.dtype.is_floating_point:
            tip = " (an integer tensor: did you build it with torch.zeros(..., dtype=torch.long) or from ints?)"
        elif expected.dtype == torch.int64 and got.dtype != torch.int64:
            tip = " (use dtype=torch.long)"
        fail(f"{head}: {name} has dtype {_dt(got.dtype)} / expected {_dt(expected.dtype)}{tip}."
             + hint_for(got, hints))
    if tuple(got.shape) != tuple(expected.shape):
        fail(f"{head}: {name} has the wrong shape: your shape {tuple(got.shape)} / expected "
             f"{tuple(expected.shape)}.{_shape_tip(tuple(got.shape), tuple(expected.shape))}"
             + hint_for(got, list(shape_hints) + list(hints)))
    _check_values(got, expected, head=head, name=name, rtol=rtol, atol=atol, hints=hints)


def _shape_tip(g: tuple, e: tuple) -> str:
    if len(g) != len(e):
        return f" (your result has {len(g)} dimensions, expected {len(e)})"
    if sorted(g) == sorted(e) and g != e:
        return " Your axes look swapped: check the layout in the docstring (transpose?)."
    diffs = [i for i, (a, b) in enumerate(zip(g, e)) if a != b]
    if len(diffs) == 1:
        i = diffs[0]
        if abs(g[i] - e[i]) == 1:
            return f" Dimension {i} is off by one ({g[i]} vs {e[i]}): check the +1 / -1 in its length formula."
        if g[i] == 2 * e[i]:
            return f" Dimension {i} is twice as long as expected: did you concatenate where you should sum?"
    return ""


def _check_values(got: torch.Tensor, expected: torch.Tensor, *, head, name, rtol, atol, hints):
    g = got.detach()
    e = expected.detach()
    if g.is_complex() or e.is_complex():
        g, e = torch.view_as_real(g.to(torch.complex128)), torch.view_as_real(e.to(torch.complex128))
    if not g.dtype.is_floating_point and not e.dtype.is_floating_point and not g.is_complex():
        bad = g.to(torch.int64) != e.to(torch.int64) if g.dtype != torch.bool else g != e
    else:
        g64, e64 = g.double(), e.double()
        nan_g, nan_e = torch.isnan(g64), torch.isnan(e64)
        both_inf = torch.isinf(g64) & torch.isinf(e64) & (torch.sign(g64) == torch.sign(e64))
        # an infinite expected value is matched only by the same infinity (rtol * inf would accept any number)
        close = ((g64 - e64).abs() <= atol + rtol * e64.abs()) & torch.isfinite(e64)
        bad = ~((nan_g & nan_e) | both_inf | (close & ~nan_g & ~nan_e))
    if not bool(bad.any()):
        return
    idx = tuple(int(i) for i in bad.nonzero()[0].tolist())
    n_bad, n = int(bad.sum()), bad.numel()
    gv, ev = got.detach()[idx].item() if got.dim() else got.item(), expected.detach()[idx].item() if expected.dim() else expected.item()
    where = f" at index {idx if len(idx) != 1 else idx[0]}" if got.dim() else ""
    msg = (f"{head}: {name} differs{where}: yours {_fmt(gv)}, expected {_fmt(ev)} "
           f"({n_bad} of {n} entries differ")
    if g.dtype.is_floating_point and e.dtype.is_floating_point:
        diff = (g.double() - e.double()).abs()
        finite = torch.isfinite(diff)
        if bool((bad & ~finite).any()):   # a NaN or an inf is never summarised as a small (or zero) difference
            gd = g.double()
            parts = [f"{int(n)} {k} in yours" for k, n in (("NaN", (bad & torch.isnan(gd)).sum()),
                                                            ("inf", (bad & torch.isinf(gd)).sum())) if n]
            n_exp = int((bad & torch.isfinite(gd) & ~torch.isfinite(e.double())).sum())
            parts += [f"{n_exp} finite in yours where the expected value is infinite"] if n_exp else []
            msg += f"; of them {', '.join(parts)}"
            if bool((bad & finite).any()):
                msg += f", max |difference| of the others {diff[bad & finite].max().item():.3g}"
        elif bool(finite.any()):
            msg += f"; max |difference| {diff[finite].max().item():.3g}"
    msg += ")."
    if bool(torch.isnan(g.double() if g.is_floating_point() else g.float()).any()) and not bool(
            torch.isnan(e.double() if e.is_floating_point() else e.float()).any()):
        msg += " Your result contains NaN (log of 0? 0/0? -inf - -inf?)."
    fail(msg + hint_for(got, hints))


def check_value(got, expected, *, fn: str, what: str, hints=(), name: str = "the result") -> None:
    """Exact comparison of ints, strings, lists/tuples of them: type, then length, then items."""
    head = f"{fn}({what})"
    if isinstance(got, P.Rejected):
        fail(f"{head}: {name} is {got.type_name}, {got.why}")
    exp_t = type(expected)
    if exp_t in (list, tuple):
        if type(got) is not exp_t:
            tip = " (call .tolist() on a tensor)" if isinstance(got, torch.Tensor) and exp_t is list else ""
            fail(f"{head}: {name} is a {type_name(got)}; expected a {exp_t.__name__}{tip}: {describe(expected)}."
                 + hint_for(got, hints))
        for i, (a, b) in enumerate(zip(got, expected)):
            if type(b) in (int, str, float, bool) and not _same_scalar_type(a, b):
                fail(f"{head}: item {i} of {name} is a {type_name(a)}; expected a {type(b).__name__} "
                     f"({describe(b)}){' (use int(...) or .tolist())' if isinstance(a, (torch.Tensor, np.generic)) else ''}.")
        if not _same(got, expected):
            first = next((i for i, (a, b) in enumerate(zip(got, expected)) if not _same(a, b)),
                         min(len(got), len(expected)))
            detail = ""
            if first < min(len(got), len(expected)):
                detail = f" first difference at index {first}: yours {describe(got[first])}, expected {describe(expected[first])};"
            elif len(got) != len(expected):
                detail = f" yours has {len(got)} items, expected {len(expected)};"
            fail(f"{head}:{detail} yours {describe(got, 120)} / expected {describe(expected, 120)}." + hint_for(got, hints))
        return
    if not _same_scalar_type(got, expected):
        tip = " (use int(...) / float(...) / .item())" if isinstance(got, (torch.Tensor, np.generic, np.ndarray)) else ""
        fail(f"{head}: {name} is a {type_name(got)}; expected a {exp_t.__name__}{tip}." + hint_for(got, hints))
    if not _same(got, expected):
        fail(f"{head}: yours {describe(got, 120)} / expected {describe(expected, 120)}." + hint_for(got, hints))


def _eq(a, b) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: BLE001
        return False


def _same(got, expected) -> bool:
    """``got == expected`` for plain data, item by item: a tensor or array where a number or a list
    is expected is simply not equal (never an "ambiguous truth value" error in the grader)."""
    if type(expected) in (list, tuple):
        return type(got) is type(expected) and len(got) == len(expected) and all(
            _same(a, b) for a, b in zip(got, expected))
    if type(expected) is dict:
        return type(got) is dict and got.keys() == expected.keys() and all(_same(got[k], expected[k]) for k in expected)
    if isinstance(got, (torch.Tensor, np.ndarray, P.Rejected, list, tuple, dict)) or isinstance(
            expected, (torch.Tensor, np.ndarray)):
        return False
    try:
        r = got == expected  # the scalars' own equality, as before (1 == 1.0, np.int64(3) == 3)
        return bool(r) if type(r) in (bool, np.bool_) else False
    except Exception:  # noqa: BLE001
        return False


def _same_scalar_type(a, b) -> bool:
    if type(b) is int:
        return type(a) is int
    if type(b) is float:
        return type(a) in (float, int)
    return type(a) is type(b)


def check_float(got, expected: float, *, fn: str, what: str, rtol: float = 1e-6, atol: float = 1e-9, hints=(),
                name: str = "the result", allow_tensor: bool = False) -> None:
    head = f"{fn}({what})"
    if isinstance(got, P.Rejected):
        fail(f"{head}: {name} is {got.type_name}, {got.why}; expected a float")
    if isinstance(got, torch.Tensor) and allow_tensor and got.numel() == 1:
        got = float(got.item())
    if isinstance(got, np.floating):
        got = float(got)
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        tip = " (use float(...) or .item())" if isinstance(got, (torch.Tensor, np.ndarray, np.generic)) else ""
        fail(f"{head}: {name} is a {type_name(got)}; expected a Python float{tip}." + hint_for(got, hints))
    got = float(got)
    if math.isnan(expected) and math.isnan(got):
        return
    if math.isinf(expected) and got == expected:
        return
    if math.isnan(got) or not math.isclose(got, expected, rel_tol=rtol, abs_tol=atol):
        fail(f"{head}: yours {_fmt(got)} / expected {_fmt(expected)}." + hint_for(got, hints, rtol=1e-4, atol=1e-7))


def check_raises(sub: Submission, fn: str, *args, exc: str = "ValueError", _what: str, **kwargs) -> None:
    """The contract says this input is a ``ValueError``: check that the student raises it."""
    req = {"op": "call", "fn": fn, "args": wire(list(args)), "kwargs": {k: wire(v) for k, v in kwargs.items()}}
    reply = sub._req(req, f"{fn}({_what})", allow_raise=True)
    if isinstance(reply, Raised):
        if exc in (reply.exc.get("bases") or []):
            return
        fail(f"{fn}({_what}) should raise {exc} (the contract says so), but it raised "
             f"{reply.exc.get('type')}: {reply.exc.get('msg', '')}")
    fail(f"{fn}({_what}) should raise {exc} (the contract says so), but it returned {describe(reply.value)}")


def seeded(seed: int) -> torch.Generator:
    """A private generator: every check draws its inputs from its own seed."""
    return torch.Generator().manual_seed(int(seed))
