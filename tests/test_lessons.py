"""Every lesson executes top to bottom, is stored without outputs, and writes nothing into the repository."""
from __future__ import annotations

import os
import time

import nbformat
import pytest

from tools.run_lessons import LESSONS, ROOT, execute, lesson_paths, stored_outputs

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


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_lesson_executes(path, capsys):
    before = snapshot()
    t0 = time.perf_counter()
    execute(path)
    seconds = time.perf_counter() - t0
    after = snapshot()
    changed = sorted(k for k in after if before.get(k) != after[k])
    assert not changed, f"{path.name} wrote into the repository: {changed[:10]}"
    with capsys.disabled():
        print(f"\n  {path.name}: {seconds:.1f} s", end="")
