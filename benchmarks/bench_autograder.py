"""Autograder timings: one whole submission, and a class of 20 with ``batch --jobs 2``.

    python benchmarks/bench_autograder.py            # both figures
    python benchmarks/bench_autograder.py --single   # one submission only
    python benchmarks/bench_autograder.py --students 20 --jobs 2
    python benchmarks/bench_autograder.py --single --compare   # forked workers vs spawned ones

Targets (issue 3): one submission (all 11 exercises) <= 60 s on 2 CPU cores; the class of 20
is reported as seconds per student.  The "class" is 20 copies of ``solutions/`` (the slowest case:
every check runs to the end).  Workers are forked from a zygote by default (Linux); ``--compare``
also times ``AUTOGRADER_WORKER=spawn`` (one new interpreter per worker, the previous behaviour).
The machine's load average is printed next to each figure: on a shared machine compare only
figures taken under similar load.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg()) + " (1/5/15 min)"
    except OSError:
        return "?"


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--students", type=int, default=20)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--single", action="store_true", help="only time one whole submission")
    p.add_argument("--compare", action="store_true", help="also time one submission with spawned workers")
    args = p.parse_args()
    import torch

    print(f"machine: {os.cpu_count()} CPU cores; torch {torch.__version__}, torch threads {torch.get_num_threads()} "
          f"(grader), 1 thread per worker; python {sys.version.split()[0]}; load {_load()}")
    modes = [("", "forked workers (default)")] + ([("spawn", "spawned workers")] if args.compare else [])
    for mode, label in modes:
        env = dict(os.environ)
        if mode:
            env["AUTOGRADER_WORKER"] = mode
        t, cpu = time.perf_counter(), _children_cpu()
        res = subprocess.run([sys.executable, "-m", "autograder", str(ROOT / "solutions")], cwd=ROOT,
                             capture_output=True, text=True, env=env)
        single, cpu = time.perf_counter() - t, _children_cpu() - cpu
        total_line = [ln for ln in res.stdout.splitlines() if ln.startswith("TOTAL")]
        print(f"one whole submission (11 exercises), {label}: {single:.1f} s wall, {cpu:.1f} s CPU "
              f"({total_line[0] if total_line else 'no TOTAL line: ' + res.stderr[-300:]}); target <= 60 s: "
              f"{'OK' if single <= 60 else 'MISSED'}; load {_load()}")
    if args.single:
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="ag-bench-"))
    try:
        subs = tmp / "class"
        subs.mkdir()
        for i in range(args.students):
            d = subs / f"student{i:02d}"
            d.mkdir()
            for f in (ROOT / "solutions").glob("ex[0-9][0-9]_*.py"):
                shutil.copy(f, d / f.name)
        t, cpu = time.perf_counter(), _children_cpu()
        from autograder.sandbox import bwrap
        works, why = bwrap.probe()
        sandbox = [] if works else ["--no-sandbox"]
        print(f"sandbox: {'bwrap' if works else 'off (' + why + ')'}")
        res = subprocess.run([sys.executable, "-m", "autograder", "batch", str(subs), "--csv", str(tmp / "g.csv"),
                              "--jobs", str(args.jobs), "--no-progress", *sandbox], cwd=ROOT, capture_output=True,
                             text=True)
        wall, cpu = time.perf_counter() - t, _children_cpu() - cpu
        if res.returncode != 0:
            print(res.stderr[-2000:])
        print(f"class of {args.students} with --jobs {args.jobs}: {wall:.1f} s wall, "
              f"{wall / args.students:.1f} s per student ({cpu / args.students:.1f} s CPU per student); load {_load()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
