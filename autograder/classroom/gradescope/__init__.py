"""Gradescope: the autograder zip, and what runs inside Gradescope's container.

    python -m autograder gradescope [OUT.zip]        (make gradescope; default build/gradescope-autograder.zip)

The zip holds, at its root (Gradescope unpacks it into ``/autograder/source``):

* ``setup.sh`` -- run once when Gradescope builds the image: python3, bubblewrap, the course's pinned
  torch (CPU build) and the grading requirements (``requirements.txt``, the course's own lines);
* ``run_autograder`` -- run for every submission: ``python3 -m autograder gradescope-run``, which
  grades ``/autograder/submission`` with **every** check (hidden ones included) and writes
  ``/autograder/results/results.json``.  ``GRADESCOPE_ROOT`` moves ``/autograder`` (tests run it in
  a temporary folder), ``GRADESCOPE_PYTHON`` picks the interpreter;
* ``autograder/`` (with the hidden checks) and ``reference/`` (the oracle), ``pyproject.toml``;
* ``Dockerfile`` -- the same layout for instructors who grade in their own containers.

No ``solutions/`` and no stubs: grading needs only the checks and the reference.  Hidden checks
appear in ``results.json`` with ``"visibility": "after_published"`` and a one-line output without
their inputs (:func:`autograder.grading.report.gradescope`); the output's first line is the public score
(Gradescope hides the total while a test is hidden).  Whatever fails, a ``results.json`` is written
(:func:`failure_results`: score 0, "a grader error, not your score", the traceback in ``extra_data``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
DEFAULT_ZIP = "build/gradescope-autograder.zip"
#: Third-party packages the grading process needs (their lines, pins included, come from requirements.txt).
GRADING_PACKAGES = ("torch", "numpy", "tqdm", "pytest")
_SKIP = re.compile(r"(^|/)(__pycache__|\.ipynb_checkpoints|\.pytest_cache|_tmp[^/]*|\.[^/]*|[^/]*\.pyc)(/|$)")


def grading_requirements(text: str) -> str:
    keep = []
    for line in text.splitlines():
        name = re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower()
        if name in GRADING_PACKAGES:
            keep.append(line.strip())
    missing = set(GRADING_PACKAGES) - {re.split(r"[<>=!~;\[ ]", k, maxsplit=1)[0].lower() for k in keep}
    keep += sorted(missing)
    return ("# What the autograder needs to grade (from the course's requirements.txt, pins kept).\n"
            + "\n".join(keep) + "\n")


def _tree(rel: str):
    for dirpath, dirnames, filenames in os.walk(ROOT / rel):
        rel_dir = os.path.relpath(dirpath, ROOT).replace(os.sep, "/")
        dirnames[:] = sorted(d for d in dirnames if not _SKIP.search(f"{rel_dir}/{d}"))
        for f in sorted(filenames):
            r = f"{rel_dir}/{f}"
            if not _SKIP.search(r) and not os.path.islink(os.path.join(dirpath, f)):
                yield r


def build_zip(output: str | Path) -> list[str]:
    """Write the Gradescope autograder zip; return the names in it."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    members: list[tuple[str, bytes, bool]] = []
    for name in ("setup.sh", "run_autograder", "Dockerfile"):
        members.append((name, (HERE / name).read_bytes(), name != "Dockerfile"))
    members.append(("requirements.txt",
                    grading_requirements((ROOT / "requirements.txt").read_text(encoding="utf-8")).encode(), False))
    members.append(("pyproject.toml", (ROOT / "pyproject.toml").read_bytes(), False))
    for tree in ("autograder", "reference"):
        for rel in _tree(tree):
            if rel.startswith("autograder/classroom/gradescope/") and rel.rsplit("/", 1)[1] in (
                    "setup.sh", "run_autograder", "Dockerfile"):
                continue
            members.append((rel, (ROOT / rel).read_bytes(), False))
    tmp = output.with_name(output.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data, executable in members:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
            z.writestr(info, data)
    os.replace(tmp, output)
    return [m[0] for m in members]


# ----------------------------------------------------------------------------- inside Gradescope
def run(root: str | Path) -> dict:
    """Grade ``root/submission`` (every check) into ``root/results/results.json``; return the results."""
    from ...grading.gradeone import STATUS_OK, grade_located, limits_for
    from ...grading.report import gradescope, write_json_atomic
    from ...grading.runner import KIND_LABELS  # noqa: F401  (imported for its side effect of loading the runner)

    root = Path(root)
    submission = root / "submission"
    if not submission.is_dir():
        raise FileNotFoundError(f"{submission}: no submission folder (is GRADESCOPE_ROOT right?)")
    limits = limits_for(None)
    report = _Graded(grade_located(str(submission), "", None, limits))
    results = gradescope(report)
    head, _, rest = results["output"].partition("\n")  # the public score first (report.public_score_line)
    lines = [head]
    if report.data.get("status", STATUS_OK) != STATUS_OK:
        lines.append(f"status: {report.data['status']}")
    if rest:
        lines.append(rest)
    if report.grader_errors:
        lines.append("The grader itself failed on part of this submission: your instructor has been told "
                     "(extra_data.grader_errors).")
        results["extra_data"]["grader_errors"] = [e[:2000] for e in report.grader_errors]
    results["output"] = "\n".join(lines)
    results["extra_data"].update(status=report.data.get("status", ""), hashes=report.data.get("hashes", {}))
    write_json_atomic(str(root / "results" / "results.json"), results)
    return results


def failure_results(error: str) -> dict:
    """``results.json`` for a submission the autograder could not grade: score 0 with a message saying so
    (Gradescope shows "autograder failed" without any file), the error for the instructor."""
    from ...spec import TOTAL_POINTS

    return {"score": 0, "max_score": TOTAL_POINTS, "execution_time": 0, "tests": [], "visibility": "visible",
            "stdout_visibility": "hidden",
            "output": "The autograder failed on this submission (a grader error, not your score): your instructor "
                      "has been told and will grade it again. Resubmitting the same files will not change this.",
            "extra_data": {"status": "grader error", "grader_errors": [error[-4000:]]}}


class _Graded:
    """A report dict seen as the :class:`~autograder.grading.runner.Report` that ``report.gradescope`` reads."""

    def __init__(self, data: dict):
        from ...grading.runner import CheckResult

        self.data = data
        self.results = [CheckResult(**c) for ex in data.get("exercises", {}).values() for c in ex["checks"]]
        self.notes = list(data.get("notes", []))
        self.findings = data.get("findings", {})
        self.grader_errors = list(data.get("grader_errors", []))
        self.sandbox = data.get("sandbox", "")
        self.seconds = float(data.get("seconds", 0.0))
        self.score = data.get("score", 0)
        self.max_score = data.get("max_score", 0)


def run_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder gradescope-run",
                                description="Inside Gradescope: grade ROOT/submission into ROOT/results/results.json.")
    p.add_argument("--root", default=os.environ.get("GRADESCOPE_ROOT", "/autograder"))
    args = p.parse_args(argv)
    try:
        res = run(args.root)
    except BaseException as e:  # noqa: BLE001 -- whatever fails, Gradescope gets a results.json saying so
        import traceback

        from ...grading.report import write_json_atomic

        err = traceback.format_exc()
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        try:
            write_json_atomic(str(Path(args.root) / "results" / "results.json"), failure_results(err))
        except BaseException as e2:  # noqa: BLE001 -- the results folder itself is unusable
            print(f"error: could not write results.json either: {e2}", file=sys.stderr)
        if isinstance(e, KeyboardInterrupt):
            raise
        return 2 if isinstance(e, FileNotFoundError) else 3
    print(f"score {res['score']:g} / {res['max_score']:g}; results in {Path(args.root) / 'results' / 'results.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder gradescope",
                                description="Build the autograder zip to upload to Gradescope (hidden checks inside).")
    p.add_argument("output", nargs="?", default=DEFAULT_ZIP, help=f"the zip to write (default {DEFAULT_ZIP})")
    args = p.parse_args(argv)
    names = build_zip(args.output)
    print(f"wrote {args.output}: {len(names)} files (setup.sh, run_autograder, autograder/ with every check, "
          "reference/, Dockerfile)")
    print("upload it on Gradescope: Configure Autograder -> Zip file upload (docs/instructors.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
