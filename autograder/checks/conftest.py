"""Fixtures of the grading checks: ``sub``, the submission's exercise reached through a worker."""
from __future__ import annotations

import pytest

from autograder.sandbox import Worker
from autograder.spec import EXERCISES
from autograder.checks import _support as S


def _exercise_of(node) -> str:
    mark = node.get_closest_marker("exercise")
    if mark is None:
        raise RuntimeError(f"{node.name} has no pytest.mark.exercise")
    return mark.args[0]


@pytest.fixture(scope="module")
def sub(request):
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
    worker = Worker(ex, ctx.all_files, ctx.limits)
    ctx.workers.append(worker)
    try:
        yield S.Submission(ex, worker)
    finally:
        worker.stop()
