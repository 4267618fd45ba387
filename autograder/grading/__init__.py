"""The grading core: run the checks on one submission and report the result.

``runner`` (pytest over ``autograder/checks``, the results), ``scan`` (the static scan), ``report``
(scoreboard, JSON, Gradescope's ``results.json``), ``visibility`` (hidden or public, read from the
checks' source), ``handin`` (hand-in zips and their manifest), ``gradeone`` (one student's files,
found and graded).  Imports ``autograder.spec``, ``autograder.sandbox`` and ``autograder.checks``,
never ``autograder.classroom`` (``tests/test_autograder_layout.py``; see README.md here).
"""
