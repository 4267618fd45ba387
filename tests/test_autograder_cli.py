"""The command line: scoreboard, --only, --json, --gradescope, exit codes, handin, determinism."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def run(*args, cwd=ROOT, timeout=300, env=None):
    return subprocess.run([PY, "-m", "autograder", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.fixture(scope="module")
def graded_ex11(tmp_path_factory):
    """Graded with spawned workers (AUTOGRADER_WORKER=spawn): the fallback path, end to end."""
    d = tmp_path_factory.mktemp("cli")
    res = run(str(ROOT / "solutions" / "ex11_row_conv.py"), str(ROOT / "exercises" / "ex02_ctc_decoding.py"),
              "--only", "ex11,ex02", "--json", str(d / "r.json"), "--gradescope", str(d / "gs.json"),
              env=dict(os.environ, AUTOGRADER_WORKER="spawn"))
    return res, d


def test_scoreboard_json_and_gradescope(graded_ex11):
    res, d = graded_ex11
    assert res.returncode == 0, res.stderr
    assert "ex11 row convolution: 6 / 6" in res.stdout
    assert "ex02 CTC collapse and greedy decoding: 0 / 8" in res.stdout
    assert "not started (ctc_collapse, greedy_decode: NotImplementedError)" in res.stdout  # one line, not per check
    assert "TOTAL 6 / 14" in res.stdout
    rep = json.loads((d / "r.json").read_text())
    assert rep["score"] == 6 and rep["max_score"] == 14
    gs = json.loads((d / "gs.json").read_text())
    assert gs["score"] == 6 and gs["max_score"] == 14 and gs["execution_time"] > 0
    assert {t["status"] for t in gs["tests"]} == {"passed", "failed"}
    for t in gs["tests"]:
        assert set(t) >= {"name", "score", "max_score", "status", "output", "visibility"}


def test_bad_arguments_exit_2(tmp_path):
    assert run("--only", "ex99").returncode == 2
    assert run(str(tmp_path / "nope")).returncode == 2
    (tmp_path / "notes.py").write_text("x = 1\n")
    assert run(str(tmp_path / "notes.py")).returncode == 2


def test_empty_folder_grades_zero_and_exits_0(tmp_path):
    res = run(str(tmp_path), "--only", "ex05")
    assert res.returncode == 0, res.stderr
    assert "no ex05 file in the submission" in res.stdout
    assert "TOTAL 0 / 7" in res.stdout


def test_handin_refuses_missing_files_and_zips_exactly_eleven(tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(ROOT / "exercises" / "ex01_spectrogram.py", partial)
    res = run("handin", str(partial), "-o", str(tmp_path / "x.zip"))
    assert res.returncode == 2 and "ex02_ctc_decoding.py" in res.stderr and not (tmp_path / "x.zip").exists()
    res = run("handin", str(ROOT / "solutions"), "-o", str(tmp_path / "h.zip"))
    assert res.returncode == 0, res.stderr
    names = sorted(zipfile.ZipFile(tmp_path / "h.zip").namelist())
    assert len(names) == 12 and "MANIFEST.json" in names and all(n.startswith("ex") for n in names if n != "MANIFEST.json")


def test_batch_accepts_handin_zips_and_reports_manifest_mismatch(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    assert run("handin", str(ROOT / "solutions"), "-o", str(subs / "alice.zip")).returncode == 0
    # bob edits a file after making his hand-in: the manifest no longer matches
    with zipfile.ZipFile(subs / "alice.zip") as z, zipfile.ZipFile(subs / "bob.zip", "w") as out:
        for n in z.namelist():
            data = z.read(n)
            if n == "ex11_row_conv.py":
                data += b"\n# edited\n"
            out.writestr(n, data)
    from autograder.sandbox import bwrap

    res = run("batch", str(subs), "--csv", str(tmp_path / "g.csv"), "--only", "ex11", "--no-progress",
              *([] if bwrap.probe()[0] else ["--no-sandbox"]))
    assert res.returncode == 0, res.stderr
    alice = json.loads((tmp_path / "g-reports" / "alice.json").read_text())
    bob = json.loads((tmp_path / "g-reports" / "bob.json").read_text())
    assert alice["score"] == 6 and not any("manifest" in n for n in alice["notes"])
    assert bob["score"] == 6 and any("does not match its manifest hash" in n for n in bob["notes"])
    assert "alice,6,6" in (tmp_path / "g.csv").read_text()


def test_same_submission_same_report(tmp_path):
    """Determinism: the same submission graded twice gives the same points and the same messages."""
    from autograder import grade

    src = (ROOT / "solutions" / "ex04_ctc_loss.py").read_text()
    (tmp_path / "ex04_ctc_loss.py").write_text(src + "\n_o = ctc_loss\n"
                                               "def ctc_loss(lp, t, il, tl, blank=0, reduction='mean'):\n"
                                               "    return _o(lp, t, il, tl, blank, 'none').mean() if reduction == 'mean' "
                                               "else _o(lp, t, il, tl, blank, reduction)\n")
    a, b = grade([str(tmp_path)], only=["ex04"]), grade([str(tmp_path)], only=["ex04"])
    strip = lambda r: [(c.name, c.status, c.earned, c.kind, c.message) for c in r.results]  # noqa: E731
    assert strip(a) == strip(b)
    assert 0 < a.score < a.max_score
