"""The sandbox boundary on Linux: bubblewrap (``bwrap``) command lines for the worker processes.

A worker (or the zygote that forks one student's workers) runs as::

    bwrap --unshare-all --unshare-user --disable-userns --cap-drop ALL --die-with-parent --new-session
          --ro-bind <the Python runtime and its packages> ... --ro-bind <worker code> /opt/ag-worker/...
          --ro-bind <a copy of the student's files> /submission --tmpfs /tmp --proc /proc --dev /dev
          -- python -I -B /opt/ag-worker/worker.py ...

so it has its own mount, PID, network, IPC, UTS, cgroup and user namespaces, no capabilities, no
network, a private ``/tmp`` (the only writable place), and sees the Python installation
read-only but **not** this repository: neither ``reference/`` nor ``solutions/`` nor
``autograder/`` exist in its file system.  When the namespace's first process dies, the kernel
kills every process left in it (a double-forked daemon included), and ``--die-with-parent`` ties
that to the grader.

``AUTOGRADER_SANDBOX`` picks the mode: ``auto`` (default: bwrap when it works, else ``process``),
``bwrap`` (required: an error when bwrap does not work) or ``off`` (``process``: the in-process
isolation of ``worker_isolation.py`` only).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))

#: Worker-side code (no ``autograder`` import in any of them), bound read-only at :data:`WORKER_DIR`.
WORKER_FILES = ("worker.py", "worker_isolation.py", "worker_zygote.py", "protocol.py", "fixtures.py")
WORKER_DIR = "/opt/ag-worker"
SUBMISSION_DIR = "/submission"
TMP_BYTES = 512 * 1024 * 1024  # the private /tmp (memory-backed)

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap)"

_PROBE: tuple[bool, str] | None = None
_HELP: dict[str, str] = {}


class SandboxUnavailable(Exception):
    """``AUTOGRADER_SANDBOX=bwrap`` (or ``batch`` without ``--no-sandbox``) but bwrap does not work here."""


def requested(value: str | None = None) -> str:
    """The requested mode: ``auto``, ``bwrap`` or ``off`` (from ``AUTOGRADER_SANDBOX`` by default)."""
    v = (os.environ.get("AUTOGRADER_SANDBOX", "auto") if value is None else value).strip().lower() or "auto"
    if v in ("process", "none", "0", "no"):
        v = "off"
    if v not in ("auto", "bwrap", "off"):
        raise ValueError(f"AUTOGRADER_SANDBOX must be auto, bwrap or off (got {v!r})")
    return v


def runtime_dirs() -> list[str]:
    """The Python installation and its packages (real paths), bound read-only in the sandbox."""
    dirs = set()
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        dirs.add(os.path.realpath(p))
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            dirs.add(os.path.realpath(sysconfig.get_path(key)))
        except KeyError:
            pass
    exe = os.path.realpath(sys.executable)
    if not any(exe.startswith(d + os.sep) for d in dirs):
        dirs.add(os.path.dirname(exe))
    out = []
    for d in sorted(dirs, key=len):  # drop folders already inside another one
        if os.path.isdir(d) and not any(d == o or d.startswith(o + os.sep) for o in out):
            out.append(d)
    return out


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/lib", "/lib64", "/lib32", "/bin", "/sbin"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
              "/sys/devices/system/cpu"):
        args += ["--ro-bind-try", f, f]
    return args


def _python_binds() -> list[str]:
    args: list[str] = []
    for d in runtime_dirs():
        if d == ROOT or d.startswith(ROOT + os.sep) and not _is_venv(d):
            raise SandboxUnavailable(f"the Python installation {d} lies inside the repository {ROOT}: "
                                     "the sandbox could not hide reference/ and solutions/ from it")
        if ROOT.startswith(d + os.sep):
            raise SandboxUnavailable(f"the repository {ROOT} lies inside the Python installation {d}: "
                                     "the sandbox could not hide reference/ and solutions/ from it")
        if d.startswith("/usr/") or d == "/usr":
            continue  # already bound
        args += ["--ro-bind", d, d]
    # a venv's bin/python is a symlink to the base interpreter: bind the link's folder too
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    if not any(venv_bin == d or venv_bin.startswith(d + os.sep) for d in runtime_dirs()):
        args += ["--ro-bind", venv_bin, venv_bin]
    return args


def _is_venv(d: str) -> bool:
    """A virtual environment (``pyvenv.cfg``) inside the repository is bound alone, never the repository."""
    probe = d
    while probe.startswith(ROOT + os.sep):
        if os.path.isfile(os.path.join(probe, "pyvenv.cfg")):
            return True
        probe = os.path.dirname(probe)
    return False


def _supports(exe: str, option: str) -> bool:
    """Whether this bwrap knows ``option`` (``--disable-userns`` needs 0.8, ``--size`` 0.6.2)."""
    if exe not in _HELP:
        try:
            _HELP[exe] = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            _HELP[exe] = ""
    return option in _HELP[exe]


def command(argv: list[str], submission: str | None = None) -> list[str]:
    """``bwrap ... -- argv``: ``argv[0]`` is a path inside the sandbox (the same Python as here)."""
    exe = shutil.which("bwrap")
    if exe is None:
        raise SandboxUnavailable(f"bwrap is not installed; {INSTALL_HINT}")
    args = [exe, "--unshare-all", "--unshare-user"]
    if _supports(exe, "--disable-userns"):  # no nested user namespace (and so no capability) inside
        args.append("--disable-userns")
    args += ["--cap-drop", "ALL", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    # the private /tmp first: binds below may lie under /tmp (a clone and its venv in /tmp/...), and a
    # tmpfs mounted after them would hide them
    if _supports(exe, "--size"):
        args += ["--size", str(TMP_BYTES)]
    args += ["--tmpfs", "/tmp"]
    args += _system_binds() + _python_binds()
    args += ["--proc", "/proc", "--dev", "/dev"]
    for name in WORKER_FILES:
        args += ["--ro-bind", os.path.join(HERE, name), f"{WORKER_DIR}/{name}"]
    if submission is not None:
        args += ["--ro-bind", submission, SUBMISSION_DIR]
    args += ["--chdir", "/tmp", "--"]
    return args + list(argv)


def worker_script() -> str:
    return f"{WORKER_DIR}/worker.py"


def probe() -> tuple[bool, str]:
    """(works, why not): runs ``python -c pass`` in the sandbox once per process (cached)."""
    global _PROBE
    if _PROBE is not None:
        return _PROBE
    if not sys.platform.startswith("linux"):
        _PROBE = (False, f"bwrap needs Linux (this is {sys.platform})")
        return _PROBE
    try:
        cmd = command([sys.executable, "-I", "-S", "-c",
                       "import os; assert not os.path.exists(%r)" % os.path.join(ROOT, "reference")])
    except SandboxUnavailable as e:
        _PROBE = (False, str(e))
        return _PROBE
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        _PROBE = (False, f"bwrap could not start: {e}")
        return _PROBE
    if res.returncode != 0:
        _PROBE = (False, "bwrap is installed but could not build the sandbox here: "
                         + (res.stderr.strip().splitlines() or ["?"])[-1][:300])
    else:
        _PROBE = (True, "")
    return _PROBE


def mode(value: str | None = None) -> str:
    """The mode grading will use: ``bwrap`` or ``process``.  Raises :class:`SandboxUnavailable`
    when bwrap was required (``AUTOGRADER_SANDBOX=bwrap``) and does not work."""
    req = requested(value)
    if req == "off":
        return "process"
    ok, why = probe()
    if ok:
        return "bwrap"
    if req == "bwrap":
        raise SandboxUnavailable(f"AUTOGRADER_SANDBOX=bwrap, but {why}")
    return "process"


def off_notice() -> str:
    """The one line a student sees when grading runs without the sandbox."""
    req = requested()
    if req == "off":
        return "note: sandbox off (AUTOGRADER_SANDBOX=off): your code runs with in-process isolation only"
    _, why = probe()
    return (f"note: sandbox off ({why or 'bwrap unavailable'}): your code runs with in-process isolation only; "
            f"for the real boundary {INSTALL_HINT}" if "install" not in why else
            f"note: sandbox off ({why}): your code runs with in-process isolation only")
