"""Issue 18, item 6: ex08 and ex09 use the student's own earlier functions, not copies of the answers.

* In a lesson, ``yourturn.load`` fills the file's ``EARLIER`` table with the lessons' choice: the
  student's function once it matches the reference, else the reference's.
* Standalone, ``_earlier`` loads the student's earlier file beside the exercise.
* The grader grades ex08 and ex09 on their own: the worker gets the course's earlier pieces
  (``autograder/sandbox/given.py``), and only those workers do.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jiwer
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

import reference as R  # noqa: E402
from autograder.sandbox import given  # noqa: E402


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_stubs_carry_no_earlier_answer():
    for f, gone in (("ex08_sortagrad.py", ("torch.fft.rfft", "hann_window", ".unfold(")),
                    ("ex09_training.py", ("argmax", "prev[j - 1]", "min(prev[j] + 1"))):
        text = (ROOT / "exercises" / f).read_text()
        assert not [g for g in gone if g in text], f
        assert "EARLIER" in text and "_earlier(" in text


def test_the_graders_pieces_equal_independent_oracles():
    g = torch.Generator().manual_seed(3)
    for n, kw in ((4000, {}), (3000, {"n_fft": 512}), (3000, {"n_fft": 256, "normalize": False})):
        audio = torch.randn(n, generator=g) * 0.1
        torch.testing.assert_close(given.compute_spectrogram(audio, **kw), R.compute_spectrogram(audio, **kw))
    enc = R.CharEncoder()
    lp = torch.randn(9, 3, enc.vocab_size, generator=g).mul(4).log_softmax(-1)
    assert given.greedy_decode(lp, enc, torch.tensor([9, 6, 2])) == R.greedy_decode(lp, enc, torch.tensor([9, 6, 2]))
    refs, hyps = ["the cat sat on it", "a dog", "see all"], ["the cat on it", "a dog ran", "sea all"]
    assert given.word_error_rate(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps))
    with pytest.raises(ValueError):
        given.word_error_rate([" "], ["a"])


def _folder(tmp_path: Path, earlier_from: str, buggy_ex01: bool = False) -> Path:
    d = tmp_path / f"student-{earlier_from}{'-buggy' if buggy_ex01 else ''}"
    d.mkdir()
    for f in ("ex01_spectrogram.py", "ex02_ctc_decoding.py", "ex03_wer.py"):
        shutil.copy(ROOT / earlier_from / f, d / f)
    if buggy_ex01:   # the student's ex01 forgets the log
        with open(d / "ex01_spectrogram.py", "a") as fh:
            fh.write("\n\n_right = compute_spectrogram\n"
                     "def compute_spectrogram(audio, *args, **kwargs):\n"
                     "    return _right(audio, *args, **kwargs).exp()\n")
    for f in ("ex08_sortagrad.py", "ex09_training.py"):
        shutil.copy(ROOT / "solutions" / f, d / f)
    return d


def test_standalone_the_file_uses_the_students_earlier_file(tmp_path):
    d = _folder(tmp_path, "exercises")
    ex08 = _module(d / "ex08_sortagrad.py", "h18_ex08_stub_earlier")
    with pytest.raises(NotImplementedError, match="ex01: compute_spectrogram"):
        ex08.compute_spectrogram(torch.zeros(1000))
    d2 = _folder(tmp_path, "solutions")
    ex09 = _module(d2 / "ex09_training.py", "h18_ex09_sol_earlier")
    assert ex09._word_error_rate(["a b c"], ["a c"]) == pytest.approx(1 / 3)
    assert ex09.EARLIER["word_error_rate"].__code__.co_filename == str(d2 / "ex03_wer.py")


@pytest.mark.parametrize("buggy", [False, True])
def test_the_lessons_choose_yours_once_it_matches(tmp_path, buggy):
    d = _folder(tmp_path, "solutions", buggy_ex01=buggy)
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'lessons')!r})\n"
            "import yourturn as yt\n"
            "m, why = yt.load('ex08')\n"
            "fn = m.EARLIER['compute_spectrogram']\n"
            "print(fn.__module__, yt.owner('compute_spectrogram'))\n")
    res = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, DS2_EXERCISES=str(d)))
    assert res.returncode == 0, res.stderr[-2000:]
    module, whose = res.stdout.split()
    assert (module, whose) == (("reference.features", "reference") if buggy else ("yourturn_ex01_spectrogram", "yours"))


def test_the_grader_grades_ex08_and_ex09_on_their_own_and_only_they_get_the_pieces(tmp_path):
    d = _folder(tmp_path, "exercises")   # ex01-ex03 not written yet
    # a hostile ex01 that asks for the pieces the grader gives ex08: it must not get them
    with open(d / "ex01_spectrogram.py", "w") as fh:
        fh.write((ROOT / "solutions" / "ex01_spectrogram.py").read_text().replace("### BEGIN SOLUTION", "")
                 + "\n\nEARLIER = {'compute_spectrogram': None}\n"
                 "def compute_spectrogram(audio, *args, **kwargs):\n"
                 "    return EARLIER['compute_spectrogram'](audio, *args, **kwargs)\n")
    out = tmp_path / "report.json"
    res = subprocess.run([PY, "-m", "autograder", str(d), "--only", "ex01,ex08,ex09", "--timeout", "120",
                          "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    rep = json.loads(out.read_text())
    ex = rep["exercises"]
    assert ex["ex08"]["score"] == ex["ex08"]["max_score"] == 9, res.stdout[-3000:]
    assert ex["ex09"]["score"] == ex["ex09"]["max_score"], res.stdout[-3000:]
    spec_checks = [c for c in ex["ex01"]["checks"] if c["name"].startswith("test_compute_spectrogram")]
    assert spec_checks and all(c["status"] == "failed" for c in spec_checks), spec_checks
