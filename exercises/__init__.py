"""Graded exercises of the Deep Speech 2 course, one file per exercise (see ``README.md``).

Fill in the stubs marked ``# YOUR CODE HERE`` in each ``exNN_<topic>.py`` and grade
yourself with ``make grade ONLY=exNN`` (or ``python -m autograder --only exNN``).
"""
