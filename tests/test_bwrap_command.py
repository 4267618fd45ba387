"""The bwrap command line: the private /tmp is mounted before any bind, so a repository cloned under
/tmp (its venv bound into the sandbox) stays visible to the worker instead of being hidden by it."""
from __future__ import annotations

import pytest

from autograder.sandbox import bwrap


@pytest.mark.skipif(not bwrap.shutil.which("bwrap"), reason="bubblewrap is not installed")
def test_private_tmp_comes_before_every_bind():
    cmd = bwrap.command(["python", "-c", "pass"], submission="/tmp/some-student")
    tmpfs = cmd.index("--tmpfs")
    binds = [i for i, a in enumerate(cmd) if a in ("--ro-bind", "--bind", "--ro-bind-try")]
    assert binds and all(i > tmpfs for i in binds), cmd
    assert cmd[cmd.index("--tmpfs") + 1] == "/tmp"
