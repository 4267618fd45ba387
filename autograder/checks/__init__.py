"""One pytest module per exercise (``test_exNN_*.py``); run only through :mod:`autograder.grading.runner`."""
