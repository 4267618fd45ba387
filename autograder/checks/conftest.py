"""Fixtures of the grading checks: ``sub``, the submission's exercise reached through a worker.

Public and hidden checks never share a worker: a hidden check's inputs live only in a worker of
the hidden checks, which starts after every public check of the submission has run (the runner
orders them so), so no later public check can print what a hidden check sent.
"""
from __future__ import annotations

import pytest

from autograder.sandbox.host import Worker
from autograder.spec import EXERCISES
from autograder.checks import _support as S


def _exercise_of(node) -> str:
    mark = node.get_closest_marker("exercise")
    if mark is None:
        raise RuntimeError(f"{node.name} has no pytest.mark.exercise")
    return mark.args[0]


def _submission(request, hidden: bool = False):
    ctx = S.CONTEXT
    if ctx is None:
        pytest.fail("the checks run only through `python -m autograder` (no grading context)", pytrace=False)
    ex = EXERCISES[_exercise_of(request.node)]
    path = ctx.files.get(ex.id)
    if path is None:
        yield S.Submission(ex, None, missing=f"no {ex.id} file in the submission (expected {ex.filename})")
        return
    findings = [f for f in ctx.static.get(ex.id, []) if "syntax error" not in f.what]
    if findings:
        listed = "; ".join(str(f) for f in findings[:5])
        yield S.Submission(ex, None, refused=f"{ex.filename} uses what {ex.id} forbids ({listed}); "
                                              "remove it to be graded")
        return
    if hidden:  # every public check has run: what the public worker left running (threads, children) goes
        for other in ctx.workers:  # with it, so it is not counted against this one (RLIMIT_NPROC is per user)
            if other.exercise.id == ex.id:
                other.stop()
    worker = Worker(ex, ctx.all_files, ctx.limits)
    ctx.workers.append(worker)
    try:
        yield S.Submission(ex, worker)
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def public_sub(request):
    yield from _submission(request)


@pytest.fixture(scope="module")
def hidden_sub(request):
    yield from _submission(request, hidden=True)


@pytest.fixture
def sub(request):
    """The exercise's public worker, or for a ``@pytest.mark.hidden`` check its hidden one."""
    hidden = request.node.get_closest_marker("hidden") is not None
    return request.getfixturevalue("hidden_sub" if hidden else "public_sub")
