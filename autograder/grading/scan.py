"""Static scan of a submission: forbidden imports and calls, reported by line.

The scan reads the source with :mod:`ast` (never imports it).  It finds

* imports of ``reference``, ``solutions``, ``autograder`` and of the exercise's forbidden
  packages (``import jiwer``, ``from torch.nn import GRU`` when ``torch.nn.GRU`` is forbidden);
* attribute chains that name a forbidden call, resolved through the file's import aliases
  (``F.ctc_loss`` with ``import torch.nn.functional as F``; ``nn.GRU``; ``x.stft(...)``);
* ``__import__("reference")``, ``importlib.import_module("solutions...")`` and
  ``sys.modules["reference"]`` with a literal name;
* ``getattr(torch.ops.aten, "ctc_loss")`` (a literal attribute name) and operator names in strings
  (``"aten::ctc_loss"``, ``torch._C._jit_get_operation("aten::gru")``);
* torch's private bindings (``torch._C``, ``torch._VF``, ``_VariableFunctions``), and a forbidden
  kernel's name read as an attribute of anything (``torch.zeros.__self__.ctc_loss``): the routes to
  the library's kernels that the worker's run-time stubs cannot close (those objects are read-only).

What no static scan sees is a name computed at run time (``getattr(obj, "ctc" + "_loss")`` on one of
those objects); ``autograder/README.md`` says so.

* a forbidden kernel's name as a string (``getattr(sys.modules["torch._VF"].vf, "gru_cell")``), and
  torch's private bindings named in a string (``"torch._VF"``);
* the worker's own internals (its reply descriptor, its nonce, ``_agw_`` modules) and, where kernels
  are forbidden, the dispatcher's switches (``_dispatch_library``, ``_op_dk``): tampering with the grader.

Code under ``if __name__ == "__main__":`` is a student's own experiment and is not scanned; the
worker compiles the submission's modules without those blocks (``worker_isolation.install_main_stripper``),
so they never run while grading, whatever ``__name__`` is set to.
The worker blocks the same things at run time (stubs, and a record of the kernels each call ran);
the scan names the line.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

from ..spec import ALWAYS_BLOCKED_MODULES, Exercise


@dataclass(frozen=True)
class Finding:
    line: int
    what: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.what}"


def _blocked_module(name: str, blocked) -> str | None:
    for b in blocked:
        if name == b or name.startswith(b + "."):
            return b
    return None


def scan_source(source: str, exercise: Exercise) -> list[Finding]:
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [Finding(e.lineno or 0, f"syntax error: {e.msg}")]
    blocked = tuple(ALWAYS_BLOCKED_MODULES) + tuple(exercise.forbidden_modules)
    forbidden = set(exercise.forbidden_calls)
    method_names = {f.rsplit(".", 1)[1] for f in forbidden if f.startswith("torch.Tensor.")}
    aten_ops = {f.rsplit(".", 1)[1]: f for f in forbidden if f.startswith("torch.ops.aten.")}
    # a forbidden kernel's own name read as an attribute of anything (``torch.zeros.__self__.ctc_loss``,
    # ``vf.gru``): the routes past the runtime stubs go through such a lookup
    kernel_names = {f.rsplit(".", 1)[1]: f for f in forbidden
                    if f.rsplit(".", 1)[1][:1].islower() and not f.startswith("torch.Tensor.")}
    findings: list[Finding] = []
    aliases: dict[str, str] = {}  # local name -> dotted module/object

    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    main_blocks = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_guard(node.test):  # its body only: the else branch runs
            for stmt in node.body:
                for sub in ast.walk(stmt):
                    main_blocks.add(id(sub))

    nodes = [n for n in ast.walk(tree) if id(n) not in main_blocks]
    for node in nodes:  # first pass: aliases
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"

    def full_name(expr) -> str | None:
        parts = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if isinstance(expr, ast.Name):
            base = aliases.get(expr.id, expr.id)
            return ".".join([base] + parts[::-1])
        return None

    def is_forbidden(dotted: str) -> str | None:
        if dotted in forbidden:
            return dotted
        # torch.nn.modules.rnn.GRU and friends are the same objects as torch.nn.GRU
        for f in forbidden:
            if dotted.endswith("." + f.rsplit(".", 1)[1]) and dotted.split(".")[0] == f.split(".")[0] and \
                    f.rsplit(".", 1)[1][0].isupper() and dotted.rsplit(".", 1)[1] == f.rsplit(".", 1)[1]:
                return f
        return None

    for node in nodes:
        tampered = _tampering(node, bool(forbidden))
        if tampered:
            findings.append(Finding(node.lineno, f"reaches into the grader's worker ({tampered}): grading does not "
                                                 "allow it"))
        if isinstance(node, ast.Import):
            for a in node.names:
                b = _blocked_module(a.name, blocked)
                if forbidden and _private_binding(a.name):
                    findings.append(Finding(node.lineno, f"imports {a.name}, torch's private bindings, which reach "
                                                         f"the library's own kernels past {exercise.id}'s rules"))
                if b:
                    findings.append(Finding(node.lineno, f"imports {a.name}, which {exercise.id} does not allow"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                continue
            mod = node.module or ""
            if _blocked_module(mod, blocked):
                findings.append(Finding(node.lineno, f"imports from {mod}, which {exercise.id} does not allow"))
                continue
            for a in node.names:
                if forbidden and _private_binding(f"{mod}.{a.name}"):
                    findings.append(Finding(node.lineno, f"imports {mod}.{a.name}, torch's private bindings, which "
                                                         f"reach the library's own kernels past {exercise.id}'s rules"))
                    continue
                f = is_forbidden(f"{mod}.{a.name}")
                if f or _blocked_module(f"{mod}.{a.name}", blocked):
                    findings.append(Finding(node.lineno, f"imports {mod}.{a.name}, which {exercise.id} forbids"))
        elif isinstance(node, ast.Attribute):
            dotted = full_name(node)
            f = is_forbidden(dotted) if dotted else None
            private = _private_binding(dotted) if dotted and forbidden else None
            if private:
                findings.append(Finding(node.lineno, f"uses {private}, torch's private bindings, which reach the "
                                                     f"library's own kernels past {exercise.id}'s rules"))
            elif f:
                findings.append(Finding(node.lineno, f"uses {dotted}, which {exercise.id} forbids"))
            elif node.attr in kernel_names and isinstance(node.ctx, ast.Load):
                findings.append(Finding(node.lineno, f"reads .{node.attr} ({kernel_names[node.attr]}), which "
                                                     f"{exercise.id} forbids"))
            elif node.attr in method_names and isinstance(node.ctx, ast.Load) and not (
                    dotted and dotted.split(".")[0] in aliases and not dotted.startswith("torch.Tensor")):
                findings.append(Finding(node.lineno, f"calls .{node.attr}(), which {exercise.id} forbids"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and forbidden and \
                (node.value in _PRIVATE_NAMES or (_DOTTED(node.value) and _private_binding(node.value))):
            findings.append(Finding(node.lineno, f"names torch's private bindings ({node.value!r}), which reach the "
                                                 f"library's own kernels past {exercise.id}'s rules"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in kernel_names and \
                _looked_up(node, parents):
            findings.append(Finding(node.lineno, f"names the kernel {node.value!r} ({kernel_names[node.value]}) in a "
                                                 f"string, which {exercise.id} forbids"))

        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "aten::" in node.value:
            op = node.value.split("aten::", 1)[1].split(".")[0].split("(")[0].strip()
            if op in aten_ops:
                findings.append(Finding(node.lineno, f"names the operator aten::{op} ({aten_ops[op]}), which "
                                                     f"{exercise.id} forbids"))
        elif isinstance(node, ast.Call):
            fname = full_name(node.func) if isinstance(node.func, (ast.Name, ast.Attribute)) else None
            if fname in ("getattr", "builtins.getattr") and len(node.args) >= 2 and \
                    isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                owner = full_name(node.args[0]) if isinstance(node.args[0], (ast.Name, ast.Attribute)) else None
                f = is_forbidden(f"{owner}.{node.args[1].value}") if owner else None
                if f:
                    findings.append(Finding(node.lineno, f"uses {owner}.{node.args[1].value}, which {exercise.id} "
                                                         "forbids"))
            if fname in ("__import__", "importlib.import_module", "builtins.__import__", "importlib.__import__"):
                if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    name = node.args[0].value
                    if _blocked_module(name, blocked):
                        findings.append(Finding(node.lineno, f"imports {name} dynamically, which {exercise.id} "
                                                             "does not allow"))
        elif isinstance(node, ast.Subscript):
            if full_name(node.value) == "sys.modules" and isinstance(node.slice, ast.Constant) and \
                    isinstance(node.slice.value, str) and _blocked_module(node.slice.value, blocked):
                findings.append(Finding(node.lineno, f"reads sys.modules[{node.slice.value!r}], which "
                                                     f"{exercise.id} does not allow"))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in aliases:
            f = is_forbidden(aliases[node.id])
            if f:
                findings.append(Finding(node.lineno, f"uses {aliases[node.id]}, which {exercise.id} forbids"))
    uniq = sorted(set(findings), key=lambda f: (f.line, f.what))
    return uniq


#: torch's private entry points to its kernels (``torch._C._VariableFunctions.ctc_loss``, ``torch._VF.gru``):
#: no exercise needs them, and they cannot all be replaced at run time (some are read-only)
_PRIVATE_NAMES = {"_C", "_VF", "_VariableFunctions", "_VariableFunctionsClass"}


_LOOKUPS = {"getattr", "hasattr", "attrgetter", "methodcaller", "__getattribute__", "__getattr__", "get",
            "_jit_get_operation", "_get_operation_overload", "_get_schema"}


def _looked_up(node, parents) -> bool:
    """A string used to look a name up: ``getattr(x, "gru_cell")``, ``vars(x)["gru_cell"]``,
    ``x.__dict__.get("gru_cell")``, ``operator.attrgetter("gru_cell")`` (not ``__all__ = [...]``)."""
    parent = parents.get(id(node))
    if isinstance(parent, ast.Subscript) and parent.slice is node:
        return True
    if isinstance(parent, ast.Call) and node in parent.args:
        f = parent.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        return name in _LOOKUPS
    return False


def _DOTTED(s: str) -> bool:
    return len(s) < 200 and all(p.isidentifier() for p in s.split("."))


#: The worker's own internals: its reply and request descriptors, the reply's nonce, its private modules.
_WORKER_NAMES = {"resp_fd", "req_fd", "req_nonce"}
#: The dispatcher's own switches, where the forbidden kernels are refused (where kernels are forbidden):
#: registering kernels, calling one by dispatch key, changing the thread's dispatch keys.
_DISPATCH_NAMES = {"_dispatch_library", "_dispatch_call_boxed", "_dispatch_find_schema_or_throw", "_op_dk",
                   "_dispatch_get_computed_kernel_for_dispatch_key", "_dispatch_tls_set_dispatch_key_excluded",
                   "_dispatch_tls_set_dispatch_key_included", "_DisableTorchDispatch", "_ExcludeDispatchKeyGuard"}


def _tampering(node, kernels_forbidden: bool) -> str | None:
    name = None
    if isinstance(node, ast.Attribute):
        name = node.attr
    elif isinstance(node, ast.Name):
        name = node.id
    elif isinstance(node, ast.alias):
        name = node.name.rsplit(".", 1)[-1]
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _DOTTED(node.value):
        name = node.value.rsplit(".", 1)[-1]
        if node.value.startswith("_agw_"):
            return node.value
    if name is None:
        return None
    if name in _WORKER_NAMES or name.startswith("_agw_"):
        return name
    if kernels_forbidden and name in _DISPATCH_NAMES:
        return f"{name}, torch's dispatcher, where the kernels your exercise forbids are refused"
    return None


def _private_binding(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] == "torch" and len(parts) > 1 and parts[1] in ("_C", "_VF"):
        return ".".join(parts[:2])
    for p in parts:
        if p in ("_VariableFunctions", "_VariableFunctionsClass"):
            return p
    return None


def _is_main_guard(test) -> bool:
    """``__name__ == "__main__"`` (either side): the worker compiles such blocks out with this very
    predicate (``worker_isolation.is_main_guard``), so they are not scanned."""
    from ..sandbox.worker_isolation import is_main_guard

    return is_main_guard(test)


def imported_modules(source: str) -> set[str]:
    """The top-level names of the modules a file imports with a literal ``import`` statement."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def scan_with_imports(path: str, exercise: Exercise, siblings: dict[str, str]) -> list[Finding]:
    """:func:`scan_file`, plus the submission's other exercise files this one imports (``siblings``:
    module name -> path), held to THIS exercise's rules: their code runs in this exercise's worker."""
    found = scan_file(path, exercise)
    if not exercise.forbidden_calls and not exercise.forbidden_modules:
        return found
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        names = imported_modules(f.read())
    for mod in sorted(names):
        other = siblings.get(mod)
        if other is None or mod == exercise.module:
            continue
        for g in scan_file(other, exercise):
            if "syntax error" not in g.what:
                found.append(Finding(g.line, f"in {mod}.py, which this file imports: {g.what}"))
    return found


def scan_file(path: str, exercise: Exercise) -> list[Finding]:
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        return scan_source(f.read(), exercise)
