"""Every lesson executes top to bottom, is stored without outputs, and writes nothing into the repository.

Lessons with an exercise execute twice: with the untouched stubs (every "your turn" cell says the
function is not written yet and the lesson goes on with the reference), and with ``solutions/`` in
the student's place (every "your turn" cell agrees with the reference and the lesson goes on with
the student's code).  A few lessons also run with a buggy student file: the cell shows the mismatch
and the autograder's hint.
"""
from __future__ import annotations

import os
import re
import time

import nbformat
import pytest

from tools.run_lessons import LESSONS, ROOT, execute, lesson_paths, outputs_text, stored_outputs

SKIP_DIRS = {".git", ".venv", "build", "runs", "data_cache", "__pycache__", ".pytest_cache", ".ipynb_checkpoints"}


def snapshot() -> dict[str, float]:
    files = {}
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for f in filenames:
            p = os.path.join(dirpath, f)
            files[os.path.relpath(p, ROOT)] = os.stat(p).st_mtime
    return files


PATHS = lesson_paths()


def test_there_are_twelve_lessons():
    names = [p.name[:2] for p in PATHS]
    assert names == [f"{i:02d}" for i in range(len(names))], names
    assert len(PATHS) >= 11, f"expected lessons 00-11, found {names}"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_lesson_is_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert stored_outputs(nb) == [], f"{path.name} has stored outputs; clear them before committing"


FALLBACK = "the lesson goes on with the reference's"
# Lessons whose model must learn: the most a "held-out WER: 0.xx after N steps" line may print when the
# model is built from the student's pieces (solutions/ in the student's place), and with the stubs.
WER_LIMITS = {"09": 0.15, "11": 0.30}
RUNS = [(p, "stubs") for p in PATHS]   # the solutions runs: tests/test_lessons_solutions.py (a file of its
                                       # own, so that `pytest -n 2 --dist loadfile` runs the two passes at once)


RESULTS = ROOT / "build" / "lesson-results.txt"


def run_lesson(path, exercises, capsys, label):
    before = snapshot()
    t0 = time.perf_counter()
    nb = execute(path, exercises=exercises)
    seconds = time.perf_counter() - t0
    after = snapshot()
    changed = sorted(k for k in after if before.get(k) != after[k])
    assert not changed, f"{path.name} wrote into the repository: {changed[:10]}"
    with capsys.disabled():
        print(f"\n  {path.name} ({label}): {seconds:.1f} s", end="")
    text = outputs_text(nb)
    found = re.findall(r"held-out WER: \d+\.\d+ after \d+ steps", text)
    # one line per run in build/lesson-results.txt (git-ignored): the figures a closing note quotes,
    # also from a run on two processes, whose workers' prints pytest does not show
    RESULTS.parent.mkdir(exist_ok=True)
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M')}  {path.stem} ({label}): {seconds:.0f} s"
                f"{'; ' + found[0] if found else ''}\n")
    return text


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("path,mode", RUNS, ids=[f"{p.stem}-{m}" for p, m in RUNS])
def test_lesson_executes(path, mode, capsys):
    check_lesson_run(path, mode, capsys)


def check_lesson_run(path, mode, capsys):
    text = run_lesson(path, ROOT / ("exercises" if mode == "stubs" else "solutions"), capsys, mode)
    if path.name[:2] == "00":
        return
    if mode == "stubs":
        assert "not written yet" in text, f"{path.name} with the stubs never says a function is not written yet"
    else:
        wrong = [ln for ln in text.splitlines() if FALLBACK in ln]
        assert not wrong, f"{path.name} with solutions/ in the student's place fell back to the reference: {wrong}"
        assert "matches the reference" in text, f"{path.name} with solutions/ never ran the student's code"
    limit = WER_LIMITS.get(path.name[:2])
    if limit is not None:
        found = re.findall(r"held-out WER: (\d+\.\d+) after (\d+) steps", text)
        assert found, f"{path.name} printed no 'held-out WER: 0.xx after N steps' line"
        wer = float(found[0][0])
        assert wer <= limit, f"{path.name} ({mode}): held-out WER {wer} after {found[0][1]} steps, above {limit}"


# ----------------------------------------------------------------------------- a student with a bug
def _mutants():
    from tests.test_autograder_grading import MUTANTS   # one table of plausible bugs, for grader and lessons
    return {(f, name): (code, text) for f, name, code, text in MUTANTS}


BUGGY = [  # (lesson, exercise file, mutant of the grader's table)
    ("02_ctc_collapse", "ex02_ctc_decoding", "drop_blanks_first"),
    ("04_ctc_loss", "ex04_ctc_loss", "max_instead_of_logsumexp"),
    ("07_sequence_batchnorm", "ex07_batchnorm", "padding_in_statistics"),
]


@pytest.mark.slow
@pytest.mark.parametrize("lesson,module,mutant", BUGGY, ids=[b[2] for b in BUGGY])
def test_lesson_shows_a_buggy_students_mismatch_and_hint(lesson, module, mutant, tmp_path, capsys):
    import shutil

    code, hint_text = _mutants()[(module, mutant)]
    for f in (ROOT / "solutions").glob("ex[0-9][0-9]_*.py"):
        shutil.copy(f, tmp_path / f.name)
    target = tmp_path / f"{module}.py"
    target.write_text(target.read_text(encoding="utf-8") + "\n" + code, encoding="utf-8")
    path = LESSONS / f"{lesson}.ipynb"
    text = run_lesson(path, tmp_path, capsys, f"buggy: {mutant}")
    assert "does not match the reference" in text, f"{lesson} did not report the bug {mutant}"
    assert "Hint:" in text, f"{lesson} showed no hint for {mutant}:\n{text[-3000:]}"
    assert hint_text.lower() in text.lower(), f"{lesson} did not show the grader's hint {hint_text!r} for {mutant}"
