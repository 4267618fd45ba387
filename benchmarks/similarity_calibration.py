"""Calibrate the similarity report (autograder/classroom/similarity.py) on code whose origin is known.

    python -m benchmarks.similarity_calibration [--threshold 0.5] [--noise 35]

For every exercise: the independent submission (tests/submissions/independent/, written from the
contracts alone) must stay below the threshold against solutions/ and reference/; each mutant of
tests/test_autograder_grading.py (a copy of solutions/ with one function rewritten, i.e. a copied
answer with a bug) must reach it.  Prints, per exercise, the independent file's largest share, the
mutants' smallest share, and the margins on both sides (threshold - independent, copies - threshold).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mutants() -> list[tuple[str, str, str]]:
    spec = importlib.util.spec_from_file_location("_grading_tests", ROOT / "tests" / "test_autograder_grading.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return [(m[0], m[1], m[2]) for m in mod.MUTANTS]


def calibrate(threshold: float, noise: int) -> dict[str, dict]:
    from autograder.classroom.similarity import compare_exercise
    from autograder.spec import EXERCISES

    by_ex: dict[str, list] = {}
    for module, name, code in _mutants():
        by_ex.setdefault(module[:4], []).append((name, code))
    out = {}
    with tempfile.TemporaryDirectory(prefix="ag-calibrate-") as tmp:
        staging = Path(tmp)
        for ex_id, ex in EXERCISES.items():
            students = {}
            indep = ROOT / "tests" / "submissions" / "independent" / ex.filename
            if indep.is_file():
                students["independent"] = indep
            sol = (ROOT / "solutions" / ex.filename).read_text()
            for name, code in by_ex.get(ex_id, []):
                p = staging / ex_id / f"mutant_{name}" / ex.filename
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(sol + "\n" + code)
                students[f"mutant_{name}"] = p
            pairs = compare_exercise(ex_id, students, staging, None, threshold=threshold, report_from=0.0,
                                     noise=noise)
            indep_share = max((max(p.share_a, p.share_b) for p in pairs
                               if "independent" in (p.a, p.b) and p.kind != "student"), default=0.0)
            mutant_share = min((max(p.share_a, p.share_b) for p in pairs
                                if p.a.startswith("mutant_") and p.kind == "solutions"), default=None)
            out[ex_id] = {"independent": indep_share, "mutants": mutant_share, "n_mutants": len(by_ex.get(ex_id, []))}
    return out


def main(argv=None) -> int:
    from autograder.classroom.similarity import NOISE, THRESHOLD

    p = argparse.ArgumentParser(prog="python -m benchmarks.similarity_calibration")
    p.add_argument("--threshold", type=float, default=THRESHOLD)
    p.add_argument("--noise", type=int, default=NOISE)
    args = p.parse_args(argv)
    res = calibrate(args.threshold, args.noise)
    print(f"threshold {args.threshold:g}, noise {args.noise}")
    print(f"{'exercise':8} {'independent':>11} {'margin':>7} {'mutants(min)':>12} {'margin':>7}")
    for ex_id, r in res.items():
        m = r["mutants"]
        print(f"{ex_id:8} {r['independent']:11.0%} {args.threshold - r['independent']:7.0%} "
              f"{'-' if m is None else format(m, '.0%'):>12} {'' if m is None else format(m - args.threshold, '.0%'):>7}"
              f"  ({r['n_mutants']} mutants)")
    worst = max(r["independent"] for r in res.values())
    copies = [r["mutants"] for r in res.values() if r["mutants"] is not None]
    print(f"largest independent share {worst:.0%} (margin {args.threshold - worst:.0%}); smallest copied-with-a-bug "
          f"share {min(copies):.0%} (margin {min(copies) - args.threshold:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
