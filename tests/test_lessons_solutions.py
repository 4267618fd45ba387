"""Every lesson with an exercise, executed with ``solutions/`` in the student's place: each "your
turn" cell agrees with the reference, and the lesson goes on with the student's code (lessons 09-11:
the model trains from the student's pieces).  The stubs pass is in ``tests/test_lessons.py``."""
from __future__ import annotations

import pytest

from tests.test_lessons import PATHS, check_lesson_run

RUNS = [p for p in PATHS if p.name[:2] != "00"]


@pytest.mark.slow
@pytest.mark.timeout(1800)       # lesson 11 trains the student's model for 800 steps: minutes on one core
@pytest.mark.parametrize("path", RUNS, ids=[f"{p.stem}-solutions" for p in RUNS])
def test_lesson_executes_with_the_solutions(path, capsys):
    check_lesson_run(path, "solutions", capsys)
