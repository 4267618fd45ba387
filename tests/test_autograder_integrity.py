"""Hostile submissions: each gets 0 for what it did not compute, and the grader survives it.

Every hostile submission is a copy of the ex11 (or ex02) solution with one function replaced by
an attack; they are graded together by one ``batch --jobs 2 --only ex02,ex11,...`` run with a
short per-call timeout, and each test reads its student's JSON report.  The batch runs in the
bwrap sandbox where it works (``--no-sandbox`` elsewhere): these attacks must fail in both, the
in-process layer alone stops each of them.  ``test_autograder_sandbox.py`` holds the attacks that
only the sandbox stops, and those on the batch itself.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.sandbox import bwrap

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SOL = ROOT / "solutions"

ROW = "ex11_row_conv"   # 6 points: row_conv values (3), gradient (1), edge cases (2)
DEC = "ex02_ctc_decoding"

# (student, exercise file, code appended to the solution, extra files, what the report must say)
HOSTILE = [
    ("conftest_planted", ROW, "def row_conv(x, weight, lengths):\n    return x\n",
     {"conftest.py": "import pytest\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
                     "    out = yield\n    r = out.get_result()\n    r.outcome = 'passed'\n"
                     "def pytest_collection_modifyitems(items):\n    items.clear()\n",
      "pytest.ini": "[pytest]\naddopts = -p no:python\n"}, "differs"),
    ("forged_results", ROW, """
import json, os
for _p in ('results.json', '../results.json', '/tmp/results.json', 'report.json'):
    try:
        open(_p, 'w').write(json.dumps({'score': 100, 'max_score': 100, 'tests': []}))
    except Exception:
        pass
def row_conv(x, weight, lengths):
    return x
""", {"results.json": '{"score": 100, "max_score": 100}', "report.json": '{"score": 100}'}, "differs"),
    ("sys_exit", ROW, "import sys\ndef row_conv(x, weight, lengths):\n    sys.exit(0)\n", {}, "sys.exit"),
    ("os_exit", ROW, "import os\ndef row_conv(x, weight, lengths):\n    os._exit(0)\n", {}, "exited with status 0"),
    ("infinite_loop", ROW, "def row_conv(x, weight, lengths):\n    while True:\n        pass\n", {}, "timed out"),
    ("huge_allocation", ROW, "def row_conv(x, weight, lengths):\n    a = [0] * (10 ** 10)\n    return a\n", {},
     "out of memory"),
    ("huge_tensor", ROW, "def row_conv(x, weight, lengths):\n    return torch.ones(2 ** 40)\n", {}, "raised"),
    ("prints_megabytes", ROW, "def row_conv(x, weight, lengths):\n    for _ in range(100):\n"
                              "        print('x' * 100000)\n    return x\n", {}, "output cap"),
    ("reads_passwd", ROW, "def row_conv(x, weight, lengths):\n    open('/etc/passwd').read()\n    return x\n", {},
     "reading /etc/passwd is not allowed"),
    ("reads_reference_source", ROW, f"def row_conv(x, weight, lengths):\n"
                                    f"    open({str(ROOT / 'reference' / 'layers.py')!r}).read()\n    return x\n", {},
     "is not allowed"),
    ("lists_directory", ROW, "import os\ndef row_conv(x, weight, lengths):\n    os.listdir('/')\n    return x\n", {},
     "listing / is not allowed"),
    ("imports_reference_dynamically", ROW, """
import importlib
def row_conv(x, weight, lengths):
    return importlib.import_module('refer' + 'ence').row_conv(x, weight, lengths)
""", {}, "not allowed"),
    ("imports_reference_by_path", ROW, f"""
import importlib.util
def row_conv(x, weight, lengths):
    spec = importlib.util.spec_from_file_location('r', {str(ROOT / 'reference' / 'layers.py')!r})
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m.row_conv(x, weight, lengths)
""", {}, "not allowed"),
    ("imports_solutions_via_dunder", ROW, """
def row_conv(x, weight, lengths):
    m = __import__('sol' + 'utions.ex11_row_conv', fromlist=['row_conv'])
    return m.row_conv(x, weight, lengths)
""", {}, "not allowed"),
    ("sys_modules_lookup", ROW, """
import sys
def row_conv(x, weight, lengths):
    return sys.modules['refer' + 'ence'].row_conv(x, weight, lengths)
""", {}, "KeyError"),
    ("static_import_reference", ROW, "from reference import row_conv\n", {}, "does not allow"),
    ("monkeypatch_comparisons", ROW, """
import numpy as _np
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
torch.Tensor.__eq__ = lambda *a, **k: True
_np.allclose = lambda *a, **k: True
_np.testing.assert_allclose = lambda *a, **k: None
def row_conv(x, weight, lengths):
    return torch.zeros_like(x)
""", {}, "differs"),
    ("eq_always_true", DEC, """
class _Liar(list):
    def __eq__(self, other):
        return True
    __hash__ = None
class _Obj:
    def __eq__(self, other):
        return True
def ctc_collapse(ids, blank=0):
    return _Liar([42])
def greedy_decode(log_probs, encoder, lengths=None):
    return _Obj()
""", {}, "subclass of list"),
    ("tensor_subclass", ROW, """
class _T(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.__eq__, torch.allclose, torch.equal, torch.isclose):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})
def row_conv(x, weight, lengths):
    return torch.zeros_like(x).as_subclass(_T)
""", {}, "subclass of torch.Tensor"),
    ("spawns_subprocess", ROW, """
import subprocess
def row_conv(x, weight, lengths):
    subprocess.run(['sleep', '100'])
    return x
""", {}, "starting a process"),
    ("fork_bomb", ROW, """
import os
def row_conv(x, weight, lengths):
    while True:
        os.fork()
""", {}, "forking"),
    ("socket", ROW, """
import socket
def row_conv(x, weight, lengths):
    socket.create_connection(('example.com', 80))
    return x
""", {}, "network access"),
    ("forbidden_call_obfuscated", "ex04_ctc_loss", """
import torch.nn.functional as _F
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean"):
    return getattr(_F, 'ctc_' + 'loss')(log_probs, targets, input_lengths, target_lengths, blank=blank,
                                        reduction=reduction)
""", {}, "forbids torch.nn.functional.ctc_loss"),
    ("forbidden_call_static", "ex01_spectrogram", """
def compute_spectrogram(audio, sample_rate=16000, n_fft=None, window_ms=20.0, stride_ms=10.0, eps=1e-10, normalize=True):
    return torch.stft(audio, 320, 160, window=torch.hann_window(320), return_complex=True).abs().log()
""", {}, "uses torch.stft"),
    ("crash_at_import", ROW, "raise SystemExit('bye')\n", {}, "importing ex11_row_conv.py"),
]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    subs = base / "submissions"
    subs.mkdir()
    for student, ex_file, code, extra, _ in HOSTILE:
        d = subs / student
        d.mkdir()
        src = (SOL / f"{ex_file}.py").read_text()
        (d / f"{ex_file}.py").write_text(src + "\n\n# --- hostile ---\n" + code)
        for name, text in extra.items():
            (d / name).write_text(text)
    csv_path = base / "grades.csv"
    cmd = [PY, "-m", "autograder", "batch", str(subs), "--csv", str(csv_path), "--jobs", "2", "--no-progress",
           "--only", "ex01,ex02,ex04,ex11", "--timeout", "3"] + ([] if bwrap.probe()[0] else ["--no-sandbox"])
    tmp = base / "tmp"  # the workers' sandboxes and the zygote's folder: found below by cwd
    tmp.mkdir()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=dict(os.environ, TMPDIR=str(tmp)))
    return {"res": res, "reports": base / "grades-reports", "base": base}


def _report(hostile, name):
    return json.loads((hostile["reports"] / f"{name}.json").read_text())


@pytest.mark.parametrize("student,ex_file,marker", [(s, e, m) for s, e, _, _, m in HOSTILE],
                         ids=[s for s, _, _, _, _ in HOSTILE])
def test_hostile_submission_scores_nothing_it_did_not_compute(hostile, student, ex_file, marker):
    assert hostile["res"].returncode == 0, hostile["res"].stderr[-3000:]
    rep = _report(hostile, student)
    ex = ex_file[:4]
    e = rep["exercises"][ex]
    checks = e["checks"]
    attacked = [c for c in checks if c["status"] == "failed"]
    assert attacked, f"{student}: no check failed"
    # the functions the attack replaced earn nothing; others in the file (the solution's) may still pass
    if ex == "ex11":
        assert e["score"] == 0, [(c["name"], c["status"]) for c in checks]
    elif ex == "ex02":
        assert e["score"] == 0
    else:
        assert e["score"] < e["max_score"]
    text = " ".join(c["message"] for c in attacked) + " " + " ".join(rep.get("findings", {}).get(ex, []))
    assert marker in text, f"{student}: expected {marker!r} in the report, got: {text[:1500]}"
    assert not rep["grader_errors"], rep["grader_errors"]


def test_forged_results_files_are_not_read_and_not_written_outside(hostile):
    assert not (hostile["base"] / "submissions" / "results.json").exists()
    rep = _report(hostile, "forged_results")
    assert rep["score"] == 0


def test_no_worker_outlives_the_batch(hostile):
    base = os.path.realpath(hostile["base"])
    out = []
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            try:  # a forked worker has the zygote's command line; its cwd is its sandbox
                cwd = os.path.realpath(os.readlink(f"/proc/{pid}/cwd"))
            except OSError:
                cwd = ""
            here = str(hostile["base"]) in cmd or cwd == base or cwd.startswith(base + os.sep)
            if ("worker.py" in cmd or "sleep\x00100" in cmd or "autograder" in cmd) and here:
                out.append(cmd)
    assert not out
