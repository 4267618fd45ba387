"""The worker: imports ONE submitted exercise file and runs the calls the grader asks for.

It is started in one of two ways (see :mod:`autograder.sandbox.host`), and, where bubblewrap works,
inside a bwrap sandbox (:mod:`autograder.sandbox.bwrap`): its own namespaces, no network, the Python
installation read-only, this folder's worker-side files at a neutral path, a read-only copy of the
student's files and a private ``/tmp``; never the course's ``reference/``, ``solutions/`` or
``autograder/``.

* **fork** (the default on Linux): forked by a *zygote* (``python -I -B worker.py --zygote``,
  see ``worker_zygote.py``) that imported torch once; one zygote per student under bwrap.
* **spawn** (the fallback: other platforms, ``AUTOGRADER_WORKER=spawn``, or a zygote that failed):
  ``python -I -B worker.py CONFIG_JSON`` with a clean environment.

``-I`` keeps the current directory, the user site and ``PYTHON*`` variables out of ``sys.path``;
this file loads its helpers (``worker_isolation.py``, ``worker_zygote.py``, ``protocol.py``,
``fixtures.py``) by path under private names, so ``autograder`` itself is never imported here.

Before the student's module is imported the worker (either way) applies the in-process layer of
``worker_isolation.py``: own session, sandbox cwd, private protocol descriptors, capped output,
rlimits, death with its parent, one torch thread, stubs for the exercise's forbidden calls
(``torch.ops.aten`` routes included), an import blocker and a PEP 578 audit hook.

Every reply is plain data encoded by ``protocol.encode``: values that are not plain data are
refused here, never sent as objects.  See ``autograder/README.md`` for what holds where.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import random
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_private(name: str, filename: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, filename))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


ISO = _load_private("_agw_isolation", "worker_isolation.py")
ForbiddenCall = ISO.ForbiddenCall
EVENTS, FORBIDDEN_HITS = ISO.EVENTS, ISO.FORBIDDEN_HITS

# Set by become_worker() in the worker (never in the zygote).
CONFIG: dict = {}
SANDBOX = ""
PROC = None  # worker_isolation.Process

np = torch = P = FX = None  # set by import_libraries()


def import_libraries() -> None:
    """Import torch, numpy and the two helpers.  Runs NO torch operation: safe in the zygote."""
    global np, torch, P, FX
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import numpy as np  # noqa: F811
    import torch  # noqa: F811
    import torch.nn.functional  # noqa: F401

    P = _load_private("_agw_protocol", "protocol.py")
    FX = _load_private("_agw_fixtures", "fixtures.py")


# ----------------------------------------------------------------------------- the request loop
STUDENT = None
HANDLES: dict[int, object] = {}


def _read_exact(n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = os.read(PROC.req_fd, min(n - got, 1 << 20))
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
        k = os.write(PROC.resp_fd, view)
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
    if op == "given":   # the earlier exercises' pieces (autograder/sandbox/given.py), so this one is graded on its own
        table = getattr(STUDENT, "EARLIER", None)
        if not isinstance(table, dict):
            return []
        namespace = {"__name__": "_agw_given"}
        exec(compile(req["source"], "given.py", "exec"), namespace)  # noqa: S102 - the grader's own source
        for name in req["names"]:
            table[name] = namespace[name]
        return sorted(req["names"])
    raise ValueError(f"unknown op {op!r}")


def _getpath(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _output_full() -> bool:
    """Whether the output log reached RLIMIT_FSIZE (then an EFBIG is the output cap, not a file's)."""
    try:
        return os.fstat(PROC.log_fd).st_size >= int(CONFIG.get("fsize_bytes", 2 * 1024 * 1024))
    except (OSError, ValueError, TypeError):
        return True


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
        errno = getattr(e, "errno", None)
        if errno == 27 and _output_full():  # EFBIG on the output log: the output cap
            reply = {"status": "output_cap"}
        elif errno == 27:  # EFBIG on a file: RLIMIT_FSIZE, each file's cap
            reply = {"status": "disk", "msg": "file", "exc": _describe_exception(e)}
        elif errno in (28, 122):  # ENOSPC, EDQUOT: the worker's folder is full (its tmpfs, where there is one)
            reply = {"status": "disk", "msg": "space", "exc": _describe_exception(e)}
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
    return reply


def main(watch=None):
    """The request loop.  Its helpers, and the builtins it uses, are bound here, before the submission
    is imported (by the first request): rebinding this module's names, ``builtins`` or ``json``'s later
    does not change the loop or the kernel watch.  The request's nonce is a local of this loop, in
    no module global (see ``autograder/README.md``, "What does not hold", for what can still read it)."""
    handle, new_output, pack, write, resp_fd = _handle, PROC.new_output, P.pack, os.write, PROC.resp_fd
    recv, hits, flush = _recv, FORBIDDEN_HITS, sys.stdout.flush
    str_, type_, memoryview_, sorted_, set_, isinstance_, dict_ = str, type, memoryview, sorted, set, isinstance, dict
    exercise = CONFIG.get("exercise", "")
    _send({"status": "ready", "pid": os.getpid(), "sandbox": SANDBOX, "disk": "tmpfs" if PROC.tmpfs else "polled"})
    while True:
        req = recv()
        nonce = req.get("nonce", "") if isinstance_(req, dict_) else ""
        try:
            if watch is not None:
                watch.reset()
            try:
                reply = handle(req)
            finally:
                ran = watch.take() if watch is not None else []
            if ran:
                hits.extend(ran)
                reply = {"status": "forbidden", "events": reply.get("events", []),
                         "forbidden": sorted_(set_(hits)),
                         "msg": f"your code called {', '.join(ran)}, which {exercise} forbids: write it yourself "
                                "(see the exercise's docstring)"}
            reply["nonce"] = nonce
            reply["stdout"] = new_output()
            data = pack(reply)
        except BaseException as e:  # noqa: BLE001 - e.g. a reply that cannot be serialised
            data = pack({"status": "raised", "nonce": nonce, "events": [], "forbidden": [],
                         "exc": {"type": type_(e).__name__, "bases": [], "msg": str_(e)[:300], "frames": []}})
        view = memoryview_(data)
        while view:
            k = write(resp_fd, view)
            view = view[k:]
        flush()


def become_worker(config: dict, req_fd: int | None, resp_fd: int | None, parent: int) -> None:
    """Isolate, import, guard, then the request loop (never returns)."""
    global CONFIG, SANDBOX, PROC
    CONFIG = config
    PROC = ISO.isolate(config, req_fd, resp_fd, parent)
    SANDBOX = PROC.sandbox
    import_libraries()  # already done in a zygote (then only the names are bound)
    ISO.prepare_torch(torch, int(config.get("mem_bytes", 4 * 1024 ** 3)))
    ISO.install_stubs(torch, config["exercise"], config.get("forbidden_calls", []))
    watch = ISO.kernel_watch(torch, config["exercise"], config.get("forbidden_calls", []))
    ISO.install_guards(config["exercise"], SANDBOX, config.get("blocked_modules", []))
    ISO.install_main_stripper(SANDBOX)
    main(watch)


def spawn_main(argv: list[str]) -> None:
    become_worker(json.loads(argv[1]), None, None, os.getppid())


if __name__ == "__main__":
    if sys.argv[1:2] == ["--zygote"]:
        _load_private("_agw_zygote", "worker_zygote.py").zygote_main(sys.modules[__name__])
    else:
        spawn_main(sys.argv)
