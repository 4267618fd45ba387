"""Instructor solutions of the graded exercises (the source of ``exercises/``).

Each ``exNN_<topic>.py`` is self-contained: it imports only torch, numpy and the standard
library.  The parts students write are fenced with nbgrader's ``### BEGIN SOLUTION`` /
``### END SOLUTION`` markers; ``python -m autograder.generate`` turns this folder into
``exercises/`` by replacing each fenced region with a stub.
"""
