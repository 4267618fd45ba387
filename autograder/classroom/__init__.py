"""Class tooling for instructors: a whole class, its LMS and its release.

``batch`` (a class folder into a CSV), ``late``, ``feedback``, ``release`` (the student release),
``gradescope/``, ``nbgrader`` (an nbgrader course), ``similarity``.  Not shipped to students.  May
import every other part of ``autograder``; nothing below it imports it
(``tests/test_autograder_layout.py``; see README.md here).
"""
