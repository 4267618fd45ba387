"""Generate the student exercises (``exercises/``) from the instructor solutions (``solutions/``).

Usage (from the repository root)::

    python -m autograder.generate            # (re)write exercises/
    python -m autograder.generate --check    # exit 1, listing the files that differ

Every ``solutions/exNN_<topic>.py`` becomes ``exercises/exNN_<topic>.py``:

* each region fenced by nbgrader's markers, on their own lines at one indentation::

      ### BEGIN SOLUTION
      ...
      ### END SOLUTION

  is replaced, at that indentation, by::

      # YOUR CODE HERE
      raise NotImplementedError("exNN: <function>")

  where ``<function>`` is the enclosing ``def`` (``Class.method`` for a method);
* ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` regions are removed, markers included;
* everything else is copied verbatim, under a one-line header saying the file is generated.

Unbalanced, nested, mismatched or misspelt fences are a :class:`FenceError` naming the file
and line.  ``exercises/__init__.py``, ``exercises/README.md`` and ``exercises/Makefile`` (``make
grade`` from inside the folder) are generated too, so that ``--check`` covers the whole folder.
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FenceError", "BEGIN_SOLUTION", "END_SOLUTION", "BEGIN_HIDDEN", "END_HIDDEN",
    "exercise_id", "graded_names", "stub_source", "render", "generate", "check", "main",
]

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS_DIR = ROOT / "solutions"
EXERCISES_DIR = ROOT / "exercises"

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
_PAIRS = {BEGIN_SOLUTION: END_SOLUTION, BEGIN_HIDDEN: END_HIDDEN}
_MARKER_LIKE = re.compile(r"^#+\s*(BEGIN|END)\b", re.IGNORECASE)
_EXERCISE_FILE = re.compile(r"^(ex\d\d)_[a-z0-9_]+\.py$")

HEADER = ("# GENERATED from solutions/{name} by `python -m autograder.generate`; "
          "students: edit only the regions marked `# YOUR CODE HERE`.\n")


class FenceError(ValueError):
    """A solution file whose fences cannot be turned into stubs."""


@dataclass(frozen=True)
class _Region:
    marker: str
    line: int       # 1-based line of the BEGIN marker
    indent: str


def exercise_id(filename: str | Path) -> str | None:
    """``'ex04'`` for ``ex04_ctc_loss.py``; ``None`` for a file that is not an exercise."""
    m = _EXERCISE_FILE.match(Path(filename).name)
    return m.group(1) if m else None


def _function_spans(tree: ast.AST) -> list[tuple[int, int, str]]:
    """``(first_line, last_line, qualified_name)`` of every function, methods as ``Class.method``."""
    spans: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                spans.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return spans


def _enclosing_function(spans: list[tuple[int, int, str]], line: int) -> str | None:
    inside = [(start, name) for start, end, name in spans if start <= line <= end]
    return max(inside)[1] if inside else None


def _parse(source: str, filename: str) -> ast.Module:
    try:
        return ast.parse(source, filename=filename)
    except SyntaxError as err:
        raise FenceError(f"{filename}:{err.lineno}: not valid Python: {err.msg}") from None


def _scan(source: str, filename: str):
    """Yield ``(line_no, line, region, event)``; ``event`` is None, 'begin' or 'end'.  Checks the fences."""
    region: _Region | None = None
    lines = source.splitlines(keepends=True)
    for no, line in enumerate(lines, 1):
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if stripped in _PAIRS:
            if region is not None:
                raise FenceError(f"{filename}:{no}: '{stripped}' inside the region opened by "
                                 f"'{region.marker}' at line {region.line}: fences cannot be nested")
            region = _Region(stripped, no, indent)
            yield no, line, region, "begin"
        elif stripped in _PAIRS.values():
            if region is None:
                raise FenceError(f"{filename}:{no}: '{stripped}' without a matching BEGIN marker")
            if _PAIRS[region.marker] != stripped:
                raise FenceError(f"{filename}:{no}: '{stripped}' closes '{region.marker}' opened at "
                                 f"line {region.line}; expected '{_PAIRS[region.marker]}'")
            if indent != region.indent:
                raise FenceError(f"{filename}:{no}: '{stripped}' is indented differently from "
                                 f"'{region.marker}' at line {region.line}")
            yield no, line, region, "end"
            region = None
        else:
            if _MARKER_LIKE.match(stripped) and stripped.startswith("###"):
                raise FenceError(f"{filename}:{no}: unknown fence {stripped!r}; expected one of "
                                 f"{sorted(list(_PAIRS) + list(_PAIRS.values()))}")
            yield no, line, region, None
    if region is not None:
        raise FenceError(f"{filename}:{region.line}: '{region.marker}' is never closed "
                         f"(expected '{_PAIRS[region.marker]}')")


def check_fences(source: str, filename: str = "<solution>") -> int:
    """Raise :class:`FenceError` if the fences are unbalanced; return the number of solution regions."""
    return sum(1 for _, _, region, event in _scan(source, filename)
               if event == "begin" and region.marker == BEGIN_SOLUTION)


def graded_names(source: str, filename: str = "<solution>") -> list[str]:
    """Names of the functions (``Class`` for a method's class) that hold a solution region, in order."""
    spans = _function_spans(_parse(source, filename))
    names: list[str] = []
    for no, _, region, event in _scan(source, filename):
        if event == "begin" and region.marker == BEGIN_SOLUTION:
            func = _enclosing_function(spans, no)
            name = func.split(".")[0] if func else None
            if name and name not in names:
                names.append(name)
    return names


def stub_source(source: str, exercise: str, filename: str = "<solution>") -> str:
    """The student version of one solution file (without the generated-file header)."""
    spans = _function_spans(_parse(source, filename))
    out: list[str] = []
    for no, line, region, event in _scan(source, filename):
        if event == "begin":
            continue
        if event == "end":
            if region.marker == BEGIN_SOLUTION:
                func = _enclosing_function(spans, region.line)
                what = f"{exercise}: {func}" if func else exercise
                out.append(f"{region.indent}# YOUR CODE HERE\n")
                out.append(f'{region.indent}raise NotImplementedError("{what}")\n')
            continue
        if region is None:
            out.append(line)
    text = "".join(out)
    _parse(text, f"{filename} (generated)")
    return text


_INIT = '''"""Graded exercises of the Deep Speech 2 course, one file per exercise (see ``README.md``).

Fill in the stubs marked ``# YOUR CODE HERE`` in each ``exNN_<topic>.py`` and grade
yourself with ``make grade ONLY=exNN`` (or ``python -m autograder --only exNN``).
"""
'''

#: ``make grade`` (and ``make handin``) from inside ``exercises/``: run in the repository root.
_MAKEFILE = """\
# GENERATED by `python -m autograder.generate`. `make grade` works here too: each target runs in
# the repository root, with the same options (make grade ONLY=ex04; V=1 shows your code's output).
.PHONY: grade handin
grade handin:
	@$(MAKE) --no-print-directory -C .. $@
"""

_README = """\
# exercises/ — the graded exercises

<!-- instructor-only -->
**Generated** from `solutions/` by `python -m autograder.generate` (the student release rewrites
each stub's first line for students and leaves this paragraph out).
<!-- /instructor-only -->
Do not edit the scaffolding, only the regions marked `# YOUR CODE HERE`.

Each lesson in `lessons/` builds one idea and ends by pointing at its exercise here.

| id | file | exercise | you implement |
| --- | --- | --- | --- |
{table}

## How to work on an exercise

1. Read the lesson (`lessons/NN_*.ipynb`), then the exercise file's module docstring: what
   to implement, and which library shortcuts are forbidden.
2. Each stub's docstring gives the shapes of every argument and result, numbered steps, and a
   hint about the classic mistake. Replace

   ```python
       # YOUR CODE HERE
       raise NotImplementedError("ex01: frame_signal")
   ```

   with your code. Leave the signature, the input checks above the stub and the `return`
   below it as they are.
3. Each file stands on its own: use `torch`, `numpy`, `math` and the standard library.
   Never import `reference`, `solutions` or `autograder` (the grader refuses a file that does).
   Two files build on your earlier ones: `ex08` uses your `compute_spectrogram` (ex01), `ex09`
   your `greedy_decode` (ex02) and `word_error_rate` (ex03), through the given `_earlier` helper.
   The lessons hand them yours once it matches the reference (else the reference's); the grader
   grades `ex08` and `ex09` on their own, with the course's versions of those functions, so a
   mistake in an earlier exercise costs points only there.

## How to grade yourself

From the repository root, as often as you like:

```bash
make grade ONLY=ex01                 # one exercise
make grade                           # all of them
python -m autograder --only ex01     # the same, without make
```

The grader runs your functions and the reference implementation on the same inputs and
tells you, for each failing check, which input, what it expected and what you returned.
A stub you have not started yet reports `NotImplementedError: exNN: <name>`.

## Starting again

<!-- instructor-only -->
In the course repository, `git checkout -- exercises/exNN_<topic>.py` restores a pristine copy of
one exercise (the student release leaves this paragraph out: it is not a git repository).
<!-- /instructor-only -->
Every stub is handed out exactly as it is in the archive you received: to start an exercise again,
copy its file back from a fresh unpacked copy of that archive (or from a copy of `exercises/` you
made before you began). If you keep your work under version control, your first commit holds the
pristine stubs too.
"""


def _title(source: str) -> str:
    doc = ast.get_docstring(_parse(source, "<solution>")) or ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    m = re.match(r"Exercise \d+\s*[—-]+\s*(.*?)\s*(\(lesson \d+\))?\.?$", first)
    return m.group(1) if m else first


def render(solutions_dir: str | Path = SOLUTIONS_DIR) -> dict[str, str]:
    """``{file name: text}`` of everything :func:`generate` writes into ``exercises/``."""
    solutions_dir = Path(solutions_dir)
    files = sorted(p for p in solutions_dir.glob("*.py") if exercise_id(p.name))
    if not files:
        raise FenceError(f"no exercise files (exNN_<topic>.py) in {solutions_dir}")
    out: dict[str, str] = {"__init__.py": _INIT, "Makefile": _MAKEFILE}
    rows = []
    for path in files:
        ex = exercise_id(path.name)
        source = path.read_text(encoding="utf-8")
        where = f"solutions/{path.name}"
        out[path.name] = HEADER.format(name=path.name) + stub_source(source, ex, where)
        names = ", ".join(f"`{n}`" for n in graded_names(source, where))
        rows.append(f"| {ex} | `{path.name}` | {_title(source)} | {names} |")
    out["README.md"] = _README.format(table="\n".join(rows))
    return out


def generate(solutions_dir: str | Path = SOLUTIONS_DIR, exercises_dir: str | Path = EXERCISES_DIR) -> list[Path]:
    """Write the generated exercises into ``exercises_dir``; return the paths written.

    Everything is rendered (and every fence checked) before the first file is written.
    """
    rendered = render(solutions_dir)
    exercises_dir = Path(exercises_dir)
    exercises_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered.items():
        path = exercises_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check(solutions_dir: str | Path = SOLUTIONS_DIR, exercises_dir: str | Path = EXERCISES_DIR) -> list[str]:
    """Names of the files of ``exercises_dir`` that differ from what :func:`generate` would
    write: changed, missing, or an exercise file with no solution."""
    rendered = render(solutions_dir)
    exercises_dir = Path(exercises_dir)
    differ = []
    for name, text in rendered.items():
        path = exercises_dir / name
        if not path.is_file():
            differ.append(f"{name} (missing)")
        elif path.read_text(encoding="utf-8") != text:
            differ.append(name)
    if exercises_dir.is_dir():
        for path in sorted(exercises_dir.glob("*.py")):
            if exercise_id(path.name) and path.name not in rendered:
                differ.append(f"{path.name} (no solutions/{path.name})")
    return differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing the files of exercises/ that differ")
    parser.add_argument("--solutions", default=str(SOLUTIONS_DIR), help="source folder (default: solutions/)")
    parser.add_argument("--exercises", default=str(EXERCISES_DIR), help="target folder (default: exercises/)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            differ = check(args.solutions, args.exercises)
            if differ:
                print(f"{args.exercises} is out of date with {args.solutions}; run `python -m autograder.generate`:")
                for name in differ:
                    print(f"  {name}")
                return 1
            print(f"{args.exercises} is up to date with {args.solutions}")
            return 0
        written = generate(args.solutions, args.exercises)
        print(f"generated {len(written)} files in {args.exercises}")
        return 0
    except FenceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
