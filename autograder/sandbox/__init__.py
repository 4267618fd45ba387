"""The sandbox: where a submission's code runs, and the grader's side of it.

Grader side: ``host`` (``Worker``, ``Limits``: start, limit, talk to and restart a worker; check its
replies), ``zygote`` (the fork server's client), ``procs``, ``bwrap``, ``cgroup``.  Worker side (copied
to ``/opt/ag-worker`` in the sandbox, ``bwrap.WORKER_FILES``; no ``autograder`` import): ``worker``,
``worker_isolation``, ``worker_zygote``, ``protocol`` and ``fixtures`` (shared by both sides).
Imports ``autograder.spec`` only, never the grading core, the checks or the class tooling
(``tests/test_autograder_layout.py``; see README.md here).
"""
