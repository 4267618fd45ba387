"""The course autograder: grades exercise files against ``reference/`` in a sandboxed worker.

See ``autograder/README.md`` (usage and threat model) and ``python -m autograder --help``.
"""
from .spec import EXERCISES, TOTAL_POINTS

__all__ = ["EXERCISES", "TOTAL_POINTS", "grade"]


def grade(paths, only=None, limits=None):
    """Grade exercise files or folders; returns a :class:`autograder.grading.runner.Report`."""
    from .grading.runner import grade as _grade

    return _grade(list(paths), only=only, limits=limits)
