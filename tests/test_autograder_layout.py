"""The autograder's folders are its layers, and its imports go one way only (issue 20, item 9).

    spec, generate          the course's table of exercises; the stub generator      import nothing of ours
    nbgrader_support        what a student's nbgrader notebook imports               spec
    sandbox/                where the student's code runs, and the grader's side     spec
    checks/                 the checks pytest runs, their comparisons and mistakes   spec, sandbox
    grading/                one submission: run the checks, scan, report             spec, sandbox, checks
    classroom/              a class: batch, LMS, release, Gradescope, nbgrader, ...  all of the above
    __init__, __main__      the package and its command line                         anything

Read from the source with ``ast`` (imports inside functions included), so a lazy import that goes
the wrong way fails too.  Each folder's README.md says the same in words.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "autograder"

#: layer -> the other layers it may import (its own is always allowed).
ALLOWED = {
    "spec": set(),
    "generate": set(),
    "nbgrader_support": {"spec"},
    "sandbox": {"spec"},
    "checks": {"spec", "sandbox"},
    "grading": {"spec", "sandbox", "checks"},
    "classroom": {"spec", "generate", "nbgrader_support", "sandbox", "checks", "grading"},
    "cli": {"spec", "generate", "nbgrader_support", "sandbox", "checks", "grading", "classroom"},
}
SUBPACKAGES = ("sandbox", "checks", "grading", "classroom")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def layer_of(module: str) -> str:
    """The layer of ``autograder.X...``: its first component below ``autograder``."""
    parts = module.split(".")
    assert parts[0] == "autograder", module
    if len(parts) == 1 or parts[1] in ("__main__",):
        return "cli"
    return parts[1] if parts[1] in ALLOWED else "unknown:" + parts[1]


def exists(module: str) -> bool:
    p = ROOT.joinpath(*module.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def imports_of(source: str, module: str, package: bool, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, imported ``autograder`` module) for every import in ``source``, relative ones resolved."""
    tree = ast.parse(source)
    nodes = tree.body if top_level_only else ast.walk(tree)
    here = module.split(".") if package else module.split(".")[:-1]
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "autograder"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "autograder":
                continue
            for a in node.names:  # `from pkg import module` names the module, not the package
                sub = f"{target}.{a.name}"
                out.append((node.lineno, sub if exists(sub) else target))
    return out


def violations(path: Path, source: str | None = None) -> list[str]:
    module = module_name(path)
    source = path.read_text(encoding="utf-8") if source is None else source
    mine = layer_of(module)
    bad = []
    for line, target in imports_of(source, module, is_package(path)):
        where = f"{path.relative_to(ROOT)}:{line}"
        if not exists(target):
            bad.append(f"{where} imports {target}, which does not exist")
            continue
        theirs = layer_of(target)
        if theirs != mine and theirs not in ALLOWED.get(mine, ()):
            bad.append(f"{where}: {mine} imports {theirs} ({target}); {mine} may import only "
                       f"{sorted(ALLOWED.get(mine, ())) or 'nothing of ours'}")
    return bad


def all_modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_belongs_to_a_layer():
    unknown = [str(p.relative_to(ROOT)) for p in all_modules() if layer_of(module_name(p)).startswith("unknown")]
    assert not unknown, f"modules outside the layers (add them to a folder, or to ALLOWED): {unknown}"


def test_imports_go_one_way():
    bad = [v for p in all_modules() for v in violations(p)]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_wrong_way_import():
    """The rule can fail: an import up the layers (also a lazy one, also a relative one) is reported."""
    runner = PKG / "grading" / "runner.py"
    assert violations(runner, "def f():\n    from ..classroom import batch\n")
    assert violations(PKG / "sandbox" / "host.py", "from ..grading.runner import grade\n")
    assert violations(PKG / "checks" / "_support.py", "import autograder.grading.report\n")
    assert violations(PKG / "spec.py", "from . import generate\n")
    assert violations(runner, "from ..batch import run_batch\n")  # a path that does not exist (any more)
    assert not violations(runner, "from ..sandbox import host\nfrom ..checks import _support\nfrom . import scan\n")


def test_the_real_graph_has_the_edges_the_layers_describe():
    """Not vacuous: the import reader finds the edges the layers are made of."""
    def targets(rel):
        p = PKG / rel
        return {t for _, t in imports_of(p.read_text(encoding="utf-8"), module_name(p), is_package(p))}

    assert {"autograder.sandbox.host", "autograder.checks._support", "autograder.spec"} <= targets("grading/runner.py")
    assert {"autograder.sandbox.zygote", "autograder.grading.gradeone"} <= targets("classroom/batch.py")
    assert {"autograder.sandbox.bwrap", "autograder.sandbox.zygote", "autograder.spec"} <= targets("sandbox/host.py")
    assert "autograder.checks.mistakes" in targets("checks/_support.py")


@pytest.mark.parametrize("name", ["worker.py", "worker_isolation.py", "worker_zygote.py", "protocol.py",
                                  "fixtures.py"])
def test_the_worker_side_files_import_nothing_of_the_course(name):
    """What is copied into the sandbox (/opt/ag-worker) runs as plain files there: no package, so no
    relative import, and nothing of ``autograder``, ``reference`` or ``solutions`` (not in the sandbox)."""
    from autograder.sandbox import bwrap

    assert name in bwrap.WORKER_FILES
    assert set(bwrap.WORKER_FILES) <= {p.name for p in (PKG / "sandbox").glob("*.py")}  # one folder
    tree = ast.parse((PKG / "sandbox" / name).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not node.level, f"sandbox/{name}:{node.lineno}: a relative import"
            roots = [(node.module or "").split(".")[0]]
        elif isinstance(node, ast.Import):
            roots = [a.name.split(".")[0] for a in node.names]
        else:
            continue
        assert not set(roots) & {"autograder", "reference", "solutions"}, f"sandbox/{name}:{node.lineno}"


def test_the_package_root_and_the_cli_load_no_tooling_at_import():
    """Importing ``autograder`` (which every subpackage does first) loads only ``spec``; the command line
    imports the class tooling and the generator inside the subcommands, which the student release, that
    has no ``classroom/``, refuses with a message (``__main__.INSTRUCTOR_ONLY``)."""
    init = PKG / "__init__.py"
    assert {t for _, t in imports_of(init.read_text(), "autograder", True, top_level_only=True)} == {"autograder.spec"}
    main = PKG / "__main__.py"
    top = {t for _, t in imports_of(main.read_text(), "autograder.__main__", False, top_level_only=True)}
    assert not {t for t in top if layer_of(t) in ("classroom", "generate")}, top
    from autograder.__main__ import INSTRUCTOR_ONLY

    for cmd, rel in INSTRUCTOR_ONLY.items():
        p = PKG.joinpath(*rel.split("/"))
        assert p.with_suffix(".py").is_file() or (p / "__init__.py").is_file(), (cmd, rel)


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_each_folder_says_what_it_is_and_what_it_may_import(sub):
    readme = PKG / sub / "README.md"
    assert (PKG / sub / "__init__.py").is_file()
    assert readme.is_file(), f"autograder/{sub}/README.md is missing"
    text = readme.read_text(encoding="utf-8")
    assert "may import" in text.lower(), f"autograder/{sub}/README.md does not say what it may import"
    for other in ALLOWED[sub]:
        assert other in text, f"autograder/{sub}/README.md does not name {other}, which it may import"
