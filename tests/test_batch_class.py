"""Grading a real class with ``batch``: no silent zeros (nested folders, notebooks, empty folders), regrading
by content, the id map, the submission time and late penalties, and one feedback file per student
(public checks in full, hidden ones by title only)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder import bwrap, visibility
from autograder.late import LateRule, LateRuleError, parse_rule

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
EX02 = (ROOT / "solutions" / "ex02_ctc_decoding.py").read_text()
# public checks pass (they use blank 0), the hidden one with a non-zero blank fails
IGNORES_BLANK = EX02 + "\n\n_collapse = ctc_collapse\n\n\ndef ctc_collapse(ids, blank=0):\n    return _collapse(ids, 0)\n"
# a public check fails: every item decoded over all T frames
IGNORES_LENGTHS = EX02 + ("\n\n_greedy = greedy_decode\n\n\ndef greedy_decode(log_probs, encoder, lengths=None):\n"
                          "    return _greedy(log_probs, encoder, None)\n")
SANDBOX = [] if bwrap.probe()[0] else ["--no-sandbox"]


def batch(base: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [PY, "-m", "autograder", "batch", str(base / "subs"), "--csv", str(base / "out" / "grades.csv"),
           "--only", "ex02", "--no-progress", "--deadline", "2026-11-20T12:00:00+00:00", "--late-rule",
           "10%/day,cap=30%", "--ids", str(base / "ids.csv"), *SANDBOX, *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _set_mtime(path: Path, iso: str) -> None:
    from autograder.late import parse_time

    t = parse_time(iso).timestamp()
    os.utime(path, (t, t))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    subs = base / "subs"
    (subs / "alice_1234_attempt" / "ds2" / "exercises").mkdir(parents=True)   # a nested LMS download
    f = subs / "alice_1234_attempt" / "ds2" / "exercises" / "ex02_ctc_decoding.py"
    f.write_text(EX02)
    _set_mtime(f, "2026-11-20T11:00:00+00:00")                                  # on time
    (subs / "bob").mkdir(parents=True)
    f = subs / "bob" / "ex02_ctc_decoding.py"
    f.write_text(IGNORES_BLANK)
    _set_mtime(f, "2026-11-22T13:00:00+00:00")  # the files' time is overridden by the id map's LMS time
    (subs / "carol").mkdir()
    (subs / "carol" / "ex02.ipynb").write_text("{}")                            # notebooks, no .py
    (subs / "dave").mkdir()
    (subs / "dave" / "notes.txt").write_text("I could not finish")              # nothing gradable
    (subs / "frank").mkdir()
    f = subs / "frank" / "ex02_ctc_decoding.py"
    f.write_text(IGNORES_LENGTHS)
    _set_mtime(f, "2026-11-25T13:00:00+00:00")                                  # 5 days late: capped at 30 %
    r = subprocess.run([PY, "-m", "autograder", "handin", str(ROOT / "solutions"), "-o", str(subs / "erin.zip"),
                        "--student", "s-erin"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (base / "ids.csv").write_text("download name,student id,submitted\nalice_1234_attempt,s-alice,\n"
                                  "bob,s-bob,2026-11-21T12:30:00+00:00\ncarol,s-carol,\n")
    first = batch(base)
    reports = base / "out" / "grades-reports"
    mtimes = {p.name: p.stat().st_mtime_ns for p in reports.glob("*.json")}
    return base, first, mtimes


def _rows(base: Path) -> dict[str, dict]:
    with (base / "out" / "grades.csv").open(newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def test_no_silent_zeros(graded):
    base, res, _ = graded
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _rows(base)
    assert rows["alice_1234_attempt"]["status"].startswith("ok (") and rows["alice_1234_attempt"]["raw_score"] == "8"
    assert "ds2/exercises/" in rows["alice_1234_attempt"]["notes"]
    assert rows["carol"]["status"] == "notebooks, no .py files" and "ex02.ipynb" in rows["carol"]["notes"]
    assert rows["dave"]["status"] == "no exercise files" and "notes.txt" in rows["dave"]["notes"]
    assert rows["erin"]["status"] == "ok" and rows["erin"]["raw_score"] == "8"


def test_ids_submission_times_and_late_penalties(graded):
    base, res, _ = graded
    rows = _rows(base)
    hidden = sum(c.points for c in visibility.all_checks() if c.exercise == "ex02" and c.hidden)
    a, b, e, f = rows["alice_1234_attempt"], rows["bob"], rows["erin"], rows["frank"]
    assert (a["student_id"], b["student_id"], rows["carol"]["student_id"]) == ("s-alice", "s-bob", "s-carol")
    assert e["student_id"] == "s-erin" and "hand-in manifest" in e["notes"]  # the student's own claim, said so
    assert a["late"] == "on time" and a["score"] == "8" and a["submitted_from"] == "newest file's mtime"
    # bob: the LMS time from the id map (1 day 30 min late: 2 started days, 20 %)
    assert b["submitted_from"] == "id map" and b["late_penalty"] == "20"
    assert float(b["raw_score"]) == 8 - hidden and float(b["score"]) == pytest.approx((8 - hidden) * 0.8)
    assert e["submitted_from"] == "hand-in manifest" and e["late_penalty"] != ""
    assert f["late_penalty"] == "30" and float(f["score"]) == pytest.approx(float(f["raw_score"]) * 0.7)
    assert "frank" in res.stderr and "not in the id map" in res.stderr  # unmapped submissions are listed
    assert all(r["graded_at"] for r in rows.values())


def test_feedback_files_show_public_checks_in_full_and_hidden_ones_by_title(graded):
    base, _, _ = graded
    fb = base / "out" / "grades-feedback"
    assert sorted(p.stem for p in fb.glob("*.md")) == sorted(_rows(base))
    bob = (fb / "bob.md").read_text()
    hidden = next(c for c in visibility.all_checks() if c.exercise == "ex02" and c.hidden)
    assert hidden.title in bob and "FAIL" in bob and "hidden check" in bob
    assert "blank=28" not in bob and "ids=" not in bob  # no hidden input
    frank = (fb / "frank.md").read_text()
    assert "FAIL" in frank and "lengths" in frank and "greedy_decode" in frank  # the public message, in full
    assert "late" in frank and "-30%" in frank
    assert "notebooks" in (fb / "carol.md").read_text()


def test_regrading_by_content(graded):
    base, _, first = graded
    reports = base / "out" / "grades-reports"
    again = batch(base)
    assert again.returncode == 0 and "0 student(s)" in again.stdout and "6 already done" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in reports.glob("*.json")} == first
    time.sleep(0.05)
    (base / "subs" / "bob" / "ex02_ctc_decoding.py").write_text(EX02)     # bob fixes his code
    res = batch(base, "--regrade", "dave")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "graded 2 student(s)" in res.stdout and "4 already done" in res.stdout
    now = {p.name: p.stat().st_mtime_ns for p in reports.glob("*.json")}
    assert {n for n in now if now[n] != first[n]} == {"bob.json", "dave.json"}
    assert json.loads((reports / "bob.json").read_text())["score"] == 8
    assert _rows(base)["bob"]["raw_score"] == "8"
    res = batch(base, "--regrade", "nobody")
    assert res.returncode == 2 and "no student named nobody" in res.stderr


def test_late_rules():
    assert parse_rule("none") == LateRule() and parse_rule(None).penalty(10 ** 6) == 0
    r = parse_rule("10%/day,cap=25%")
    assert r.penalty(-5) == 0 and r.penalty(1) == 10 and r.penalty(86400) == 10 and r.penalty(86401) == 20
    assert r.penalty(10 * 86400) == 25
    g = parse_rule("2%/hour,grace=15min")
    assert g.penalty(900) == 0 and g.penalty(901) == 2 and g.penalty(3600 + 901) == 4
    for bad in ("10/day", "10%/fortnight", "10%/day,max=3", "10%/day,cap=200%"):
        with pytest.raises(LateRuleError):
            parse_rule(bad)


def test_handin_records_the_student_id(tmp_path):
    import zipfile

    out = tmp_path / "h.zip"
    r = subprocess.run([PY, "-m", "autograder", "handin", str(ROOT / "solutions"), "-o", str(out), "--student",
                        "s 1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "student id" in r.stderr
    r = subprocess.run([PY, "-m", "autograder", "handin", str(ROOT / "solutions"), "-o", str(out), "--student",
                        "s123"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "s123" in r.stdout
    manifest = json.loads(zipfile.ZipFile(out).read("MANIFEST.json"))
    assert manifest["student"] == "s123" and manifest["created"][-6] in "+-"  # ISO, with its UTC offset
