"""The student release: what students receive, without the answer key.

    python -m autograder release DIR [--force]        (make release DIR=...)

writes ``DIR`` with ``lessons/``, ``exercises/`` (the stubs), ``reference/`` (the lessons run it),
``models/``, ``tools/``, ``docs/`` (instructor-only pages and blocks removed), the autograder with
the **public checks only**, ``requirements.txt``, ``pyproject.toml``, and a ``Makefile`` and
``README.md`` of its own (``make setup``, ``make grade``, ``make lab``, ``make handin``).  Not in it:
``solutions/``, ``tests/``, ``benchmarks/``, the hidden checks, and the instructor tooling that needs
them (batch grading, building the nbgrader course, Gradescope, similarity, generating the stubs).  The
nbgrader *support* module (what a notebook's test cells import) ships: it runs the public checks of the
release's own autograder; hidden test cells are empty in a released notebook.

The autograder's files are copied from an allowlist (:data:`AUTOGRADER_FILES`): a module added to
the autograder later stays out of the release until it is listed here.  Each check module is copied
through :func:`strip_hidden`, an AST pass that removes every check marked ``@pytest.mark.hidden``
and then every module-level helper or constant that only those checks used, so no hidden input
ships.  After writing, :func:`audit` greps the release for every hidden check's name and body and for
``solutions/``'s code, and the build fails if any is there.
"""
from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..spec import EXERCISES, exercise_of_file
from ..grading.visibility import all_checks, is_hidden_def

ROOT = Path(__file__).resolve().parents[2]
MARKER = ".ds2-student-release"

#: Folders copied whole (minus caches, checkpoints and scratch files).
TREES = ("lessons", "exercises", "reference", "models", "tools", "docs")
#: Top-level files copied as they are.
TOP_FILES = ("requirements.txt", "pyproject.toml", "LICENSE")
#: Pages of docs/ for instructors only.
INSTRUCTOR_DOCS = ("docs/instructors.md",)
#: The autograder a student needs to grade their own files (public checks, hand-in zips).
#: ``classroom/`` (the instructor's tooling) is not in it, nor ``generate.py``.
AUTOGRADER_FILES = (
    "__init__.py", "__main__.py", "spec.py", "README.md",
    "grading/README.md", "sandbox/README.md", "checks/README.md",
    "grading/__init__.py", "grading/gradeone.py", "grading/handin.py", "grading/report.py", "grading/runner.py",
    "grading/scan.py", "grading/visibility.py",
    "sandbox/__init__.py", "sandbox/bwrap.py", "sandbox/cgroup.py", "sandbox/fixtures.py", "sandbox/given.py",
    "sandbox/host.py", "sandbox/procs.py", "sandbox/protocol.py", "sandbox/worker.py", "sandbox/worker_isolation.py",
    "sandbox/worker_zygote.py", "sandbox/zygote.py",
    "nbgrader_support/__init__.py",  # test cells of nbgrader notebooks: `check(...)` runs the public checks here
    "checks/__init__.py", "checks/_inputs.py", "checks/_support.py", "checks/conftest.py", "checks/mistakes.py",
    "checks/pytest.ini",
) + tuple(f"checks/{ex.check_module}" for ex in EXERCISES.values())
#: The first line of a generated stub names the instructor's tooling; a student reads this one instead.
STUDENT_STUB_HEADER = "# Exercise {id} of the Deep Speech 2 course: edit only the regions marked `# YOUR CODE HERE`.\n"
_GENERATED_LINE = re.compile(r"\A# GENERATED[^\n]*by `python -m autograder\.generate`[.;]?[^\n]*\n")
#: ``<!-- instructor-only -->`` ... ``<!-- /instructor-only -->`` blocks are cut from Markdown pages.
_INSTRUCTOR_BLOCK = re.compile(r"<!-- instructor-only -->.*?<!-- /instructor-only -->\n?", re.DOTALL)
_SKIP = re.compile(r"(^|/)(__pycache__|\.ipynb_checkpoints|\.pytest_cache|_tmp[^/]*|\.[^/]*|[^/]*\.pyc)(/|$)")


class ReleaseError(Exception):
    pass


# ----------------------------------------------------------------------------- hidden checks out
def _top_name(node: ast.stmt) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if len(targets) == 1 and isinstance(targets[0], ast.Name):
            return targets[0].id
    return None


def strip_hidden(source: str) -> tuple[str, list[str]]:
    """``source`` without its hidden checks and the module-level helpers only they used.

    Returns (new source, names removed).  Line ranges are cut from the text (decorators included),
    so everything else keeps its formatting and comments."""
    tree = ast.parse(source)
    drop = [n for n in tree.body if isinstance(n, ast.FunctionDef) and is_hidden_def(n)]
    dropped_ids = {id(n) for n in drop}
    while True:  # helpers and constants nobody uses any more (a test_ function is never "unused")
        kept = [n for n in tree.body if id(n) not in dropped_ids]
        used: dict[str, int] = {}
        for n in kept:
            own = _top_name(n)
            for sub in ast.walk(n):
                if isinstance(sub, ast.Name) and sub.id != own:
                    used[sub.id] = used.get(sub.id, 0) + 1
        extra = [n for n in kept if _top_name(n) and not _top_name(n).startswith("test_")
                 and _top_name(n) not in ("pytestmark", "__all__") and _top_name(n) not in used]
        if not extra:
            break
        for n in extra:
            dropped_ids.add(id(n))
            drop.append(n)
    lines = source.splitlines(keepends=True)
    cut = [False] * len(lines)
    for n in drop:
        start = min([n.lineno] + [d.lineno for d in getattr(n, "decorator_list", [])]) - 1
        for i in range(start, n.end_lineno):
            cut[i] = True
        j = n.end_lineno  # the blank lines after it
        while j < len(lines) and not lines[j].strip():
            cut[j] = True
            j += 1
    out = "".join(line for line, c in zip(lines, cut) if not c)
    ast.parse(out)  # still a module
    return out, sorted(_top_name(n) for n in drop)


# ----------------------------------------------------------------------------- the release
def _files_of(tree: str) -> list[str]:
    out = []
    base = ROOT / tree
    for dirpath, dirnames, filenames in os.walk(base):
        rel_dir = os.path.relpath(dirpath, ROOT).replace(os.sep, "/")
        dirnames[:] = sorted(d for d in dirnames if not _SKIP.search(f"{rel_dir}/{d}"))
        for f in sorted(filenames):
            rel = f"{rel_dir}/{f}"
            if not _SKIP.search(rel) and not os.path.islink(os.path.join(dirpath, f)):
                out.append(rel)
    return out


def student_header(rel: str, text: str) -> str:
    """``text`` with the generated-file header (which names ``solutions/`` and the generator) worded for a student."""
    if not _GENERATED_LINE.match(text):
        return text
    ex = exercise_of_file(rel.rsplit("/", 1)[-1])
    if ex is not None:
        return _GENERATED_LINE.sub(STUDENT_STUB_HEADER.format(id=ex.id), text, count=1)
    rest = text.split("\n", 1)[0].split("`python -m autograder.generate`.", 1)[-1].strip()
    return _GENERATED_LINE.sub(f"# {rest}\n" if rest else "", text, count=1)


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def render(dest: Path) -> dict:
    """Write the release into ``dest`` (an empty folder); return its summary."""
    hidden = [c for c in all_checks() if c.hidden]
    public = [c for c in all_checks() if not c.hidden]
    written: list[str] = []

    def put(rel: str, data: bytes | str) -> None:
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        written.append(rel)

    for tree in TREES:
        for rel in _files_of(tree):
            if rel in INSTRUCTOR_DOCS:
                continue
            data = (ROOT / rel).read_bytes()
            if rel.endswith(".md"):
                data = _INSTRUCTOR_BLOCK.sub("", data.decode("utf-8")).encode("utf-8")
            elif rel.startswith("exercises/"):
                data = student_header(rel, data.decode("utf-8")).encode("utf-8")
            put(rel, data)
    for rel in TOP_FILES:
        if (ROOT / rel).is_file():
            put(rel, (ROOT / rel).read_bytes())
    for rel in AUTOGRADER_FILES:
        src = ROOT / "autograder" / rel
        if not src.is_file():
            raise ReleaseError(f"autograder/{rel} is missing: cannot build the release")
        text = src.read_text(encoding="utf-8")
        if rel.startswith("checks/test_ex"):
            text, _ = strip_hidden(text)
        elif rel.endswith(".md"):
            text = _INSTRUCTOR_BLOCK.sub("", text)
        put(f"autograder/{rel}", text)
    hidden_points = {}
    for c in hidden:
        hidden_points[c.exercise] = hidden_points.get(c.exercise, 0) + c.points
    info = {"format": "ds2-student-release", "built": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "from_commit": _git_commit(), "public_points": sum(c.points for c in public),
            "hidden_points": sum(hidden_points.values()), "hidden_points_per_exercise": hidden_points}
    put("autograder/release.json", json.dumps(info, indent=2) + "\n")
    put("Makefile", MAKEFILE)
    put("README.md", README.format(public=f"{info['public_points']:g}", hidden=f"{info['hidden_points']:g}"))
    put(".gitignore", ".venv/\n__pycache__/\n*.pyc\n.ipynb_checkpoints/\nbuild/\nruns/\ndata_cache/\n*.egg-info/\n"
                      "handin.zip\n")
    put(MARKER, "A student release of the Deep Speech 2 course (python -m autograder release).\n")
    return {"files": len(written), **info}


def audit(dest: Path) -> list[str]:
    """What in ``dest`` should not be there: solutions' files or code, hidden checks' names or bodies."""
    problems = []
    texts = {}
    for dirpath, _, filenames in os.walk(dest):
        for f in filenames:
            p = Path(dirpath) / f
            try:
                texts[p.relative_to(dest).as_posix()] = p.read_bytes().decode("utf-8", "replace")
            except OSError:
                pass
    if any(rel.startswith(("solutions/", "tests/")) for rel in texts):
        problems.append("solutions/ or tests/ is in the release")
    secrets = {}
    for ex in EXERCISES.values():
        tree = ast.parse((ROOT / "autograder" / "checks" / ex.check_module).read_text(encoding="utf-8"))
        for n in tree.body:
            if isinstance(n, ast.FunctionDef) and is_hidden_def(n):
                secrets[n.name] = f"the hidden check {n.name}"
                for stmt in n.body[1:] if ast.get_docstring(n) else n.body:
                    code = ast.unparse(stmt)
                    if len(code) >= 40:
                        secrets[code.splitlines()[0]] = f"a line of the hidden check {n.name}"
    for line in solution_only_lines():
        secrets[line] = "a line of solutions/"
    sol_bytes = {(ROOT / "solutions" / p).read_text(encoding="utf-8") for p in os.listdir(ROOT / "solutions")
                 if p.endswith(".py")}
    for rel, text in texts.items():
        if text in sol_bytes:
            problems.append(f"{rel} is a file of solutions/")
        for secret, what in secrets.items():
            if secret in text:
                problems.append(f"{rel} holds {what}: {secret[:80]!r}")
    return problems


def solution_only_lines(min_len: int = 30) -> list[str]:
    """Lines inside the ``### BEGIN SOLUTION`` regions of ``solutions/`` that appear nowhere in what the
    release copies from the course (the stubs, the reference, the lessons, the public autograder): the
    answer key's own code."""
    from ..generate import BEGIN_SOLUTION, END_SOLUTION

    shipped = []
    rels = [rel for tree in ("exercises", "reference", "lessons", "docs", "tools") for rel in _files_of(tree)]
    # the mistake models (autograder/checks/mistakes.py, shared with the lessons) are the right algorithm with
    # one bug each, so a few of their lines equal the solution's: they ship on purpose
    rels += [f"autograder/{rel}" for rel in AUTOGRADER_FILES if not rel.startswith("checks/test_")]
    for rel in rels:
        try:
            shipped.append((ROOT / rel).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            pass
    corpus = "\n".join(shipped)
    out = []
    for p in sorted((ROOT / "solutions").glob("ex*.py")):
        inside = False
        for line in p.read_text(encoding="utf-8").splitlines():
            s = line.strip()
            if BEGIN_SOLUTION in s:
                inside = True
            elif END_SOLUTION in s:
                inside = False
            elif inside and len(s) >= min_len and not s.startswith("#") and s not in corpus:
                out.append(s)
    return out


def build_release(directory: str | Path, force: bool = False) -> dict:
    dest = Path(directory).resolve()
    if dest == ROOT or ROOT in dest.parents and dest.parts[len(ROOT.parts)] not in ("build",):
        raise ReleaseError(f"{dest}: write the release outside the course repository (or under build/)")
    if dest.exists() and any(dest.iterdir()):
        if not force:
            raise ReleaseError(f"{dest} is not empty; pass --force to replace a release built there before")
        if not (dest / MARKER).is_file():
            raise ReleaseError(f"{dest} is not empty and is not a student release: refusing to replace it")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    info = render(dest)
    problems = audit(dest)
    if problems:
        shutil.rmtree(dest, ignore_errors=True)
        raise ReleaseError("the release would leak the answer key; nothing should be handed out from "
                           f"{dest}:\n  " + "\n  ".join(problems[:20]))
    return info


MAKEFILE = r"""# Deep Speech 2 from scratch (student release). Every target creates .venv on first use.
#   make setup                 create .venv and install everything
#   make grade                 grade exercises/ with the public checks (ONLY=ex04, FILES=path, V=1)
#   make lab                   open the lessons in JupyterLab
#   make handin STUDENT=<id>   zip exercises/ with a manifest, for submission

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ONLY   ?=
FILES  ?= exercises
V      ?=
STUDENT ?=
# pip's repeated "... is ignored: it is neither a file nor a directory" warnings: harmless, filtered as the course's Makefile does
PIP_NOISE := is ignored: it is neither
# torch's CPU build on Linux machines without an NVIDIA GPU (plain pip would fetch the CUDA build).
TORCH_INDEX ?= $(shell [ "$$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1 \
                 && [ -z "$$PIP_FIND_LINKS" ] && ! $(PYTHON) -m pip config list 2>/dev/null | grep -q find-links \
                 && echo https://download.pytorch.org/whl/cpu)

.PHONY: help setup grade lab lessons handin clean

help:
	@sed -n '1,6p' Makefile | sed 's/^# \{0,1\}//'

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet --disable-pip-version-check --index-url $(TORCH_INDEX) \
	    "$$(grep -E '^torch==' requirements.txt)")
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "$(PIP_NOISE)" || true
	@$(PY) -c "import torch, numpy, matplotlib, nbformat" || { echo "error: installing requirements.txt into $(VENV) failed"; exit 1; }
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 | grep -v "$(PIP_NOISE)" || true
	@$(PY) -c "import torch, reference, autograder" || { echo "error: installing into $(VENV) failed"; exit 1; }
	@touch $(STAMP)

setup: $(STAMP)

grade: $(STAMP)
	$(PY) -m autograder $(FILES) $(if $(ONLY),--only $(ONLY)) $(if $(V),-v)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab lessons/

lessons: $(STAMP)
	$(PY) -m tools.run_lessons --html build/lessons

handin: $(STAMP)
	$(PY) -m autograder handin exercises -o handin.zip $(if $(STUDENT),--student $(STUDENT))

clean:
	rm -rf build runs
"""

README = """# Deep Speech 2 from scratch

Lessons and exercises that build Deep Speech 2 (Amodei et al., 2015, arXiv 1512.02595) in PyTorch,
one idea at a time.

```bash
make setup          # .venv with torch and jupyter (a few minutes, once)
make lab            # the lessons in JupyterLab: start with lessons/00_walkthrough.ipynb
make grade          # grade your exercises/ (ONLY=ex04 for one; V=1 shows your code's output)
make handin STUDENT=<your id>   # handin.zip: the 11 files and a manifest, to hand in
```

* `lessons/` — one notebook per idea; each ends where your exercise begins.
* `exercises/exNN_*.py` — the stubs you fill in (the contract and shapes are in each docstring).
* `reference/` — a complete Deep Speech 2 the lessons run beside your code.
* `docs/` — the design of the course and what the checks demand (`docs/checks.md`).

`make grade` runs the **public checks** ({public} points). Your instructor's grading also runs
hidden checks ({hidden} points): the same contracts on other inputs (edge cases, random batches),
so code that is right for the contract passes them too. The autograder's README
(`autograder/README.md`) explains how grading works. If your course hands out the exercises as
Jupyter notebooks (nbgrader), open them in this folder's environment: `docs/nbgrader-students.md`.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder release",
                                description="Write the student release (no solutions/, no hidden checks) into DIR.")
    p.add_argument("directory", help="where to write it (outside the repository, or under build/)")
    p.add_argument("--force", action="store_true", help="replace a student release built there before")
    args = p.parse_args(argv)
    try:
        info = build_release(args.directory, force=args.force)
    except ReleaseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"student release in {args.directory}: {info['files']} files; public checks {info['public_points']:g} "
          f"points, hidden checks ({info['hidden_points']:g} points) left out")
    print(f"students: cd {args.directory} && make setup && make grade")
    return 0


if __name__ == "__main__":
    sys.exit(main())
