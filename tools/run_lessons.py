"""Execute the lessons headless: ``python -m tools.run_lessons [--html build/lessons] [NAMES...]``.

Each notebook runs top to bottom in a fresh kernel with ``lessons/`` as its working
directory; a failing cell fails the run (exit 1) with the cell's error.  ``--exercises DIR``
makes the lessons' "your turn" cells load DIR's files instead of ``exercises/`` (``DS2_EXERCISES``;
``--exercises solutions`` runs every lesson with the solutions in the student's place).  A notebook stored
with outputs is an error too (lessons are committed clean).  With ``--html DIR`` each
executed notebook is rendered to ``DIR/NN_name.html``.  Prints the seconds each lesson took.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"


def lesson_paths(names=()) -> list[Path]:
    paths = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))
    if names:
        paths = [p for p in paths if any(p.name.startswith(n) or p.stem == n for n in names)]
    return paths


def stored_outputs(nb) -> list[int]:
    """Indices of code cells that carry outputs or execution counts."""
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]


def execute(path: Path, timeout: int = 1200, exercises: str | Path | None = None):
    """Run one notebook; returns the executed notebook (raises on a failing cell).

    ``exercises``: the folder whose ``exNN_*.py`` the "your turn" cells load (default: the
    ``DS2_EXERCISES`` already set, else ``exercises/``).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # idle OpenMP threads spin by default: on a busy machine that makes 2 threads 5-10x slower
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    saved = os.environ.get("DS2_EXERCISES")
    if exercises is not None:
        os.environ["DS2_EXERCISES"] = str(Path(exercises).resolve())   # the kernel inherits it
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(LESSONS)}})
        client.execute()
    finally:
        if exercises is not None:
            if saved is None:
                os.environ.pop("DS2_EXERCISES", None)
            else:
                os.environ["DS2_EXERCISES"] = saved
    return nb


def outputs_text(nb) -> str:
    """Everything the executed notebook printed (stdout, stderr and text results), cell after cell."""
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream":
                parts.append(o.get("text", ""))
            elif "data" in o and "text/plain" in o["data"]:
                parts.append(o["data"]["text/plain"])
            elif o.get("output_type") == "error":
                parts.append("\n".join(o.get("traceback", [])))
    return "\n".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help="lesson numbers or names (default: all)")
    p.add_argument("--html", help="render executed notebooks to this folder")
    p.add_argument("--exercises", help="folder of exNN_*.py files the lessons load (default exercises/; "
                                       "e.g. solutions)")
    args = p.parse_args(argv)
    import nbformat

    failures, total = [], time.perf_counter()
    for path in lesson_paths(args.names):
        dirty = stored_outputs(nbformat.read(path, as_version=4))
        if dirty:
            failures.append(path.name)
            print(f"FAIL {path.name}: stored outputs in code cells {dirty} (clear them before committing)")
            continue
        t0 = time.perf_counter()
        try:
            nb = execute(path, exercises=args.exercises)
        except Exception as err:  # noqa: BLE001 - report every lesson, then fail
            failures.append(path.name)
            print(f"FAIL {path.name} after {time.perf_counter() - t0:.1f} s: {str(err)[-2000:]}")
            continue
        print(f"ok   {path.name} {time.perf_counter() - t0:.1f} s", flush=True)
        if args.html:
            from nbconvert import HTMLExporter
            out = Path(args.html)
            out.mkdir(parents=True, exist_ok=True)
            body, _ = HTMLExporter().from_notebook_node(nb)
            (out / f"{path.stem}.html").write_text(body, encoding="utf-8")
    print(f"{len(lesson_paths(args.names)) - len(failures)} passed, {len(failures)} failed in {time.perf_counter() - total:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
