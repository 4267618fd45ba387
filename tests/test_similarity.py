"""The similarity report (``python -m autograder similarity``, copydetect): copies are flagged, against
each other and against reference/; independent work is not; the stub's own code never counts."""
from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("copydetect")

ROOT = Path(__file__).resolve().parents[1]
STUB = (ROOT / "exercises" / "ex02_ctc_decoding.py").read_text()

# Two independent ways to fill in the ex02 stubs (written for this test, in different styles).
ALICE = {  # the one alice and bob share
    'raise NotImplementedError("ex02: ctc_collapse")': """\
previous_symbol = -1
    for position in range(len(ids)):
        current = int(ids[position])
        if current == previous_symbol:
            continue
        previous_symbol = current
        if current == blank:
            continue
        out.append(current)""",
    'raise NotImplementedError("ex02: greedy_decode")': """\
winners = torch.argmax(log_probs, dim=2)
    for item in range(B):
        frames = winners[: int(lengths[item]), item].tolist()
        texts.append(encoder.decode(ctc_collapse(frames, blank=encoder.blank_idx)))""",
}
DAVE = {
    'raise NotImplementedError("ex02: ctc_collapse")': """\
import itertools
    out.extend(k for k, _group in itertools.groupby(int(v) for v in ids) if k != blank)""",
    'raise NotImplementedError("ex02: greedy_decode")': """\
best = log_probs.max(-1).indices.T.contiguous()
    texts.extend(encoder.decode(ctc_collapse(row[:n].tolist(), encoder.blank_idx))
                 for row, n in zip(best, lengths.tolist()))""",
}


def _fill(bodies: dict[str, str]) -> str:
    text = STUB
    for stub_line, body in bodies.items():
        assert stub_line in text
        text = text.replace(stub_line, body)
    return text


def _reference_copy() -> str:
    """carol pastes reference/ctc.py's ctc_collapse over the stub's function."""
    ref = (ROOT / "reference" / "ctc.py").read_text()
    fn = re.search(r"^def ctc_collapse\(.*?(?=^def )", ref, re.S | re.M).group(0)
    text = _fill({k: v for k, v in DAVE.items() if "greedy" in k})
    start = text.index("def ctc_collapse(")
    end = text.index("def greedy_decode(")
    return text[:start] + fn + "\n\n" + text[end:]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("similarity")
    subs = base / "subs"
    for name, text in [("alice", _fill(ALICE)), ("bob", _fill(ALICE).replace("previous_symbol", "last")),
                       ("carol", _reference_copy()), ("dave", _fill(DAVE)), ("erin", STUB)]:
        (subs / name).mkdir(parents=True)
        (subs / name / "ex02_ctc_decoding.py").write_text(text)
    res = subprocess.run([sys.executable, "-m", "autograder", "similarity", str(subs), "--out", str(base / "out"),
                          "--only", "ex02"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader((base / "out" / "similarity.csv").open()))
    return base, res, rows


def _pair(rows, a, b):
    for r in rows:
        if {r["a"], r["b"]} == {a, b} or (r["a"] == a and r["b"].startswith(b)):
            return r
    return None


def test_two_students_with_the_same_ex02_are_flagged(report):
    base, res, rows = report
    r = _pair(rows, "alice", "bob")  # bob renamed a variable: copydetect renames them all anyway
    assert r is not None and r["flagged"] == "yes", rows
    assert float(r["share_of_a"]) > 0.8 and float(r["share_of_b"]) > 0.8
    assert (base / "out" / "ex02.html").is_file()
    assert "alice" in res.stdout and "bob" in res.stdout


def test_a_copy_of_the_reference_is_flagged_against_reference(report):
    _, _, rows = report
    r = _pair(rows, "carol", "reference/ctc.py")
    assert r is not None and r["b_is"] == "reference" and r["flagged"] == "yes", rows


def test_independent_work_and_the_stub_are_not_flagged(report):
    _, _, rows = report
    for a, b in [("alice", "dave"), ("bob", "dave"), ("dave", "erin"), ("alice", "erin"),
                 ("dave", "solutions/"), ("alice", "solutions/")]:
        r = _pair(rows, a, b)
        assert r is None or r["flagged"] != "yes", r
    # erin handed in the untouched stub: the stub is boilerplate, so nothing of hers is "copied"
    assert not [r for r in rows if "erin" in (r["a"], r["b"]) and r["flagged"] == "yes"], rows


def test_the_html_report_loads_nothing_from_the_network(report):
    base, _, _ = report
    html = (base / "out" / "ex02.html").read_text()
    assert "cdn." not in html and "https://" not in html and "http://" not in html
    assert "data-bs-toggle" in html and "classList.toggle" in html  # the pairs still open and close


def test_calibration_on_independent_implementations_and_mutants():
    """Every exercise: the independent submission stays at or below the recorded share (with its margin
    under the threshold), and every mutant (solutions/ with a bug) is flagged against solutions/."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.similarity_calibration import calibrate

    from autograder.classroom.similarity import CALIBRATED_INDEPENDENT, NOISE, THRESHOLD

    res = calibrate(THRESHOLD, NOISE)
    assert len(res) == 11
    for ex_id, r in res.items():
        assert r["independent"] <= CALIBRATED_INDEPENDENT + 0.005, (ex_id, r)
        assert r["mutants"] is not None and r["mutants"] >= THRESHOLD, (ex_id, r)
    assert THRESHOLD - CALIBRATED_INDEPENDENT >= 0.15  # the margin the docs report
