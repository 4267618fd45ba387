"""The disk a worker may fill without bwrap (process mode): each file under ``RLIMIT_FSIZE``, at most
256 files and folders, and the folder's bytes in all under ``Limits.disk_bytes``: the kernel's bound
where the worker mounts a tmpfs of its own (as root), else the grader's polling.

The hostile submission writes one large file (64 MiB) and then many medium ones (250 of 900 KiB,
each under the per-file cap), and catches every error so that it goes on; graded in one ``batch``
with a correct student after it, both ways."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.sandbox import host as sandbox

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ROW = "ex11_row_conv"
CAP_MIB = 24
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only (rlimits, tmpfs)")

FILLER = """
import os
_honest = row_conv
def row_conv(x, weight, lengths):
    written = 0
    try:
        with open("big.bin", "wb") as f:
            for _ in range(64):
                f.write(b"\\0" * (1 << 20))
                written += 1 << 20
    except OSError as e:
        print("big file stopped:", e.errno)
    n = 0
    try:
        for i in range(250):
            with open(f"medium{i}.bin", "wb") as f:
                f.write(b"\\1" * (900 << 10))
            written += 900 << 10
            n += 1
    except OSError as e:
        print("medium files stopped:", n, e.errno)
    print("written KiB:", written >> 10)
    return _honest(x, weight, lengths)
"""


def _grade(tmp_path, tmpfs: str) -> tuple[dict, dict, Path]:
    subs = tmp_path / "subs"
    for name, text in (("a_filler", (ROOT / "solutions" / f"{ROW}.py").read_text() + FILLER),
                       ("b_correct", (ROOT / "solutions" / f"{ROW}.py").read_text())):
        (subs / name).mkdir(parents=True)
        (subs / name / f"{ROW}.py").write_text(text)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    cmd = [PY, "-m", "autograder", "batch", str(subs), "--csv", str(tmp_path / "grades.csv"), "--jobs", "1",
           "--no-progress", "--only", "ex11", "--timeout", "30", "--no-sandbox"]
    env = dict(os.environ, TMPDIR=str(tmp), AUTOGRADER_SANDBOX="off", AUTOGRADER_WORKER_TMPFS=tmpfs,
               AUTOGRADER_WORKER_DISK=str(CAP_MIB))
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-3000:])
    reports = tmp_path / "grades-reports"
    return (json.loads((reports / "a_filler.json").read_text()), json.loads((reports / "b_correct.json").read_text()),
            tmp)


def _check_correct_and_clean(correct: dict, tmp: Path) -> None:
    assert not correct["grader_errors"]
    ex = correct["exercises"]["ex11"]
    assert ex["score"] == ex["max_score"], [(c["name"], c["message"]) for c in ex["checks"] if c["status"] != "passed"]
    assert not list(tmp.glob("ag-*")), list(tmp.iterdir())  # every worker folder is gone after grading


@pytest.mark.skipif(os.geteuid() != 0, reason="a tmpfs of the worker's own needs root")
def test_the_workers_own_tmpfs_bounds_what_it_writes(tmp_path):
    filler, correct, tmp = _grade(tmp_path, "on")
    assert not filler["grader_errors"], filler["grader_errors"]
    out = " ".join(c["output"] for c in filler["exercises"]["ex11"]["checks"])
    assert "big file stopped: 27" in out, out[-1500:]      # EFBIG: RLIMIT_FSIZE, the per-file cap
    assert "medium files stopped:" in out and " 28" in out.split("medium files stopped:")[1][:12]  # ENOSPC
    written = [int(x.split()[0]) for x in out.split("written KiB:")[1:]]
    assert written and max(written) <= CAP_MIB * 1024, written  # the folder's total, by the kernel
    assert filler["exercises"]["ex11"]["score"] == 6  # its honest part: it caught the errors, row_conv is right
    _check_correct_and_clean(correct, tmp)
    assert "autograder-worker" not in Path("/proc/self/mounts").read_text()  # the mounts went with the workers


def test_without_a_tmpfs_the_grader_polls_the_folder_and_stops_the_worker(tmp_path):
    filler, correct, tmp = _grade(tmp_path, "off")
    assert not filler["grader_errors"], filler["grader_errors"]
    checks = filler["exercises"]["ex11"]["checks"]
    stopped = [c for c in checks if c["kind"] == "disk"]
    assert stopped, [(c["name"], c["kind"], c["message"]) for c in checks]
    assert all(f"more than {CAP_MIB} MiB of files in all" in c["message"] for c in stopped)
    assert filler["exercises"]["ex11"]["score"] <= 6  # never more than its honest part
    _check_correct_and_clean(correct, tmp)


def test_folder_bytes_counts_allocated_bytes_and_refuses_huge_folders(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 100_000)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"y" * 50_000)
    (tmp_path / "link").symlink_to(tmp_path / "a")  # not followed: counted as the link itself
    n = sandbox.folder_bytes(str(tmp_path))
    assert 150_000 <= n < 150_000 + 5 * 8192, n
    assert sandbox.folder_bytes(str(tmp_path), limit_entries=2) == 1 << 62
