"""Mistake models: what classic mistakes produce, so a wrong answer can be named.

One registry serves both places a student meets a hint:

* the checks (``autograder/checks/test_exNN_*.py``) pass ``hints("ctc_collapse", ids, blank)`` to
  their comparisons, and the scoreboard says "Hint: you dropped the blanks before merging repeats";
* the lessons' "your turn" cells (``lessons/yourturn.py``) run the student's function on the
  lesson's examples and, on a mismatch, show the same hint.

A mistake model takes the graded function's own arguments and returns a list of
``(candidate, message)`` pairs; ``candidate`` is the value the mistake produces (or a zero-argument
callable computing it, so models that do not apply to an input can simply raise).  Models run in
the grader (or the lesson's kernel), never in the worker, and may use ``reference``.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np
import torch

Hint = tuple  # (candidate value or zero-argument callable returning it, message)

_REGISTRY: dict[str, Callable[..., list]] = {}


def mistakes_of(name: str):
    """Register ``fn(*args, **kwargs) -> [(candidate, message), ...]`` as the mistakes of ``name``."""
    def deco(fn):
        _REGISTRY[name] = fn
        return fn
    return deco


def hints(name: str, *args, **kwargs) -> list:
    """The mistake models of graded name ``name`` for this call (``[]`` when it has none)."""
    model = _REGISTRY.get(name)
    if model is None:
        return []
    try:
        return list(model(*args, **kwargs))
    except Exception:  # noqa: BLE001 - a model that cannot handle this input gives no hint
        return []


def registered() -> list[str]:
    return sorted(_REGISTRY)


def matches(got, candidate, rtol: float = 1e-3, atol: float = 1e-4) -> bool:
    """Does ``got`` equal what a mistake produced (tensors within tolerance, the rest exactly)?"""
    try:
        if isinstance(candidate, torch.Tensor):
            if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(candidate.shape):
                return False
            g, c = got.detach().double(), candidate.detach().double()
            return bool(torch.allclose(g, c, rtol=rtol, atol=atol, equal_nan=True))
        if isinstance(candidate, float) or isinstance(got, float):
            if not isinstance(got, (int, float, np.number)) or isinstance(got, bool):
                return False
            return math.isclose(float(got), float(candidate), rel_tol=max(rtol, 1e-9), abs_tol=atol)
        if isinstance(candidate, (list, tuple)) and isinstance(got, (list, tuple)):
            return len(got) == len(candidate) and all(matches(a, b, rtol, atol) for a, b in zip(got, candidate))
        return type(got) is type(candidate) and got == candidate
    except Exception:  # noqa: BLE001
        return False


def hint_message(got, hint_list: Iterable[Hint], rtol: float = 1e-3, atol: float = 1e-4) -> str | None:
    """The message of the first mistake whose value ``got`` equals, or ``None``."""
    for candidate, message in hint_list or ():
        try:
            value = candidate() if callable(candidate) else candidate
        except Exception:  # noqa: BLE001 - a mistake model that does not apply to this input
            continue
        if matches(got, value, rtol, atol):
            return message
    return None


def hint_for(got, hint_list: Iterable[Hint], rtol: float = 1e-3, atol: float = 1e-4) -> str:
    """``" Hint: <message>"`` for the first matching mistake, else ``""`` (appended to a failure)."""
    message = hint_message(got, hint_list, rtol, atol)
    return f" Hint: {message}" if message else ""


# ============================================================================ ex02
def _ids(ids):
    return ids.tolist() if isinstance(ids, torch.Tensor) else [int(i) for i in ids]


def _drop_then_merge(ids, blank=0):
    kept = [i for i in _ids(ids) if i != blank]
    return [x for k, x in enumerate(kept) if k == 0 or kept[k - 1] != x]


def _drop_only(ids, blank=0):
    return [i for i in _ids(ids) if i != blank]


def _merge_only(ids, blank=0):
    ids = _ids(ids)
    return [x for k, x in enumerate(ids) if k == 0 or ids[k - 1] != x]


@mistakes_of("ctc_collapse")
def _ctc_collapse_mistakes(ids, blank=0):
    return [
        (lambda: _drop_then_merge(ids, blank), "you dropped the blanks before merging repeats: merge first, "
                                               "then drop blanks (a _ a -> aa)"),
        (lambda: _drop_only(ids, blank), "you dropped blanks but did not merge repeated ids"),
        (lambda: _merge_only(ids, blank), "you merged repeats but did not drop the blanks"),
        (lambda: _merge_then_drop(ids, 0), f"you dropped id 0 instead of the blank argument (blank={blank})"),
    ]


def _merge_then_drop(ids, blank):
    merged = _merge_only(ids, blank)
    return [x for x in merged if x != blank]
