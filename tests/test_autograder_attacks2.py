"""Hostile submissions, round two (issue 19): what a determined student tried after issue 13.

Each class of attack is graded by one ``batch`` run per sandbox mode (``bwrap`` where it works, and
``process`` with ``--no-sandbox``), next to an honest counterpart (the same file without the attack)
and a correct submission.  The invariant: an attack earns exactly what its honest part earns, the
grader never reports a grader error because of it, and no other student's grade changes.

1. degenerate answers to edge-case checks (``degenerate_*`` against ``honest_*``);
2. forged or tampered replies (``forged_*``, ``rebind_leaves``) and the grader's bounds on a reply;
3. forbidden kernels through routes the first scan missed (``vf_getattr``, ``main_rename``,
   ``dynamic_kernel``, ``profiler_stopped``, ``sibling_import``);
4. a later public check printing what a hidden check sent (``leak_hidden``);
5. one student's threads, children and memory as a whole (``thread_bomb``, ``memory_children``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from autograder.sandbox import bwrap, protocol
from autograder.grading import scan
from autograder.spec import EXERCISES

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SOL = ROOT / "solutions"
EXE = ROOT / "exercises"
BWRAP = bwrap.probe()[0]
needs_bwrap = pytest.mark.skipif(not BWRAP, reason=f"bwrap unavailable: {bwrap.probe()[1]}")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only (bwrap, /proc, cgroups)")

ROW, GRU, CTC, WER, TRAIN, BEAM = ("ex11_row_conv", "ex06_bigru", "ex04_ctc_loss", "ex03_wer", "ex09_training",
                                   "ex10_beam_search")


def sol(module: str) -> str:
    return (SOL / f"{module}.py").read_text()


def stub(module: str) -> str:
    return (EXE / f"{module}.py").read_text()


NOT_YET = "    raise NotImplementedError\n"

# A reply written by the student's code on the worker's reply descriptor, with the call's nonce read
# from the worker's memory (names built at run time, so that the run-time defences are what is tested).
FORGE = '''
import os, sys, json, struct
def _forge(body):
    w = sys.modules["__main__"]
    fd = getattr(getattr(w, "PR" + "OC"), "resp" + "_fd")
    os.write(fd, struct.pack(">Q", (1 << 40) if body is None else len(body)))
    body = body or b"x" * 64
    view = memoryview(body)
    while view:
        view = view[os.write(fd, view):]
    os._exit(0)
def _nonce():  # a local of the worker's request loop: read through the frames below this call
    f = getattr(sys, "_get" + "frame")()
    while f is not None:
        if "non" + "ce" in f.f_locals and "re" + "q" in f.f_locals:
            return f.f_locals["non" + "ce"]
        f = f.f_back
    raise LookupError("no nonce")
'''

#: ex06's gru_cell reached by every route a student might try after the static scan: torch._VF by a
#: name built at run time, another thread (torch's profiler saw only its own thread), a finaliser, the heap (gc), the watch itself rebound and its hold on the registrations dropped; whatever value comes back is sent as a forged "ok" reply with the call's nonce.
KERNEL_ROUTES = '''
import gc, threading
_TRIED = []
def _vf():
    return getattr(vars(sys.modules["torch." + "_V" + "F"])["v" + "f"], "gru" + "_cell")
def _try(label, fn):
    try:
        value = fn()
        _TRIED.append(label + ": VALUE")
        return value
    except BaseException as e:
        _TRIED.append(label + ": " + type(e).__name__)
def _routes(x, h, w):
    got = []
    yield "direct", lambda: _vf()(x, h, *w)
    t = threading.Thread(target=lambda: got.append(_try("thread", lambda: _vf()(x, h, *w))))
    yield "thread", lambda: (t.start(), t.join(), got[0] if got and got[0] is not None else 1 / 0)[2]
    yield "heap", lambda: gc.get_objects()
    f = getattr(sys, "_get" + "frame")()
    while f is not None and "wat" + "ch" not in f.f_locals:
        f = f.f_back
    watch = f.f_locals["wat" + "ch"] if f is not None else None
    def unwatch():
        type(watch).take = lambda self: []  # the report of the attempt gone, and its hold on the registrations
        return _vf()(x, h, *w)
    yield "watch rebound", unwatch
    class Late:
        def __del__(self):
            got.append(_try("finaliser", lambda: _vf()(x, h, *w)))
    Late()
    yield "finaliser", lambda: got[-1] if got and got[-1] is not None else 1 / 0
def gru_cell(x, h, *w):
    del _TRIED[:]
    for label, fn in _routes(x, h, w):
        value = _try(label, fn)
        if isinstance(value, torch.Tensor):
            body = json.dumps({"status": "ok", "nonce": _nonce(), "stdout": "", "events": [], "forbidden": [],
                               "value": {"__t": "tensor", "dtype": "float32", "shape": list(value.shape),
                                         "data": value.detach().flatten().tolist()}}).encode()
            _forge(body)
    raise RuntimeError("no route gave the kernel's value: " + "; ".join(_TRIED))
'''

#: student -> (exercise file, {function signature: the reply it forges}); ex11's function is called
#: by three checks, each starting with another weight shape, so each of its checks meets another forgery
FORGED = {
    "forged_replies_a": (ROW, {"row_conv(x, weight, lengths)": {
        # 64 MiB of {} in a list: 6.4 GB of dicts once decoded
        (3, 4): 'b\'{"status":"ok","nonce":"\' + _nonce().encode() + b\'","value":[\' + b"{}," * (21 << 20) + b"{}]}"',
        # nested 100,000 deep: a RecursionError in json.loads
        (3, 3): 'b\'{"status":"ok","nonce":"\' + _nonce().encode() + b\'","value":\' + b"[" * 100000 + b"]" * 100000 + b"}"',
        # an envelope of the wrong types where the grader reads fields
        (1, 4): 'json.dumps({"status": "raised", "nonce": _nonce(), "events": 5, "exc": {"type": 7, '
                '"frames": [{"x": 1}, 3]}, "stdout": ["a"]}).encode()'}}),
    "forged_replies_b": ("ex05_conv", {
        # a reply that is not an object at all
        "clipped_relu(x, ceiling=20.0)": 'json.dumps([_nonce(), "ok"]).encode()',
        # a tensor whose data does not match its shape, negative dimensions
        "mask_time(x, lengths)": 'json.dumps({"status": "ok", "nonce": _nonce(), "value": {"__t": "tensor", '
                                 '"dtype": "float32", "shape": [-2, -3], "data": ""}}).encode()',
        # a length over the reply limit (the header only)
        "conv_output_length(length, kernel_size, stride=1, padding=0, dilation=1)": "None"}),
}


def _forger(module, functions) -> str:
    src = stub(module) + FORGE
    for sig, body in functions.items():
        if isinstance(body, dict):
            src += f"\ndef {sig}:\n    k = tuple(weight.shape)\n" + "".join(
                f"    if k == {k!r}:\n        _forge({b})\n" for k, b in body.items()) + NOT_YET
        else:
            src += f"\ndef {sig}:\n    _forge({body})\n"
    return src


def _students(mode: str) -> dict:
    """student -> {file: text}; and what each test expects is written next to the tests below."""
    out: dict[str, dict[str, str]] = {}
    # ------------------------------------------------------------------ 1. degenerate answers (one mode)
    if mode == "process":
        wer = sol(WER)
        out["degenerate_wer"] = {f"{WER}.py": wer + "\ndef word_error_rate(refs, hyps):\n    raise ValueError('no')\n"
                                 "def char_error_rate(refs, hyps):\n    raise ValueError('no')\n"}
        out["honest_wer"] = {f"{WER}.py": wer + "\ndef word_error_rate(refs, hyps):\n" + NOT_YET
                             + "def char_error_rate(refs, hyps):\n" + NOT_YET}
        tr = sol(TRAIN)
        out["degenerate_train"] = {f"{TRAIN}.py": tr + "\ndef train_step(model, batch, optimizer, max_grad_norm):\n"
                                   "    return float('nan')\n"}
        out["honest_train"] = {f"{TRAIN}.py": tr + "\ndef train_step(model, batch, optimizer, max_grad_norm):\n"
                               + NOT_YET}
        out["degenerate_beam"] = {f"{BEAM}.py": stub(BEAM) + "\ndef prefix_beam_search(log_probs, encoder, "
                                  "beam_width=8, lm=None, alpha=0.5, beta=1.0):\n    return [('', -1000.0)]\n"}
        out["honest_beam"] = {f"{BEAM}.py": stub(BEAM)}
    # ------------------------------------------------------------------ 2. forged and tampered replies
    for name, (module, functions) in FORGED.items():
        if mode == "process" or name == "forged_replies_a":
            out[name] = {f"{module}.py": _forger(module, functions)}
    if mode != "process":  # the attacks below meet the same code in both modes: graded once
        return _in_both(out)
    detached = "\n_honest_cell = gru_cell\ndef gru_cell(x, h, *w):\n    return _honest_cell(x.detach(), h, *w)\n"
    out["detach_honest"] = {f"{GRU}.py": sol(GRU) + detached}
    out["rebind_leaves"] = {f"{GRU}.py": sol(GRU) + detached + "import sys\n"
                            "sys.modules['__main__']._leaves = lambda value, out: out\n"}
    # ------------------------------------------------------------------ 3. forbidden kernels
    out["vf_getattr"] = {f"{GRU}.py": sol(GRU) + "\nimport sys\ndef gru_cell(x, h, *w):\n"
                         "    return getattr(sys.modules['torch._VF'].vf, 'gru_cell')(x, h, *w)\n"}
    out["dynamic_kernel"] = {f"{GRU}.py": sol(GRU) + "\nimport sys\ndef gru_cell(x, h, *w):\n"
                             "    vf = vars(sys.modules['torch.' + '_V' + 'F'])['v' + 'f']\n"
                             "    return getattr(vf, 'gru' + '_cell')(x, h, *w)\n"}
    out["profiler_stopped"] = {f"{GRU}.py": sol(GRU) + "\nimport sys\ndef gru_cell(x, h, *w):\n"
                               "    try:\n        getattr(torch.autograd, '_disable' + '_profiler')()\n"
                               "    except RuntimeError:\n        pass\n"
                               "    vf = vars(sys.modules['torch.' + '_V' + 'F'])['v' + 'f']\n"
                               "    return getattr(vf, 'gru' + '_cell')(x, h, *w)\n"}
    # Every route to the kernel's value, then an "ok" reply forged with it (the nonce read through the
    # worker's frames): the kernel is refused at the dispatcher, so there is no value to forge with.
    out["forge_kernel"] = {f"{GRU}.py": sol(GRU) + FORGE + KERNEL_ROUTES}
    out["main_rename"] = {f"{CTC}.py": stub(CTC) + '\n__name__ = "__main__"\nif __name__ == "__main__":\n'
                          "    import torch.nn.functional as F\n"
                          "    def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction='mean'):\n"
                          "        return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=blank,\n"
                          "                          reduction=reduction)\n"}
    out["sibling_import"] = {f"{CTC}.py": stub(CTC) + "\nfrom ex09_training import F as _F\n"
                             "def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction='mean'):\n"
                             "    return _F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=blank,\n"
                             "                       reduction=reduction)\n", f"{TRAIN}.py": sol(TRAIN)}
    return _in_both(out)


def _in_both(out: dict) -> dict:
    """The attacks where the sandbox mode matters (a shared private /tmp, pids seen through a PID
    namespace), and the correct student."""
    # ------------------------------------------------------------------ 4. hidden inputs
    out["leak_hidden"] = {f"{ROW}.py": sol(ROW) + """
_SEEN = []
_honest = row_conv
def row_conv(x, weight, lengths):
    _SEEN.append((tuple(weight.shape), lengths.tolist()))
    print("seen so far:", _SEEN)
    return _honest(x, weight, lengths)
"""}
    # ------------------------------------------------------------------ 5. one student's resources
    out["thread_bomb"] = {f"{ROW}.py": sol(ROW) + """
import threading, time
_honest = row_conv
def row_conv(x, weight, lengths):
    started = 0
    try:
        for _ in range(3000):
            threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
            started += 1
    except BaseException as e:
        print("refused:", type(e).__name__)
    print("threads started:", started)
    return _honest(x, weight, lengths)
"""}
    out["memory_children"] = {f"{ROW}.py": sol(ROW) + """
import _posixsubprocess, os, sys
_honest = row_conv
_CODE = b"import time; a = b'x' * (700 << 20); time.sleep(60) # ag-attack2-child"
def _spawn():
    args = [sys.executable.encode(), b"-S", b"-c", _CODE]
    r, w = os.pipe()
    for extra in ((None, False), (None,)):
        try:
            return _posixsubprocess.fork_exec(args, [args[0]], True, (w,), None, None, -1, -1, -1, -1, -1, -1,
                                              r, w, True, True, -1, None, None, None, -1, *extra)
        except TypeError:
            continue
_DONE = []
def row_conv(x, weight, lengths):
    if not _DONE:
        _DONE.append(1)
        import time
        pids, codes = [_spawn() for _ in range(3)], {}
        deadline = time.monotonic() + 25  # until one is killed; each call may take 30 s (--timeout)
        while time.monotonic() < deadline and -9 not in codes.values():
            for pid in pids:
                if pid not in codes:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        codes[pid] = os.waitstatus_to_exitcode(status)
            time.sleep(0.1)
        print("children exit codes:", [codes.get(p) for p in pids])
    return _honest(x, weight, lengths)
"""}
    # ------------------------------------------------------------------ a correct student in the same batch
    out["correct"] = {f"{m}.py": sol(m) for m in (ROW, GRU, CTC)}
    return out


@pytest.fixture(scope="module", params=[pytest.param("bwrap", marks=needs_bwrap), "process"])
def graded(request, tmp_path_factory):
    mode = request.param
    base = tmp_path_factory.mktemp(f"attacks2-{mode}")
    subs = base / "subs"
    students = _students(mode)
    for name, files in students.items():
        (subs / name).mkdir(parents=True)
        for fname, text in files.items():
            (subs / name / fname).write_text(text)
    tmp = base / "tmp"
    tmp.mkdir()
    only = "ex03,ex04,ex05,ex06,ex09,ex10,ex11" if mode == "process" else "ex04,ex06,ex11"
    cmd = [PY, "-m", "autograder", "batch", str(subs), "--csv", str(base / "grades.csv"), "--jobs", "2",
           "--no-progress", "--only", only, "--timeout", "30"] + (["--no-sandbox"] if mode == "process" else [])
    env = dict(os.environ, TMPDIR=str(tmp), AUTOGRADER_SANDBOX="auto", AUTOGRADER_STUDENT_MEM="1.5")
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    return {"mode": mode, "base": base, "res": res, "students": students}


def _need(g, *names) -> None:
    for name in names:
        if name not in g["students"]:
            pytest.skip(f"{name}: the same code in both modes, graded in the process-mode batch only")


def _report(g, name) -> dict:
    return json.loads((g["base"] / "grades-reports" / f"{name}.json").read_text())


def _score(g, name, ex) -> float:
    return _report(g, name)["exercises"][ex]["score"]


def _checks(g, name, ex) -> list[dict]:
    return _report(g, name)["exercises"][ex]["checks"]


def test_the_batch_ran_without_grader_errors_and_the_correct_student_is_unaffected(graded):
    assert graded["res"].returncode == 0, graded["res"].stderr[-3000:]
    for name in graded["students"]:
        rep = _report(graded, name)
        assert not rep["grader_errors"], (name, rep["grader_errors"])
        assert not any(c["kind"] == "grader" for e in rep["exercises"].values() for c in e["checks"]), name
    for ex in ("ex04", "ex06", "ex11"):
        e = _report(graded, "correct")["exercises"][ex]
        assert e["score"] == e["max_score"], [(c["name"], c["message"]) for c in e["checks"] if c["status"] != "passed"]


# ----------------------------------------------------------------------------- 1. degenerate answers
@pytest.mark.parametrize("name,ex,hidden", [("wer", "ex03", "test_no_reference_words_is_a_value_error"),
                                            ("train", "ex09", "test_train_step_skips_non_finite"),
                                            ("beam", "ex10", "test_beam_search_beam_width")])
def test_a_degenerate_answer_earns_no_edge_case_point(graded, name, ex, hidden):
    if graded["mode"] != "process":
        pytest.skip("graded in the process-mode batch only (the sandbox plays no part)")
    check = next(c for c in _checks(graded, f"degenerate_{name}", ex) if c["name"] == hidden)
    assert check["status"] == "failed", check
    assert _score(graded, f"degenerate_{name}", ex) == _score(graded, f"honest_{name}", ex)


# ----------------------------------------------------------------------------- 2. replies
@pytest.mark.parametrize("name,ex", [("forged_replies_a", "ex11"), ("forged_replies_b", "ex05")])
def test_a_forged_reply_is_the_students_failure_never_the_graders(graded, name, ex):
    _need(graded, name)
    checks = {c["name"]: c for c in _checks(graded, name, ex)}
    assert _score(graded, name, ex) == 0
    assert all(c["status"] == "failed" and c["kind"] in ("protocol", "error") for c in checks.values()), checks
    expect = {"test_row_conv_values": "a reply of more than 1000000 items",
              "test_row_conv_gradient": "a reply nested more than 48 levels deep",
              "test_row_conv_edge_cases": "raised an exception: ",   # a forged "raised", cleaned: no frame
              "test_clipped_relu": "a reply that is a JSON list",
              "test_mask_time": "bad shape [-2, -3]",
              "test_conv_output_length": "a message of 1099511627776 bytes"}
    for check, marker in expect.items():
        if check in checks:
            assert marker in checks[check]["message"], checks[check]


def test_a_rebound_gradient_list_is_caught_and_earns_what_the_honest_part_earns(graded):
    _need(graded, "rebind_leaves")
    cell = {c["name"]: c for c in _checks(graded, "rebind_leaves", "ex06")}
    assert cell["test_gru_cell_gradient"]["status"] == "failed"
    assert "0 gradients for the 6 input tensors" in cell["test_gru_cell_gradient"]["message"], cell
    assert _score(graded, "rebind_leaves", "ex06") == _score(graded, "detach_honest", "ex06")


def test_replies_are_read_within_a_memory_and_a_depth_bound():
    nonce = b"0123456789abcdef"
    flood = b'{"status":"ok","nonce":"' + nonce + b'","value":[' + b"{}," * (21 << 20) + b"{}]}"
    deep = b'{"status":"ok","value":' + b"[" * 100000 + b"]" * 100000 + b"}"
    tracemalloc.start()
    try:
        for body in (flood, deep):
            started = time.monotonic()
            with pytest.raises(protocol.BadReply):
                protocol.loads_reply(body)
            assert time.monotonic() - started < 10
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(flood), peak  # a copy or two of the bytes, never the decoded objects
    with pytest.raises(protocol.BadReply):
        protocol.unpack_header((protocol.MAX_REPLY + 1).to_bytes(8, "big"), protocol.MAX_REPLY)
    # an honest reply of the same kind of data passes
    import torch
    ok = protocol.pack({"status": "ok", "nonce": "n", "value": protocol.encode([torch.ones(3, 4), "[[[{{{"] * 1000)})
    assert len(protocol.loads_reply(ok[8:])["value"]) == 2000


def test_every_reply_field_is_checked_before_use():
    import torch
    from autograder.sandbox import host as S

    clean = S.clean_reply({"status": "raised", "nonce": "n", "events": 5, "exc": {"type": 7, "frames": [{"x": 1}, 3]},
                           "stdout": ["a"], "forbidden": [1, "x"]})
    assert clean["events"] == [] and clean["stdout"] == "" and clean["forbidden"] == ["x"]
    assert clean["exc"]["type"] == "an exception" and clean["exc"]["frames"] == [{"file": "", "func": "", "code": "",
                                                                                   "line": 0}]
    for bad in ([1], {"status": "pwned"}, {"nonce": "n"}):
        with pytest.raises(S.BadReply):
            S.clean_reply(bad)
    x = torch.ones(2, 3, requires_grad=True)
    from autograder.checks._support import wire
    req = {"op": "call", "args": wire([x, 5, (x,)]), "grad": {"out_grad": None}}
    good = {"grads": protocol.encode([torch.zeros(2, 3), None])}
    assert len(S.check_grads(req, good)[0]) == 2
    for grads in ([], [torch.zeros(2, 3)], [torch.zeros(3, 2), None], [torch.zeros(2, 3, dtype=torch.long), None],
                  "x", [torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3)]):
        with pytest.raises(S.BadReply):
            S.check_grads(req, {"grads": protocol.encode(grads)})
    with pytest.raises(S.BadReply):
        S.check_grads(req, {})  # gradients asked for, neither gradients nor a reason
    assert S.check_grads(req, {"grad_error": "not differentiable"}) == (None, None)
    with pytest.raises(S.BadReply):
        S.check_value_shape({"op": "call", "attrs": ["a", "b"]}, [1, 2])


# ----------------------------------------------------------------------------- 3. forbidden kernels
def test_the_vf_getattr_route_is_found_by_the_scan(graded):
    _need(graded, "vf_getattr")
    rep = _report(graded, "vf_getattr")
    found = " ".join(rep["findings"]["ex06"])
    assert "'gru_cell'" in found and "torch._VF" in found, found
    assert rep["exercises"]["ex06"]["score"] == 0


@pytest.mark.parametrize("name,marker", [("dynamic_kernel", "your code called aten::gru_cell"),
                                         ("profiler_stopped", "your code called aten::gru_cell")])
def test_a_kernel_reached_by_a_name_built_at_run_time_is_caught_running(graded, name, marker):
    _need(graded, name)
    rep = _report(graded, name)
    assert not rep["findings"].get("ex06"), rep["findings"]  # nothing for the scan to see
    assert rep["exercises"]["ex06"]["score"] == 0
    cell = next(c for c in _checks(graded, name, "ex06") if c["name"] == "test_gru_cell")
    assert cell["kind"] == "forbidden" and marker in cell["message"], cell


def test_a_forged_reply_cannot_carry_a_forbidden_kernels_value(graded):
    """Issue 19's last route: read the nonce from the worker's memory, forge an "ok" reply before the
    watch reports.  The kernel is refused at torch's dispatcher, whatever route reaches it, so no
    route yields its value: the attack earns what its honest part (no gru_cell of its own) earns."""
    _need(graded, "forge_kernel")
    rep = _report(graded, "forge_kernel")
    assert not rep["findings"].get("ex06"), rep["findings"]  # names built at run time: nothing for the scan
    assert rep["exercises"]["ex06"]["score"] == 0
    checks = _checks(graded, "forge_kernel", "ex06")
    assert all(c["status"] == "failed" for c in checks), checks
    cell = next(c for c in checks if c["name"] == "test_gru_cell")
    # the watch's report was rebound away by the attack: the refusals still stood, so the check fails
    # on the student's own exception, which lists what each route got
    assert cell["kind"] in ("forbidden", "error"), cell
    tried = cell["message"]
    for route in ("direct: ForbiddenCall", "thread: ForbiddenCall", "heap: PermissionError",
                  "watch rebound: ForbiddenCall", "finaliser: ForbiddenCall"):
        assert route in tried, tried
    assert "VALUE" not in tried, tried


def test_setting_dunder_name_runs_no_main_block(graded):
    _need(graded, "main_rename")
    # the block defines ctc_loss with F.ctc_loss; it is compiled out, so the stub's NotImplementedError stays
    rep = _report(graded, "main_rename")
    assert not rep["findings"].get("ex04"), rep["findings"]
    assert rep["exercises"]["ex04"]["score"] == 0
    loss = [c for c in _checks(graded, "main_rename", "ex04") if c["name"].startswith("test_ctc_loss")]
    assert loss and all(c["kind"] == "notimpl" for c in loss), loss


def test_a_sibling_file_is_held_to_the_importing_exercises_rules(graded):
    _need(graded, "sibling_import")
    rep = _report(graded, "sibling_import")
    assert "in ex09_training.py, which this file imports" in " ".join(rep["findings"]["ex04"]), rep["findings"]
    assert rep["exercises"]["ex04"]["score"] == 0


def test_main_blocks_are_stripped_with_the_scans_own_predicate():
    import ast

    from autograder.sandbox import worker_isolation as W

    for src, guard in [('if __name__ == "__main__":\n    x = 1', True), ('if "__main__" == __name__:\n    x = 1', True),
                       ('if __name__ != "__main__":\n    x = 1', False), ('if __name__ == "__main__" or 1:\n    x = 1', False)]:
        test = ast.parse(src).body[0].test
        assert W.is_main_guard(test) is guard
        # what the worker does not strip, the scan scans
        assert bool(scan.scan_source(src.replace("x = 1", "import torch.nn.functional as F\n    F.ctc_loss"),
                                     EXERCISES["ex04"])) is not guard


# ----------------------------------------------------------------------------- 4. hidden inputs
def test_no_public_check_prints_what_a_hidden_check_sent(graded):
    checks = _checks(graded, "leak_hidden", "ex11")
    hidden_only = ("(7, 2)", "(1, 4)", "[1, 1, 1]")  # tau = 6, tau = 0 and T = 1: the hidden edge cases
    public = " ".join(c["output"] for c in checks if c["name"] != "test_row_conv_edge_cases")
    hidden = next(c for c in checks if c["name"] == "test_row_conv_edge_cases")
    assert "seen so far" in public and not any(m in public for m in hidden_only), public[-2000:]
    assert all(m in hidden["output"] for m in hidden_only)  # the attack does print them, where nobody sees
    assert "(3, 4)" not in hidden["output"]  # and the hidden worker is a fresh one
    assert _score(graded, "leak_hidden", "ex11") == 6


# ----------------------------------------------------------------------------- 5. resources
def test_thousands_of_threads_stop_at_the_students_cap(graded):
    out = " ".join(c["output"] for c in _checks(graded, "thread_bomb", "ex11"))
    counts = [int(x.split()[0]) for x in out.split("threads started:")[1:]]
    assert counts and max(counts) < 64, out[-1000:]
    assert "refused: RuntimeError" in out
    assert _score(graded, "thread_bomb", "ex11") == 6  # its honest part: row_conv itself is right


def test_detached_children_share_the_students_memory_and_do_not_outlive_grading(graded):
    out = " ".join(c["output"] for c in _checks(graded, "memory_children", "ex11"))
    codes = [json.loads(x.split("]")[0].replace("None", "null") + "]") for x in out.split("children exit codes: ")[1:]]
    assert codes and all(-9 in c for c in codes), out[-1000:]  # 3 x 700 MB > 1.5 GiB: the group's OOM killer
    assert _score(graded, "memory_children", "ex11") == 6
    left = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and b"ag-attack2-child" in Path(f"/proc/{pid}/cmdline").read_bytes():
                left.append(pid)
        except OSError:
            pass
    assert not left


def test_only_a_main_guards_body_goes_unscanned_and_unrun():
    """``else:`` of a main guard runs at import: scanned; ``!=`` is not a main guard: scanned."""
    ex = EXERCISES["ex04"]
    body = "import torch.nn.functional as F\nif {test}:\n    pass\nelse:\n    F.ctc_loss\n"
    assert scan.scan_source(body.format(test='__name__ == "__main__"'), ex)
    assert scan.scan_source('import torch.nn.functional as F\nif __name__ != "__main__":\n    F.ctc_loss\n', ex)


def test_the_dispatcher_watch_finds_every_key_torch_has_a_kernel_at():
    """``registered_keys`` reads the dispatcher's listing; the oracle is the dispatcher asked key by key
    (nothing is registered here: that would refuse the kernels in this test process too)."""
    import torch

    from autograder.sandbox import worker_isolation as W

    C = torch._C
    keys = list(C.DispatchKey.__members__)

    def has(name, key):
        try:
            return C._dispatch_has_kernel_for_dispatch_key(name, key)
        except RuntimeError:
            return False

    for name, must in (("aten::_ctc_loss", {"CPU", "Autograd"}), ("aten::gru_cell", {"CompositeImplicitAutograd"}),
                       ("aten::native_batch_norm", {"CPU", "Autograd"}), ("aten::stft.center", {"CompositeImplicitAutograd"})):
        listed = set(W.registered_keys(C, name, keys))
        assert must <= listed, (name, listed)
        assert {k for k in keys if has(name, k)} <= listed, name


def test_the_scan_flags_the_dispatchers_switches_where_kernels_are_forbidden():
    src = "import torch\nlib = torch._C._dispatch_library('IMPL', 'aten', '')\n"
    found = " ".join(str(f) for f in scan.scan_source(src, EXERCISES["ex06"]))
    assert "_dispatch_library" in found and "dispatcher" in found, found
    assert not any("dispatcher" in str(f) for f in scan.scan_source(src, EXERCISES["ex02"]))  # no kernel forbidden
