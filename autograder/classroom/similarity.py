"""Similarity report over a class, with `copydetect <https://github.com/blingenf/copydetect>`_ (0.5.0).

    python -m autograder similarity SUBMISSIONS --out DIR [--threshold 0.5] [--only ex02,ex04]
    make similarity SUBMISSIONS=dir [OUT=build/similarity]

For each exercise: every pair of submissions, and each submission against ``solutions/`` (the
answer key) and every module of ``reference/`` (a student may copy the reference's function).  The
exercise's stub (``exercises/exNN_*.py``) is copydetect's *boilerplate*: code every student was
given (signatures, docstrings, input checks) never counts as copied.  Submissions are found as
``batch`` finds them (a folder or hand-in zip per student, nested layouts included).

Writes ``DIR/similarity.csv`` (one row per pair at or above ``--report-from``, default 0.2: exercise,
a, b, what b is, the share of a's and of b's code found in the other, tokens in common, flagged) and
``DIR/exNN.html`` (copydetect's side-by-side report of that exercise, made to work offline: its CDN
links are replaced by a small inline style and script, :func:`offline_html`).  A pair is **flagged** when the
larger share reaches ``--threshold`` (default 0.5).  copydetect compares tokens after renaming
variables and functions, so a pair is a lead to read, not a verdict: short functions written from the
same contract can overlap, and the HTML shows what matched.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .batch import safe_row
from ..spec import EXERCISES

ROOT = Path(__file__).resolve().parents[2]
THRESHOLD = 0.5
REPORT_FROM = 0.2
#: copydetect's noise (= guarantee) threshold: matches shorter than this many characters of tokenized
#: code do not count.  copydetect's default, 25, let the natural 4-line greedy_decode of an independent
#: student match the answer key at 53 % (tests/test_similarity.py's fixtures); 35 leaves it at 35 %
#: while a copy of a reference function stays at 53 % and a shared file at 100 %.
NOISE = 35
#: Calibration (``python -m benchmarks.similarity_calibration``, checked by tests/test_similarity.py): with
#: NOISE and THRESHOLD as above, the course's independent submission (tests/submissions/independent/)
#: reaches at most this share against solutions/ and reference/ on any exercise (ex03: 34 %, ex07: 33 %),
#: while every mutant (a copy of solutions/ with one function rewritten) reaches 100 %.  The margin below
#: the threshold is printed with every report: short exercises leave little room, so read flagged pairs.
CALIBRATED_INDEPENDENT = 0.34


@dataclass
class Pair:
    exercise: str
    a: str             # a student
    b: str             # another student, "solutions/exNN_....py" or "reference/....py"
    kind: str          # "student" | "solutions" | "reference"
    share_a: float     # how much of a's code is found in b
    share_b: float
    tokens: int
    flagged: bool


def _collect(submissions: str, only: list[str] | None, staging: Path) -> dict[str, dict[str, Path]]:
    """``{exercise: {student: staged file}}`` for every student's exercise files."""
    from .batch import list_students
    from ..grading.gradeone import locate
    from ..grading.runner import find_submission_files

    out: dict[str, dict[str, Path]] = {}
    for name, path in list_students(submissions, str(staging / "_lms")):
        if os.path.islink(path.rstrip(os.sep)):
            continue
        loc = locate(path, name)
        try:
            files, _ = find_submission_files(loc.paths) if loc.paths else ({}, [])
            for ex_id, f in files.items():
                if only and ex_id not in only:
                    continue
                dest = staging / ex_id / name / os.path.basename(f)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest, follow_symlinks=False)
                out.setdefault(ex_id, {})[name] = dest
        finally:
            if loc.tmp:
                shutil.rmtree(loc.tmp, ignore_errors=True)
    return out


def compare_exercise(ex_id: str, students: dict[str, Path], staging: Path, out_dir: Path | None,
                     threshold: float = THRESHOLD, report_from: float = REPORT_FROM, noise: int = NOISE) -> list[Pair]:
    """Every pair of ``students`` and each against solutions/ and reference/, for one exercise."""
    from copydetect import CopyDetector

    ex = EXERCISES[ex_id]
    refs: dict[str, tuple[str, str]] = {}  # staged path -> (label, kind)
    sol = ROOT / "solutions" / ex.filename
    if sol.is_file():
        dest = staging / "_key" / ex_id / "solutions" / ex.filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sol, dest)
        refs[str(dest)] = (f"solutions/{ex.filename}", "solutions")
    for p in sorted((ROOT / "reference").glob("*.py")):
        if p.name != "__init__.py":
            refs[str(p)] = (f"reference/{p.name}", "reference")
    detector = CopyDetector(test_dirs=[], ref_dirs=[], boilerplate_dirs=[], extensions=["py"], noise_t=noise,
                            guarantee_t=noise, display_t=min(report_from, 0.99), autoopen=False, silent=True,
                            out_file=str(out_dir / f"{ex_id}.html") if out_dir else "./report.html")
    label = {}
    for name, path in sorted(students.items()):
        detector.add_file(str(path), "testref")
        label[str(path)] = (name, "student")
    for path, lab in refs.items():
        detector.add_file(path, "ref")
        label[path] = lab
    stub = ROOT / "exercises" / ex.filename
    if stub.is_file():
        detector.add_file(str(stub), "boilerplate")
    detector.run()
    pairs: list[Pair] = []
    seen = set()
    sim = detector.similarity_matrix
    if len(sim) == 0:
        return pairs
    for i, tf in enumerate(detector.test_files):
        for j, rf in enumerate(detector.ref_files):
            if tf == rf or sim[i, j, 0] < 0:
                continue
            key = tuple(sorted((tf, rf)))
            if key in seen:
                continue
            seen.add(key)
            sa, sb = float(sim[i, j, 0]), float(sim[i, j, 1])
            if max(sa, sb) < report_from:
                continue
            (a, _), (b, kind) = label[tf], label[rf]
            pairs.append(Pair(ex_id, a, b, kind, round(sa, 3), round(sb, 3),
                              int(detector.token_overlap_matrix[i, j]), max(sa, sb) >= threshold))
    if out_dir is not None and pairs:
        detector.generate_html_report()
        offline_html(out_dir / f"{ex_id}.html")
    pairs.sort(key=lambda p: (-max(p.share_a, p.share_b), p.a, p.b))
    return pairs


_CDN = re.compile(r"<link[^>]*https?://[^>]*>|<script[^>]*src=\"https?://[^>]*>\s*</script>", re.I)
#: What copydetect's page took from Bootstrap's CDN, kept small: layout, tables, buttons, and the
#: show/hide of each pair's side-by-side code (``data-bs-toggle="collapse"``).
OFFLINE_HEAD = """<style>
body{font-family:system-ui,sans-serif;margin:1em}.container{max-width:1400px;margin:auto}
.row,.d-flex{display:flex;gap:1em}.col,.col3{flex:1;min-width:0}.table{border-collapse:collapse;width:100%}
.table td,.table th{border:1px solid #ccc;padding:.3em}.table-striped tr:nth-child(odd){background:#f4f4f4}
.btn{padding:.3em .8em;border:1px solid #666;border-radius:4px;background:#eee;cursor:pointer}
.collapse{display:none}.collapse.show{display:block}.card{border:1px solid #ccc;padding:.5em}
</style>
<script>
document.addEventListener("click", function (e) {
  var b = e.target.closest("[data-bs-toggle=collapse]");
  if (!b) return;
  var t = document.querySelector(b.getAttribute("data-bs-target"));
  if (t) t.classList.toggle("show");
});
</script>
"""


def offline_html(path: Path) -> None:
    """copydetect's report without its CDN links (Bootstrap): a small inline style and script instead, so
    the page works offline and loads nothing from elsewhere."""
    text = path.read_text(encoding="utf-8")
    text = _CDN.sub("", text)
    text = text.replace("</head>", OFFLINE_HEAD + "</head>", 1)
    path.write_text(text, encoding="utf-8")


def similarity_report(submissions: str, out_dir: str | Path, only: list[str] | None = None,
                      threshold: float = THRESHOLD, report_from: float = REPORT_FROM, noise: int = NOISE) -> list[Pair]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs: list[Pair] = []
    with tempfile.TemporaryDirectory(prefix="ag-similarity-") as tmp:
        staging = Path(tmp)
        per_ex = _collect(submissions, only, staging)
        for ex_id in EXERCISES:
            if ex_id in per_ex:
                pairs += compare_exercise(ex_id, per_ex[ex_id], staging, out, threshold, report_from, noise)
    fd, tmp_csv = tempfile.mkstemp(prefix=".tmp-", suffix=".csv", dir=out)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["exercise", "a", "b", "b_is", "share_of_a", "share_of_b", "tokens_in_common", "flagged"])
        for p in pairs:
            w.writerow(safe_row([p.exercise, p.a, p.b, p.kind, f"{p.share_a:.3f}", f"{p.share_b:.3f}", p.tokens,
                                 "yes" if p.flagged else ""]))
    os.replace(tmp_csv, out / "similarity.csv")
    return pairs


def main(argv: list[str] | None = None) -> int:
    from ..grading.gradeone import parse_only

    p = argparse.ArgumentParser(prog="python -m autograder similarity",
                                description="copydetect over a class: every pair of submissions, and each against "
                                            "solutions/ and reference/, per exercise (the stubs' code excluded).")
    p.add_argument("submissions", help="one sub-folder or hand-in .zip per student (as for batch)")
    p.add_argument("--out", required=True, help="folder for similarity.csv and the exNN.html reports")
    p.add_argument("--only", type=parse_only, help="these exercises only, e.g. ex02,ex04")
    p.add_argument("--threshold", type=float, default=THRESHOLD,
                   help=f"flag a pair when this share of one file is found in the other (default {THRESHOLD})")
    p.add_argument("--report-from", type=float, default=REPORT_FROM,
                   help=f"list pairs from this share on (default {REPORT_FROM})")
    p.add_argument("--noise", type=int, default=NOISE,
                   help=f"shortest match that counts, in characters of tokenized code (default {NOISE})")
    args = p.parse_args(argv)
    if not os.path.isdir(args.submissions):
        p.error(f"{args.submissions}: not a folder")
    if args.noise < 5:
        p.error("--noise must be at least 5")
    if not (0 < args.threshold <= 1 and 0 <= args.report_from <= args.threshold):
        p.error("expected 0 < --threshold <= 1 and 0 <= --report-from <= --threshold")
    try:
        import copydetect  # noqa: F401
    except ImportError:
        p.error("copydetect is not installed: .venv/bin/python -m pip install copydetect==0.5.0 (requirements.txt)")
    pairs = similarity_report(args.submissions, args.out, args.only, args.threshold, args.report_from, args.noise)
    flagged = [x for x in pairs if x.flagged]
    print(f"{len(pairs)} pair(s) at or above {args.report_from:g}, {len(flagged)} flagged (>= {args.threshold:g}); "
          f"{os.path.join(args.out, 'similarity.csv')} and one exNN.html per exercise with pairs")
    print(f"calibration: independent implementations reached at most {CALIBRATED_INDEPENDENT:.0%} against the answer "
          f"key (margin {THRESHOLD - CALIBRATED_INDEPENDENT:.0%} below the default threshold {THRESHOLD:.0%}); "
          "copies of it with a bug 100%. A flag is a lead to read, not a verdict")
    for x in flagged[:30]:
        print(f"  {x.exercise}: {x.a} ~ {x.b} ({x.kind}): {x.share_a:.0%} of {x.a}, {x.share_b:.0%} of {x.b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
