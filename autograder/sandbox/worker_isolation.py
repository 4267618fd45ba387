"""The worker's in-process isolation: the second line of defence, inside the worker's own interpreter.

With ``AUTOGRADER_SANDBOX=bwrap`` (the default where bubblewrap works) the worker already runs in
its own namespaces without the course's sources (see ``bwrap.py``); this layer is what remains
where bwrap is missing, and a second line where it is not.  It is not a security boundary
against code that shares the interpreter (see ``autograder/README.md``).

Loaded by file path (``_agw_isolation``), never as ``autograder.sandbox.worker_isolation``: it imports only
the standard library (and torch, handed in).  Its rules live in closures built by
:func:`install_guards`, not in module globals, so rebinding this module's names changes nothing.
"""
from __future__ import annotations

import importlib
import importlib.abc
import io
import os
import signal
import sys
import threading
import time

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None

#: What the sandbox refused since the last reply (forbidden calls, file access, ...), and the
#: forbidden calls and imports attempted.  The request loop holds these same list objects.
EVENTS: list[str] = []
FORBIDDEN_HITS: list[str] = []


class ForbiddenCall(BaseException):
    """Raised by a forbidden function.  A BaseException, so ``except Exception`` does not hide it."""


def set_limit(which, value) -> None:
    if resource is None or value is None:
        return
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass


def die_with_parent(parent: int) -> None:
    """Linux: SIGKILL when the parent dies, even while stuck in native code."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001
            pass
    if os.getppid() != parent:
        os._exit(70)


def close_fds_except(keep) -> None:
    keep = sorted(set(keep))
    try:
        open_fds = sorted(int(f) for f in os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"))
    except OSError:
        open_fds = None
    if open_fds is None:
        lo = 0
        for k in keep + [65536]:
            os.closerange(lo, k)
            lo = k + 1
        return
    for fd in open_fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


class Process:
    """What :func:`isolate` set up: the protocol descriptors, the sandbox folder, the output log."""

    def __init__(self, sandbox: str, req_fd: int, resp_fd: int, log_path: str, log_fd: int):
        self.sandbox, self.req_fd, self.resp_fd, self.log_path, self.log_fd = sandbox, req_fd, resp_fd, log_path, log_fd
        self.log_offset = 0
        self.tmpfs = False  # the folder is a tmpfs of the worker's own (see private_tmpfs)

    def new_output(self, limit: int = 4000) -> str:
        """What the student's code printed since the last call (at most ``limit`` characters)."""
        try:
            size = os.fstat(self.log_fd).st_size
            data = os.pread(self.log_fd, limit + 1, self.log_offset) if size > self.log_offset else b""
        except OSError:
            return ""
        self.log_offset = size
        text = data[:limit].decode("utf-8", errors="replace")
        if len(data) > limit:
            text += "\n[... output truncated]"
        return text


def _make_sandbox(config: dict) -> str:
    """The worker's folder.  In bwrap (``source`` given) a fresh folder in the private /tmp,
    holding a copy of the read-only submission's exercise files; otherwise the grader's folder."""
    if "source" not in config:
        return os.path.realpath(config["sandbox"])
    import tempfile

    path = os.path.realpath(tempfile.mkdtemp(prefix=f"{config.get('exercise', 'ex')}-", dir="/tmp"))
    src = config["source"]
    for name in config.get("files", []):
        if "/" in name or name.startswith("."):
            continue
        fd = os.open(os.path.join(src, name), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f, open(os.path.join(path, name), "wb") as out:
            out.write(f.read())
    return path


def private_tmpfs(path: str, size: int) -> bool:
    """Without bwrap, as root on Linux: a mount namespace of this worker's own and a tmpfs of ``size``
    bytes over its folder (the files the grader put there copied onto it), so the kernel bounds what
    any process writes there (ENOSPC past it); the mount goes with the worker's last process, whatever
    kills it.  False where that cannot be done (not root, ``AUTOGRADER_WORKER_TMPFS=off`` in the
    grader): the grader then polls the folder's size."""
    if not sys.platform.startswith("linux") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        files = {}
        for name in os.listdir(path):
            full = os.path.join(path, name)
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as f:
                    files[name] = f.read()
        if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
            return False
        if libc.mount(b"none", b"/", None, 16384 | (1 << 18), None) != 0:  # MS_REC | MS_PRIVATE: nothing leaks out
            return False
        opts = f"size={int(size)},nr_inodes=1024,mode=0700".encode()
        if libc.mount(b"autograder-worker", os.fsencode(path), b"tmpfs", 2 | 4, opts) != 0:  # MS_NOSUID | MS_NODEV
            return False
        for name, data in files.items():
            with open(os.path.join(path, name), "wb") as f:
                f.write(data)
        return True
    except (OSError, AttributeError):
        return False


def isolate(config: dict, req_fd: int | None, resp_fd: int | None, parent: int) -> Process:
    """Own session (forked), sandbox cwd, private protocol descriptors, capped output, die with parent.

    ``req_fd``/``resp_fd`` None: spawned (the protocol is on stdin/stdout).
    """
    forked = req_fd is not None
    if forked:
        os.setsid()  # own session and process group: the grader kills it with killpg
        close_fds_except({0, 1, 2, req_fd, resp_fd})  # the zygote's control socket included
    else:
        req_fd, resp_fd = os.dup(0), os.dup(1)
    sandbox = _make_sandbox(config)
    tmpfs = "source" not in config and bool(config.get("tmpfs")) and \
        private_tmpfs(sandbox, int(config.get("disk_bytes", 64 * 1024 ** 2)))
    os.chdir(sandbox)
    os.environ["HOME"] = os.environ["TMPDIR"] = sandbox
    _null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(_null, 0)
    os.close(_null)
    log_path = os.path.join(sandbox, ".output.log")
    _log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(_log, 1)
    os.dup2(_log, 2)
    os.close(_log)
    log_fd = os.open(log_path, os.O_RDONLY)
    for _fd in (req_fd, resp_fd, log_fd):
        os.set_inheritable(_fd, False)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="replace",
                                  line_buffering=True, write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="replace",
                                  line_buffering=True, write_through=True)

    if resource is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-long write fails with EFBIG instead of killing us
        set_limit(resource.RLIMIT_CORE, 0)
        set_limit(resource.RLIMIT_FSIZE, int(config.get("fsize_bytes", 2 * 1024 * 1024)))
        if config.get("nproc"):  # no cgroup: processes and threads of the grading user (not root)
            set_limit(resource.RLIMIT_NPROC, int(config["nproc"]))
    die_with_parent(parent)

    def _watch_parent():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(70)

    threading.Thread(target=_watch_parent, daemon=True, name="autograder-parent-watch").start()
    proc = Process(sandbox, req_fd, resp_fd, log_path, log_fd)
    proc.tmpfs = tmpfs
    return proc


def prepare_torch(torch, mem_bytes: int) -> None:
    """One thread, a warm-up (before the audit hook), then the address-space cap."""
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    # Warm up lazily initialised torch machinery before the audit hook is on.
    _x = torch.randn(8, 8, requires_grad=True)
    (torch.fft.rfft(_x.detach(), dim=-1).abs().sum() + (_x @ _x).logsumexp(0).sum()).backward()
    del _x
    if resource is not None and sys.platform.startswith("linux"):
        set_limit(resource.RLIMIT_AS, int(mem_bytes))


# ----------------------------------------------------------------------------- forbidden calls
def install_stubs(torch, exercise: str, forbidden_calls) -> None:
    """Replace each forbidden call by a stub that refuses (and records the attempt).

    ``torch.ops.aten.<op>`` names are also refused when looked up afresh (``getattr`` on the
    namespace, ``torch._C._jit_get_operation('aten::<op>')``), not only through the cached attribute.
    """
    def message(dotted):
        return f"{exercise} forbids {dotted}: write it yourself (see the exercise's docstring)"

    def refuser(dotted: str):
        def refuse(*args, **kwargs):
            FORBIDDEN_HITS.append(dotted)
            raise ForbiddenCall(message(dotted))

        refuse.__name__ = dotted.rsplit(".", 1)[-1]
        return refuse

    def refusing_class(dotted: str):
        def __init__(self, *args, **kwargs):
            FORBIDDEN_HITS.append(dotted)
            raise ForbiddenCall(message(dotted))

        return type(dotted.rsplit(".", 1)[-1], (torch.nn.Module,), {"__init__": __init__})

    aten_ops = {}
    for dotted in forbidden_calls:
        if dotted.startswith("torch.ops.aten."):
            aten_ops[dotted.rsplit(".", 1)[1]] = dotted
        owner_path, _, attr = dotted.rpartition(".")
        obj = None
        try:
            obj = importlib.import_module(owner_path)
        except ImportError:
            parts = owner_path.split(".")
            try:
                obj = importlib.import_module(parts[0])
                for p in parts[1:]:
                    obj = getattr(obj, p)
            except (ImportError, AttributeError):
                obj = None
        try:
            if obj is None or not hasattr(obj, attr):
                continue
        except Exception:  # noqa: BLE001 - e.g. an op namespace that refuses the name
            continue
        orig = getattr(obj, attr)
        stub = refusing_class(dotted) if isinstance(orig, type) else refuser(dotted)
        try:
            setattr(obj, attr, stub)
        except (AttributeError, TypeError):
            pass
    if not aten_ops:
        return
    ops_mod = sys.modules.get("torch._ops")
    if ops_mod is not None and hasattr(ops_mod, "_OpNamespace"):
        orig_getattr = ops_mod._OpNamespace.__getattr__

        def guarded_getattr(self, op_name, _orig=orig_getattr):
            if getattr(self, "name", "") == "aten" and op_name in aten_ops:
                return refuser(aten_ops[op_name])
            return _orig(self, op_name)

        ops_mod._OpNamespace.__getattr__ = guarded_getattr
    for fname in ("_jit_get_operation", "_get_operation_overload", "_get_schema"):
        orig = getattr(torch._C, fname, None)
        if orig is None:
            continue

        def guarded(name, *args, _orig=orig, **kwargs):
            s = str(name)
            if s.startswith("aten::") and s[6:].split(".")[0] in aten_ops:
                return refuser(aten_ops[s[6:].split(".")[0]])(name)
            return _orig(name, *args, **kwargs)

        try:
            setattr(torch._C, fname, guarded)
        except (AttributeError, TypeError):
            pass


# ----------------------------------------------------------------------------- imports and the audit hook
REFUSED_EVENTS = {
    "subprocess.Popen": "starting a process", "os.system": "running a shell command", "os.exec": "exec",
    "os.posix_spawn": "starting a process", "os.spawn": "starting a process", "os.fork": "forking",
    "os.forkpty": "forking", "os.kill": "sending a signal", "os.killpg": "sending a signal", "pty.spawn": "a pty",
    "ctypes.dlopen": "loading a native library", "ctypes.dlsym": "native symbols", "ctypes.cdata": "raw memory",
    "ctypes.call_function": "calling native code", "ctypes.addressof": "raw memory",
    "sys.addaudithook": "adding an audit hook", "resource.setrlimit": "changing resource limits",
    "resource.prlimit": "changing resource limits", "gc.get_objects": "walking the heap",
    "gc.get_referrers": "walking the heap", "gc.get_referents": "walking the heap",
    "sys._current_frames": "inspecting other threads", "os.setuid": "changing user", "os.chroot": "chroot",
    "webbrowser.open": "opening a browser", "urllib.Request": "network access", "http.client.connect": "network access",
    "ftplib.connect": "network access", "smtplib.connect": "network access", "os.startfile": "starting a process",
    "winreg.OpenKey": "the registry", "shutil.chown": "changing owners", "os.chown": "changing owners",
}
PATH_WRITE_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.truncate", "os.link",
                     "os.symlink", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile", "shutil.copytree",
                     "os.removexattr", "os.setxattr"}
PATH_READ_EVENTS = {"os.listdir", "os.scandir", "glob.glob", "glob.glob/2", "os.listxattr", "os.getxattr",
                    "tempfile.mkstemp", "tempfile.mkdtemp"}
MAX_FILES = 256  # files and folders a worker may create in its folder (each file at most RLIMIT_FSIZE)
READ_FILES = frozenset({"/dev/null", "/dev/urandom", "/dev/random", "/etc/localtime"})
READ_PREFIXES_OS = ("/proc/self/", "/sys/devices/system/cpu/", "/sys/fs/cgroup/", "/proc/cpuinfo", "/proc/meminfo")


def _path_of(arg):
    if isinstance(arg, int):
        return None
    if isinstance(arg, bytes):
        arg = os.fsdecode(arg)
    if not isinstance(arg, str):
        try:
            arg = os.fspath(arg)
        except TypeError:
            return None
        if isinstance(arg, bytes):
            arg = os.fsdecode(arg)
    return os.path.realpath(arg)


def install_guards(exercise: str, sandbox: str, blocked_modules) -> None:
    """The import blocker, the audit hook and the ``mknod``/``mkfifo``/``sqlite3`` guards.

    Every rule below is a local of this call, captured by the hook's closure: rebinding module
    globals (``sys.modules['_agw_isolation'].X = ...``) does not change what is allowed.
    """
    blocked = tuple(blocked_modules) + ("reference", "solutions", "autograder")
    events, hits = EVENTS, FORBIDDEN_HITS

    def is_blocked(name: str) -> str | None:
        for b in blocked:
            if name == b or name.startswith(b + "."):
                return b
        return None

    def refuse_import(fullname, b):
        msg = f"importing {fullname} is not allowed in {exercise}"
        if b in ("reference", "solutions", "autograder"):
            msg += " (the answers live there)"
        else:
            msg += " (this exercise asks you to write it yourself)"
        note = f"refused import: {fullname}"
        if note not in events:
            events.append(note)
        hits.append(f"import {fullname}")
        raise ImportError(msg)

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            b = is_blocked(fullname)
            if b:
                refuse_import(fullname, b)
            return None

    for name in list(sys.modules):  # nothing of the grader's packages may be reachable via sys.modules
        if is_blocked(name):
            del sys.modules[name]
    sys.meta_path.insert(0, Blocker())

    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    site_dirs = set()
    for p in sys.path:
        if not p:
            continue
        rp = os.path.realpath(p)
        if any(rp == pre or rp.startswith(pre + os.sep) for pre in prefixes):
            site_dirs.add(rp)
    # The student's directory first; then only the Python installation (no checkout, no cwd).
    sys.path[:] = [sandbox] + [p for p in sys.path if p and os.path.realpath(p) in site_dirs]
    sys.path_importer_cache.clear()
    read_roots = tuple(sorted(prefixes | site_dirs | {sandbox}))
    write_roots = (sandbox,)
    refused_events, write_events, read_events = dict(REFUSED_EVENTS), frozenset(PATH_WRITE_EVENTS), \
        frozenset(PATH_READ_EVENTS)
    in_hook = threading.local()
    created: set = set()

    def under(path: str, roots) -> bool:
        return any(path == r or path.startswith(r + os.sep) for r in roots)

    def may_read(path: str) -> bool:
        return path in READ_FILES or under(path, read_roots) or path.startswith(READ_PREFIXES_OS)

    def refuse(note: str, exc=PermissionError):
        if note not in events and len(events) < 50:
            events.append(note)
        raise exc(f"autograder sandbox: {note} is not allowed")

    def count_new(path: str, n: int = 1) -> None:
        """A file or folder about to be created in the worker's folder: at most MAX_FILES of them, each
        file under RLIMIT_FSIZE (the grader also bounds the folder's bytes in all, see sandbox.py)."""
        if path in created or os.path.lexists(path):
            return
        if len(created) + n > MAX_FILES:
            refuse(f"creating more than {MAX_FILES} files (creating {path})")
        created.add(path)
        for i in range(1, n):  # what sqlite creates next to a database: its journal, WAL and shared memory
            created.add(f"{path}\0{i}")

    def check_create(path, what):
        p = _path_of(path)
        if p is not None and not under(p, write_roots):
            refuse(f"{what} {p}")

    def audit(event, args):
        if getattr(in_hook, "on", False):
            return
        in_hook.on = True
        try:
            if event == "open":
                path = _path_of(args[0])
                if path is None:
                    return
                mode, flags = args[1], args[2]
                writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
                if writing:
                    if not (path == "/dev/null" or under(path, write_roots)):
                        refuse(f"writing {path}")
                    if path != "/dev/null":
                        count_new(path)
                elif not may_read(path):
                    refuse(f"reading {path}")
            elif event == "import":
                b = is_blocked(str(args[0]))
                if b:
                    refuse_import(str(args[0]), b)
            elif event == "sqlite3.connect":
                db = args[0] if args else ""
                db = os.fsdecode(db) if isinstance(db, bytes) else str(db)
                if db not in ("", ":memory:"):
                    if db.startswith("file:"):
                        db = db[5:].split("?", 1)[0] or ":memory:"
                    if db != ":memory:":
                        check_create(db, "creating a database at")
                        count_new(os.path.realpath(db), 4)
            elif event == "sqlite3.connect/handle":
                try:  # ATTACH DATABASE would create files without an audit event: no attached databases
                    import sqlite3

                    args[0].setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
                except Exception:  # noqa: BLE001
                    refuse("sqlite3 without a limit on ATTACH")
            elif event in refused_events or event.startswith("socket."):
                refuse(f"{refused_events.get(event, 'network access')} ({event})")
            elif event in write_events:
                for a in args[:2]:
                    p = _path_of(a) if isinstance(a, (str, bytes, os.PathLike)) else None
                    if p is not None and not under(p, write_roots):
                        refuse(f"{event} on {p}")
                if event in ("os.mkdir", "os.link", "os.symlink") and len(args) > 1:
                    new = args[0] if event == "os.mkdir" else args[1]
                    p = _path_of(new) if isinstance(new, (str, bytes, os.PathLike)) else None
                    if p is not None:
                        count_new(p)
            elif event in read_events:
                a = args[0] if args else None
                p = _path_of(a) if isinstance(a, (str, bytes, os.PathLike)) else None
                if p is not None and not may_read(p):
                    refuse(f"listing {p}")
        finally:
            in_hook.on = False

    # os.mknod and os.mkfifo create files without an audit event: wrapped here.
    import posix

    for name in ("mknod", "mkfifo"):
        orig = getattr(os, name, None)
        if orig is None:
            continue

        def guarded(path, *args, _orig=orig, _name=name, **kwargs):
            if kwargs.get("dir_fd") is not None:
                refuse(f"os.{_name} with dir_fd")
            check_create(path, f"os.{_name} at")
            return _orig(path, *args, **kwargs)

        guarded.__name__ = name
        setattr(os, name, guarded)
        setattr(posix, name, guarded)
    sys.addaudithook(audit)


# ----------------------------------------------------------------------------- main blocks and kernels
def is_main_guard(test) -> bool:
    """``__name__ == "__main__"`` (either side): the test of a student's own experiment block.
    ``autograder/grading/scan.py`` uses it too, to skip the blocks the worker never runs."""
    import ast

    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
            and len(test.comparators) == 1):
        return False
    a, b = test.left, test.comparators[0]
    return any(isinstance(x, ast.Name) and x.id == "__name__" and isinstance(y, ast.Constant) and y.value == "__main__"
               for x, y in ((a, b), (b, a)))


def install_main_stripper(sandbox: str) -> None:
    """The submission's modules are compiled without their ``if __name__ == "__main__":`` blocks.

    The static scan does not look inside those blocks (they are a student's own experiments), so
    they must never run while grading, whatever ``__name__`` says: a module that sets
    ``__name__ = "__main__"`` would otherwise run its block at import."""
    import ast
    import importlib.machinery

    class Strip(ast.NodeTransformer):
        def visit_If(self, node):
            self.generic_visit(node)
            if is_main_guard(node.test):
                return node.orelse or ast.Pass()
            return node

    class Loader(importlib.machinery.SourceFileLoader):
        def source_to_code(self, data, path, *, _optimize=-1):
            tree = ast.fix_missing_locations(Strip().visit(ast.parse(data, path)))
            return compile(tree, path, "exec", dont_inherit=True, optimize=_optimize)

    root = os.path.realpath(sandbox)

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            spec = importlib.machinery.PathFinder.find_spec(fullname, [root] if path is None else path)
            if spec is None or not spec.origin or not spec.origin.endswith(".py"):
                return None
            if os.path.dirname(os.path.realpath(spec.origin)) != root:
                return None
            spec.loader = Loader(fullname, spec.origin)
            return spec

    sys.meta_path.insert(1 if sys.meta_path and type(sys.meta_path[0]).__name__ == "Blocker" else 0, Finder())


def registered_keys(C, name: str, keys: list) -> list[str]:
    """The dispatch keys at which ``name`` (``aten::op.overload``) has a kernel: read from the
    dispatcher's own listing (one call), else asked key by key (~100 times slower)."""
    try:
        found = []
        for line in C._dispatch_dump(name).splitlines():
            head, sep, _ = line.partition(": registered at ")
            if sep and head not in ("debug", "schema"):
                found.append(head.replace("[alias]", "").strip())
        if found:
            return found
    except Exception:  # noqa: BLE001 - a torch without the listing
        pass
    out = []
    for key in keys:
        try:
            if C._dispatch_has_kernel_for_dispatch_key(name, key):
                out.append(key)
        except Exception:  # noqa: BLE001 - not a key name the dispatcher parses
            continue
    return out


def kernel_watch(torch, exercise: str, forbidden_calls):
    """The forbidden kernels refused at torch's dispatcher, or None when the exercise forbids none.

    Every ``torch.ops.aten.<op>`` of ``forbidden_calls`` gets, for each overload and each dispatch
    key at which torch registered a kernel (``CompositeImplicitAutograd`` for ``gru_cell``, ``CPU``
    and ``Autograd`` for ``_ctc_loss`` ...), a kernel of ours that records the attempt and raises
    :class:`ForbiddenCall`.  Every route to the op ends at the dispatcher (``torch._VF``,
    ``torch.ops.aten``, ``OpOverload.decompose``/``redispatch``/``_op_dk``, TorchScript, another
    thread, a finaliser), so the library kernel never runs in this worker: there is no value
    computed by it for a forged reply to carry.  A student's own registration for the op replaces
    ours with the student's code, never with torch's kernel.  The registrations are held only by
    this closure (not ``torch.library``'s registries), so Python code cannot undo them.

    ``reset()`` before a request, ``take()`` after it: the forbidden ops attempted in between (the
    attempt is reported even when the code caught the exception).  Everything is bound here, before
    the submission is imported."""
    ops = {f.rsplit(".", 1)[1]: f for f in forbidden_calls if f.startswith("torch.ops.aten.")}
    if not ops:
        return None
    C = torch._C
    keys = list(C.DispatchKey.__members__)
    seen: list[str] = []
    append, clear, sorted_, set_ = seen.append, seen.clear, sorted, set
    dup, dup2, close, open_ = os.dup, os.dup2, os.close, os.open

    def refuser(qualname: str, dotted: str):
        msg = (f"your code called {qualname} ({dotted}), which {exercise} forbids: write it yourself "
               "(see the exercise's docstring)")

        def kernel(*args, **kwargs):
            append(f"{qualname} ({dotted})")
            raise ForbiddenCall(msg)

        return kernel

    saved = dup(2)  # registering over torch's kernel prints a warning: not into the student's output
    null = open_(os.devnull, os.O_WRONLY)
    dup2(null, 2)
    try:
        lib = C._dispatch_library("IMPL", "aten", "", "autograder", 0)
        registered = 0
        for op, dotted in ops.items():
            try:
                schemas = C._jit_get_schemas_for_operator("aten::" + op)
            except Exception:  # noqa: BLE001
                continue
            for schema in schemas:
                name = op + ("." + schema.overload_name if schema.overload_name else "")
                qualname = "aten::" + op
                for key in registered_keys(C, "aten::" + name, keys):
                    try:
                        lib.impl(name, key, refuser(qualname, dotted), False)
                        registered += 1
                    except Exception:  # noqa: BLE001 - a key that takes no Python kernel
                        continue
    finally:
        dup2(saved, 2)
        close(saved)
        close(null)
    if not registered:
        return None
    # The registrations last as long as ``lib``.  A closure cell can be emptied from Python
    # (``cell_contents``), so ``lib`` gets one reference that nothing can drop: it lives until exit.
    try:
        import ctypes

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(lib))
    except Exception:  # noqa: BLE001 - no ctypes: the closure below holds it
        pass

    class Watch:
        __slots__ = ()

        def reset(self) -> None:
            clear()

        def take(self, _held=(lib,)) -> list[str]:
            out = sorted_(set_(seen))
            clear()
            return out

    return Watch()
