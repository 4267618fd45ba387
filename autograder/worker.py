"""The worker: imports ONE submitted exercise file and runs the calls the grader asks for.

It is started in one of two ways (see :mod:`autograder.sandbox`):

* **fork** (the default on Linux): a *zygote*, ``python -I -B worker.py --zygote``, started by
  the grader with a clean environment in an empty temporary directory, imports torch, numpy and
  this harness, runs **no** torch operation (so no OpenMP / intra-op thread pool exists) and no
  student code, then waits on a private socket.  For each exercise (and after every crash or
  timeout) the grader sends it a config and two pipe ends; the zygote checks that it is still
  single-threaded and forks; the child applies the isolation below and never returns to the
  zygote's loop.  The zygote holds no grader data (it never imports ``autograder``, ``reference``
  or ``solutions``) and reaps its children only when the grader asks, so a worker's pid stays
  reserved until the grader has seen its exit status.
* **spawn** (the fallback: other platforms, ``AUTOGRADER_WORKER=spawn``, or a zygote that failed):
  ``python -I -B worker.py CONFIG_JSON`` with a clean environment, in a fresh directory holding a
  copy of the submission.

``-I`` keeps the current directory, the user site and ``PYTHON*`` variables out of ``sys.path``;
this file loads its two helpers (``protocol.py``, ``fixtures.py``) by path under private names,
so ``autograder`` itself is never importable here.

Before the student's module is imported the worker (either way):

1. (forked) starts its own session and process group, moves into its sandbox and closes every
   file descriptor it inherited from the zygote; then moves the protocol onto private file
   descriptors and sends the student's stdout/stderr to a capped log file (``RLIMIT_FSIZE``);
2. caps its address space (``RLIMIT_AS``, Linux), core dumps and output, and arranges to die
   with its parent (the grader, or the zygote, which dies with the grader): ``PR_SET_PDEATHSIG``
   on Linux, a parent watcher thread everywhere;
3. sets one torch thread and warms torch up (first torch operations happen here, in the worker);
4. replaces the exercise's forbidden calls by stubs that refuse (and records the attempt);
5. installs an import blocker (``reference``, ``solutions``, ``autograder`` and the exercise's
   forbidden packages) and a PEP 578 audit hook that refuses file access outside the sandbox
   and the Python installation, process creation, sockets, ctypes and new audit hooks.

Every reply is plain data encoded by ``protocol.encode``: values that are not plain data are
refused here, never sent as objects.  None of this is a security boundary against native code;
see ``autograder/README.md`` for what holds where.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import io
import json
import os
import random
import signal
import sys
import threading
import time
import traceback

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None

HERE = os.path.dirname(os.path.abspath(__file__))

# Set by _isolate() in the worker (never in the zygote).
CONFIG: dict = {}
SANDBOX = ""
REQ_FD = RESP_FD = -1
LOG_PATH = ""
PARENT = 0

np = torch = P = FX = None  # set by _import_libraries()


def _set_limit(which, value):
    if resource is None or value is None:
        return
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL when the parent dies, even while stuck in native code."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001
            pass
    if os.getppid() != parent:
        os._exit(70)


def _close_fds_except(keep) -> None:
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


# ----------------------------------------------------------------------------- 1-2. process, fds, limits
def _isolate(config: dict, req_fd: int | None, resp_fd: int | None, parent: int) -> None:
    """Steps 1 and 2.  ``req_fd``/``resp_fd`` None: spawned (the protocol is on stdin/stdout)."""
    global CONFIG, SANDBOX, REQ_FD, RESP_FD, LOG_PATH, PARENT
    forked = req_fd is not None
    CONFIG = config
    SANDBOX = os.path.realpath(config["sandbox"])
    PARENT = parent
    if forked:
        os.setsid()  # own session and process group: the grader kills it with killpg
        os.chdir(SANDBOX)
        os.environ["HOME"] = os.environ["TMPDIR"] = SANDBOX
        _close_fds_except({0, 1, 2, req_fd, resp_fd})  # the zygote's control socket included
        REQ_FD, RESP_FD = req_fd, resp_fd
    else:
        REQ_FD, RESP_FD = os.dup(0), os.dup(1)
    _null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(_null, 0)
    os.close(_null)
    LOG_PATH = os.path.join(SANDBOX, ".output.log")
    _log = os.open(LOG_PATH, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(_log, 1)
    os.dup2(_log, 2)
    os.close(_log)
    for _fd in (REQ_FD, RESP_FD):
        os.set_inheritable(_fd, False)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="replace",
                                  line_buffering=True, write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="replace",
                                  line_buffering=True, write_through=True)

    if resource is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-long write fails with EFBIG instead of killing us
        _set_limit(resource.RLIMIT_CORE, 0)
        _set_limit(resource.RLIMIT_FSIZE, int(CONFIG.get("fsize_bytes", 2 * 1024 * 1024)))
    _die_with_parent(PARENT)

    def _watch_parent():
        while True:
            time.sleep(0.5)
            if os.getppid() != PARENT:
                os._exit(70)

    threading.Thread(target=_watch_parent, daemon=True, name="autograder-parent-watch").start()


# ----------------------------------------------------------------------------- 3. libraries
def _load_private(name: str, filename: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, filename))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _import_libraries() -> None:
    """Import torch, numpy and the two helpers.  Runs NO torch operation: safe in the zygote."""
    global np, torch, P, FX
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import numpy as np  # noqa: F811
    import torch  # noqa: F811
    import torch.nn.functional  # noqa: F401

    P = _load_private("_agw_protocol", "protocol.py")
    FX = _load_private("_agw_fixtures", "fixtures.py")


def _prepare_torch() -> None:
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
        _set_limit(resource.RLIMIT_AS, int(CONFIG.get("mem_bytes", 4 * 1024 ** 3)))


# ----------------------------------------------------------------------------- 4. forbidden calls
EVENTS: list[str] = []  # what the sandbox refused since the last reply (forbidden calls, file access, ...)
FORBIDDEN_HITS: list[str] = []


class ForbiddenCall(BaseException):
    """Raised by a forbidden function.  A BaseException, so ``except Exception`` does not hide it."""


def _refuser(dotted: str):
    def refuse(*args, **kwargs):
        FORBIDDEN_HITS.append(dotted)
        raise ForbiddenCall(f"{CONFIG['exercise']} forbids {dotted}: write it yourself (see the exercise's docstring)")

    refuse.__name__ = dotted.rsplit(".", 1)[-1]
    return refuse


def _refusing_class(dotted: str):
    def __init__(self, *args, **kwargs):
        FORBIDDEN_HITS.append(dotted)
        raise ForbiddenCall(f"{CONFIG['exercise']} forbids {dotted}: write it yourself (see the exercise's docstring)")

    return type(dotted.rsplit(".", 1)[-1], (torch.nn.Module,), {"__init__": __init__})


def _install_stubs() -> None:
    for _dotted in CONFIG.get("forbidden_calls", []):
        _owner_path, _, _attr = _dotted.rpartition(".")
        _obj = None
        try:
            _obj = importlib.import_module(_owner_path)
        except ImportError:
            _parts = _owner_path.split(".")
            try:
                _obj = importlib.import_module(_parts[0])
                for _p in _parts[1:]:
                    _obj = getattr(_obj, _p)
            except (ImportError, AttributeError):
                _obj = None
        if _obj is None or not hasattr(_obj, _attr):
            continue
        _orig = getattr(_obj, _attr)
        _stub = _refusing_class(_dotted) if isinstance(_orig, type) else _refuser(_dotted)
        try:
            setattr(_obj, _attr, _stub)
        except (AttributeError, TypeError):
            pass


# ----------------------------------------------------------------------------- 5. imports and the audit hook
BLOCKED: tuple = ("reference", "solutions", "autograder")


def _is_blocked(name: str) -> str | None:
    for b in BLOCKED:
        if name == b or name.startswith(b + "."):
            return b
    return None


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        b = _is_blocked(fullname)
        if b:
            _refuse_import(fullname, b)
        return None


def _refuse_import(fullname, b):
    msg = f"importing {fullname} is not allowed in {CONFIG['exercise']}"
    if b in ("reference", "solutions", "autograder"):
        msg += " (the answers live there)"
    else:
        msg += " (this exercise asks you to write it yourself)"
    note = f"refused import: {fullname}"
    if note not in EVENTS:
        EVENTS.append(note)
    FORBIDDEN_HITS.append(f"import {fullname}")
    raise ImportError(msg)


READ_ROOTS: tuple = ()
READ_FILES = {"/dev/null", "/dev/urandom", "/dev/random", "/etc/localtime"}
READ_PREFIXES_OS = ("/proc/self/", "/sys/devices/system/cpu/", "/sys/fs/cgroup/", "/proc/cpuinfo", "/proc/meminfo")
WRITE_ROOTS: tuple = ()


def _install_import_guards() -> None:
    global BLOCKED, READ_ROOTS, WRITE_ROOTS
    BLOCKED = tuple(CONFIG.get("blocked_modules", [])) + ("reference", "solutions", "autograder")
    for _name in list(sys.modules):  # nothing of the grader's packages may be reachable via sys.modules
        if _is_blocked(_name):
            del sys.modules[_name]
    sys.meta_path.insert(0, _Blocker())

    _prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    _site_dirs = set()
    for _p in sys.path:
        if not _p:
            continue
        _rp = os.path.realpath(_p)
        if any(_rp == pre or _rp.startswith(pre + os.sep) for pre in _prefixes):
            _site_dirs.add(_rp)
    # The student's directory first; then only the Python installation (no checkout, no cwd).
    sys.path[:] = [SANDBOX] + [p for p in sys.path if p and os.path.realpath(p) in _site_dirs]
    sys.path_importer_cache.clear()
    READ_ROOTS = tuple(sorted(_prefixes | _site_dirs | {SANDBOX}))
    WRITE_ROOTS = (SANDBOX,)

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

_in_hook = threading.local()


def _under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r + os.sep) for r in roots)


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


def _may_read(path: str) -> bool:
    return path in READ_FILES or _under(path, READ_ROOTS) or path.startswith(READ_PREFIXES_OS)


def _refuse(note: str, exc=PermissionError):
    if note not in EVENTS and len(EVENTS) < 50:
        EVENTS.append(note)
    raise exc(f"autograder sandbox: {note} is not allowed")


def _audit(event, args):
    if getattr(_in_hook, "on", False):
        return
    _in_hook.on = True
    try:
        if event == "open":
            path = _path_of(args[0])
            if path is None:
                return
            mode, flags = args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
            if writing:
                if not (path == "/dev/null" or _under(path, WRITE_ROOTS)):
                    _refuse(f"writing {path}")
            elif not _may_read(path):
                _refuse(f"reading {path}")
        elif event == "import":
            b = _is_blocked(str(args[0]))
            if b:
                _refuse_import(str(args[0]), b)
        elif event in REFUSED_EVENTS or event.startswith("socket."):
            _refuse(f"{REFUSED_EVENTS.get(event, 'network access')} ({event})")
        elif event in PATH_WRITE_EVENTS:
            for a in args[:2]:
                p = _path_of(a) if isinstance(a, (str, bytes, os.PathLike)) else None
                if p is not None and not _under(p, WRITE_ROOTS):
                    _refuse(f"{event} on {p}")
        elif event in PATH_READ_EVENTS:
            a = args[0] if args else None
            p = _path_of(a) if isinstance(a, (str, bytes, os.PathLike)) else None
            if p is not None and not (_may_read(p)):
                _refuse(f"listing {p}")
    finally:
        _in_hook.on = False


# ----------------------------------------------------------------------------- 6. the request loop
STUDENT = None
HANDLES: dict[int, object] = {}


def _read_exact(n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = os.read(REQ_FD, min(n - got, 1 << 20))
        if not b:
            os._exit(0)  # the grader went away
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def _recv():
    n = P.unpack_header(_read_exact(8))
    return json.loads(_read_exact(n).decode("utf-8"))


def _send(obj):
    data = P.pack(obj)
    view = memoryview(data)
    while view:
        k = os.write(RESP_FD, view)
        view = view[k:]


def _resolve(value):
    """Decode grader data, replacing handle and fixture references by the live objects."""
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    if isinstance(value, dict):
        tag = value.get("__t")
        if tag == "handle":
            return HANDLES[int(value["id"])]
        if tag == "fixture":
            return _build(value)
        if tag is None:
            return {k: _resolve(v) for k, v in value.items()}
        if tag == "tuple":
            return tuple(_resolve(v) for v in value["items"])
        return P.decode(value)
    return value


def _build(spec):
    return FX.BUILDERS[spec["name"]](*_resolve(spec.get("args", [])), **_resolve(spec.get("kwargs", {})))


def _leaves(value, out):
    if isinstance(value, torch.Tensor) and type(value) is torch.Tensor:
        if value.requires_grad and value.is_leaf:
            out.append(value)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _leaves(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _leaves(v, out)
    return out


def _extract(result, attrs):
    out = {}
    for a in attrs:
        try:
            if type(result) is dict:
                v = result[a] if a in result else P.Rejected("missing", f"no key {a!r}")
            else:
                v = getattr(result, a)
        except AttributeError:
            v = None
            out[a] = {"__t": "rejected", "type": "missing", "why": f"the result has no attribute {a!r}"}
            continue
        except Exception as e:  # noqa: BLE001
            out[a] = {"__t": "rejected", "type": "error", "why": f"reading {a!r} raised {type(e).__name__}"}
            continue
        out[a] = v if isinstance(v, dict) and v.get("__t") == "rejected" else P.encode(v)
        if isinstance(v, P.Rejected):
            out[a] = {"__t": "rejected", "type": v.type_name, "why": v.why}
    return out


def _rng_state():
    return (torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate())


def _rng_touched(before) -> list[str]:
    after = _rng_state()
    out = []
    if not torch.equal(before[0], after[0]):
        out.append("torch")
    if not np.array_equal(before[1], after[1]):
        out.append("numpy")
    if before[2] != after[2]:
        out.append("random")
    return out


def _describe_exception(e: BaseException) -> dict:
    try:
        msg = str(e)[:2000]
    except BaseException:  # noqa: BLE001
        msg = "<unprintable>"
    frames = []
    try:
        tb = traceback.extract_tb(e.__traceback__)
        for fr in tb:
            fn = os.path.realpath(fr.filename) if fr.filename and not fr.filename.startswith("<") else ""
            if fn.startswith(SANDBOX):
                frames.append({"file": os.path.basename(fn), "line": fr.lineno, "func": fr.name,
                               "code": (fr.line or "")[:200]})
    except BaseException:  # noqa: BLE001
        pass
    bases = [c.__name__ for c in type(e).__mro__ if c.__module__ == "builtins"]
    return {"type": type(e).__name__[:100], "bases": bases, "msg": msg, "frames": frames[-5:]}


def _run(req):
    global STUDENT
    op = req["op"]
    if op == "load":
        importlib.invalidate_caches()
        STUDENT = importlib.import_module(CONFIG["module"])
        return {"names": sorted(n for n in dir(STUDENT) if not n.startswith("__"))[:500]}
    if op == "call":
        fn = getattr(STUDENT, req["fn"])
        result = fn(*_resolve(req.get("args", [])), **_resolve(req.get("kwargs", {})))
        return result
    if op == "new":
        cls = getattr(STUDENT, req["cls"])
        obj = cls(*_resolve(req.get("args", [])), **_resolve(req.get("kwargs", {})))
        HANDLES[int(req["id"])] = obj
        return None
    if op == "fixture":
        obj = _build(req["spec"])
        if "id" in req:
            HANDLES[int(req["id"])] = obj
            return None
        return obj
    if op == "method":
        obj = HANDLES[int(req["handle"])]
        return getattr(obj, req["name"])(*_resolve(req.get("args", [])), **_resolve(req.get("kwargs", {})))
    if op == "get":
        obj = HANDLES[int(req["handle"])]
        return {n: _getpath(obj, n) for n in req["names"]}
    if op == "set":
        obj = HANDLES[int(req["handle"])]
        with torch.no_grad():
            for name, value in _resolve(req["values"]).items():
                target = _getpath(obj, name)
                if not isinstance(target, torch.Tensor):
                    raise AttributeError(f"{type(obj).__name__}.{name} is not a tensor (got {type(target).__name__})")
                if tuple(target.shape) != tuple(value.shape):
                    raise ValueError(f"{type(obj).__name__}.{name} has shape {tuple(target.shape)}, "
                                     f"expected {tuple(value.shape)}")
                target.copy_(value)
        return None
    if op == "drop":
        HANDLES.clear()
        return None
    raise ValueError(f"unknown op {op!r}")


def _getpath(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _handle(req) -> dict:
    del EVENTS[:]
    del FORBIDDEN_HITS[:]
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    grad = req.get("grad")
    before = _rng_state() if req.get("rng") else None
    started = time.perf_counter()
    try:
        args_for_grad = []
        if grad is not None:
            req = dict(req)
            req["args"] = _resolve(req.get("args", []))  # resolved once so the leaves can be read back
            args_for_grad = _leaves(req["args"], [])
            raw_args = req["args"]
            req["args"] = []
            fn = getattr(STUDENT, req["fn"]) if req["op"] == "call" else getattr(HANDLES[int(req["handle"])],
                                                                                    req["name"])
            result = fn(*raw_args, **_resolve(req.get("kwargs", {})))
        else:
            result = _run(req)
        reply = {"status": "ok"}
        if grad is not None:
            out = result
            for i in grad.get("index", []):
                out = out[i]
            if type(out) is not torch.Tensor or not out.requires_grad:
                reply["grad_error"] = ("the output is not differentiable (no grad_fn): did you use .detach(), "
                                       ".item(), .numpy(), torch.no_grad() or an in-place write into a new tensor?")
            else:
                go = P.decode(grad["out_grad"]) if grad.get("out_grad") is not None else torch.ones_like(out)
                params = []
                if grad.get("params") and req["op"] == "method":
                    obj = HANDLES[int(req["handle"])]
                    params = [_getpath(obj, n) for n in grad["params"]]
                    for p in params:
                        p.grad = None
                try:
                    if out.shape != go.shape:
                        raise RuntimeError(f"output shape {tuple(out.shape)} does not match {tuple(go.shape)}")
                    (out * go.to(out.dtype)).sum().backward()
                    reply["grads"] = P.encode([None if a.grad is None else a.grad.detach() for a in args_for_grad])
                    reply["param_grads"] = P.encode(
                        {n: (None if p.grad is None else p.grad.detach()) for n, p in zip(grad.get("params", []), params)})
                except ForbiddenCall:
                    raise
                except Exception as e:  # noqa: BLE001
                    reply["grad_error"] = f"backward() failed: {type(e).__name__}: {str(e)[:300]}"
        if req.get("attrs"):
            reply["value"] = _extract(result, req["attrs"])
        else:
            reply["value"] = P.encode(result)
    except ForbiddenCall as e:
        reply = {"status": "forbidden", "msg": str(e)}
    except NotImplementedError as e:
        reply = {"status": "notimpl", "msg": str(e)[:500], "exc": _describe_exception(e)}
    except MemoryError as e:
        reply = {"status": "memory", "exc": _describe_exception(e)}
    except RecursionError as e:
        reply = {"status": "raised", "exc": _describe_exception(e)}
    except OSError as e:
        if getattr(e, "errno", None) == 27:  # EFBIG: the output cap
            reply = {"status": "output_cap"}
        else:
            reply = {"status": "raised", "exc": _describe_exception(e)}
    except P.NotPlainData as e:
        reply = {"status": "ok", "value": {"__t": "rejected", "type": "value", "why": str(e)}}
    except SystemExit as e:
        reply = {"status": "exit", "msg": f"sys.exit({e.code!r})"}
    except KeyboardInterrupt:
        reply = {"status": "raised", "exc": {"type": "KeyboardInterrupt", "bases": [], "msg": "", "frames": []}}
    except BaseException as e:  # noqa: BLE001
        reply = {"status": "raised", "exc": _describe_exception(e)}
    reply["elapsed"] = time.perf_counter() - started
    reply["events"] = list(EVENTS)
    reply["forbidden"] = sorted(set(FORBIDDEN_HITS))
    if before is not None:
        try:
            reply["rng_touched"] = _rng_touched(before)
        except BaseException:  # noqa: BLE001
            reply["rng_touched"] = ["?"]
    reply["nonce"] = req_nonce[0]
    return reply


req_nonce = [""]


def main():
    sys.addaudithook(_audit)
    _send({"status": "ready", "pid": os.getpid()})
    while True:
        req = _recv()
        req_nonce[0] = req.get("nonce", "")
        try:
            reply = _handle(req)
            data = P.pack(reply)
        except BaseException as e:  # noqa: BLE001 - e.g. a reply that cannot be serialised
            data = P.pack({"status": "raised", "nonce": req_nonce[0], "events": [], "forbidden": [],
                           "exc": {"type": type(e).__name__, "bases": [], "msg": str(e)[:300], "frames": []}})
        view = memoryview(data)
        while view:
            k = os.write(RESP_FD, view)
            view = view[k:]
        sys.stdout.flush()


def _become_worker(config: dict, req_fd: int | None, resp_fd: int | None, parent: int) -> None:
    """Steps 1 to 5, then the request loop (never returns)."""
    _isolate(config, req_fd, resp_fd, parent)
    _import_libraries()  # already done in a zygote (then only the names are bound)
    _prepare_torch()
    _install_stubs()
    _install_import_guards()
    main()


def spawn_main(argv: list[str]) -> None:
    _become_worker(json.loads(argv[1]), None, None, os.getppid())


# ----------------------------------------------------------------------------- the zygote (fork server)
def thread_count() -> int:
    """OS threads of this process (Linux: all of them, native ones included)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _zygote_recv(ctl):
    import socket

    fds: list[int] = []
    head = b""
    while len(head) < 8:
        data, got, _flags, _addr = socket.recv_fds(ctl, 8 - len(head), 4)
        fds += got
        if not data:
            return None, fds
        head += data
    n = P.unpack_header(head)
    body = b""
    while len(body) < n:
        chunk = ctl.recv(min(n - len(body), 1 << 16))
        if not chunk:
            return None, fds
        body += chunk
    return json.loads(body.decode("utf-8")), fds


def _reap(pid: int):
    """The exit code of a child that ended (Popen's convention), or None while it runs."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return -signal.SIGKILL
    return os.waitstatus_to_exitcode(status) if done == pid else None


def zygote_main() -> None:
    """Fork server: see the module docstring.  Runs no torch operation and no student code.

    Its first connection (stdin) is the owner's; the owner may ``attach`` more connections
    (one per ``grade-one`` process of a batch).  Each connection may ``spawn`` workers and
    ``wait`` for its own; when a connection closes, its remaining workers are killed.
    """
    import select
    import socket

    parent = os.getppid()
    me = os.getpid()
    ctl_fd = os.dup(0)
    _null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(_null, fd)
    os.close(_null)
    owner = socket.socket(fileno=ctl_fd)
    if resource is not None:
        _set_limit(resource.RLIMIT_CORE, 0)
    _die_with_parent(parent)
    _import_libraries()
    for name in ("math", "collections", "dataclasses", "functools", "itertools", "heapq", "typing", "re",
                 "bisect", "string", "copy", "numbers", "abc", "enum"):
        importlib.import_module(name)  # what exercise files import anyway: stdlib only
    conns: dict = {owner: set()}       # connection -> pids of the workers it spawned
    pending: list = []                 # (connection, pid, deadline) of "wait" requests

    def reply(conn, obj):
        try:
            conn.sendall(P.pack(obj))
        except OSError:
            pass

    def drop(conn):
        for pid in conns.pop(conn, set()):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            deadline = time.monotonic() + 5.0
            while _reap(pid) is None and time.monotonic() < deadline:
                time.sleep(0.005)
        pending[:] = [w for w in pending if w[0] is not conn]
        conn.close()
        if conn is owner:
            os._exit(0)

    reply(owner, {"status": "ready", "pid": me, "threads": thread_count()})
    while True:
        if os.getppid() != parent:
            os._exit(70)
        r, _, _ = select.select(list(conns), [], [], 0.005 if pending else 0.5)
        for conn in r:
            try:
                msg, fds = _zygote_recv(conn)
            except (OSError, ValueError):
                msg, fds = None, []
            if msg is None or not isinstance(msg, dict):  # the grader closed its end (or garbage)
                for fd in fds:
                    os.close(fd)
                drop(conn)
                continue
            op = msg.get("op")
            if op == "spawn" and len(fds) == 2 and thread_count() == 1:
                pid = os.fork()
                if pid == 0:  # the worker: never comes back into this loop
                    try:
                        for c in conns:
                            c.close()
                        _become_worker(msg["config"], fds[0], fds[1], me)
                    finally:
                        os._exit(70)
                for fd in fds:
                    os.close(fd)
                conns[conn].add(pid)
                reply(conn, {"pid": pid})
                continue
            keep = fds[:1] if op == "attach" and conn is owner else []
            for fd in fds[len(keep):]:
                os.close(fd)
            if op == "spawn":
                n = thread_count()
                reply(conn, {"error": f"refusing to fork: {n} threads" if n != 1 else "expected two descriptors"})
            elif keep:
                conns[socket.socket(fileno=fds[0])] = set()
                reply(conn, {"ok": True})
            elif op == "wait" and int(msg.get("pid", 0)) in conns[conn]:
                pending.append((conn, int(msg["pid"]), time.monotonic() + max(0.0, float(msg.get("timeout", 0)))))
            elif op == "info":  # for the self-tests: what this process holds
                reply(conn, {"threads": thread_count(), "pid": me, "connections": len(conns),
                             "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                                               ("autograder", "reference", "solutions", "pytest", "_pytest"))})
            else:
                reply(conn, {"error": f"refused: {op!r}"})
        still = []
        for conn, pid, deadline in pending:
            if conn not in conns:
                continue
            code = _reap(pid)
            if code is not None:
                conns[conn].discard(pid)
                reply(conn, {"code": code})
            elif time.monotonic() >= deadline:
                reply(conn, {"code": None})
            else:
                still.append((conn, pid, deadline))
        pending[:] = still


if __name__ == "__main__":
    if sys.argv[1:2] == ["--zygote"]:
        zygote_main()
    else:
        spawn_main(sys.argv)
