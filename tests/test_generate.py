"""exercises/ is exactly what ``python -m autograder.generate`` makes of solutions/.

Also: every graded name of the course design (docs/design.md) exists in both, with the contract's signature;
every stub raises ``NotImplementedError("exNN: ...")``; no file imports ``reference``,
``solutions`` or ``autograder`` or uses its exercise's forbidden shortcut; the generator
refuses broken fences.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so `solutions`, `exercises` and `autograder` import under a bare `pytest`
    sys.path.insert(0, str(ROOT))

from autograder import generate as gen  # noqa: E402

SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"

# The graded names and their signatures, as fixed by the course design (docs/design.md).
CONTRACT = {
    "ex01_spectrogram": {
        "frame_signal": "(audio, frame_length, hop_length)",
        "compute_spectrogram": "(audio, sample_rate=16000, n_fft=None, window_ms=20.0, stride_ms=10.0, eps=1e-10, normalize=True)",
    },
    "ex02_ctc_decoding": {
        "ctc_collapse": "(ids, blank=0)",
        "greedy_decode": "(log_probs, encoder, lengths=None)",
    },
    "ex03_wer": {
        "edit_distance": "(ref, hyp)",
        "word_error_rate": "(refs, hyps)",
        "char_error_rate": "(refs, hyps)",
    },
    "ex04_ctc_loss": {
        "extend_with_blanks": "(target, blank=0)",
        "ctc_log_alpha": "(log_probs, target, blank=0)",
        "ctc_loss": "(log_probs, targets, input_lengths, target_lengths, blank=0, reduction='mean')",
    },
    "ex05_conv": {
        "clipped_relu": "(x, ceiling=20.0)",
        "conv_output_length": "(length, kernel_size, stride=1, padding=0, dilation=1)",
        "mask_time": "(x, lengths)",
    },
    "ex06_bigru": {
        "gru_cell": "(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None)",
        "gru_layer": "(x, lengths, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False)",
        "bidirectional_gru": "(x, lengths, forward_weights, backward_weights)",
    },
    "ex07_batchnorm": {
        "SequenceWiseBatchNorm": "(num_features, eps=1e-5, momentum=0.1)",
        "SequenceWiseBatchNorm.forward": "(x, lengths)",
    },
    "ex08_sortagrad": {
        "sortagrad_sampler": "(dataset, epoch, seed=0)",
        "sortagrad_batches": "(dataset, batch_size, epoch, seed=0)",
        "collate_batch": "(samples, encoder, n_fft=None)",
    },
    "ex09_training": {
        "train_step": "(model, batch, optimizer, max_grad_norm=400.0)",
        "evaluate": "(model, batches, encoder)",
    },
    "ex10_beam_search": {
        "prefix_beam_search": "(log_probs, encoder, beam_width=16, lm=None, alpha=0.5, beta=1.0)",
    },
    "ex11_row_conv": {
        "row_conv": "(x, weight, lengths)",
    },
}
MODULES = sorted(CONTRACT)
NAMES = [(m, n) for m in MODULES for n in CONTRACT[m]]

# Library calls each exercise forbids: imported modules, and attribute names (torch.stft, F.ctc_loss, ...).
FORBIDDEN_MODULES = {"reference", "solutions", "autograder"}
FORBIDDEN = {
    "ex01_spectrogram": ({"torchaudio", "librosa", "scipy"}, {"stft"}),
    "ex03_wer": ({"jiwer", "editdistance", "Levenshtein", "rapidfuzz"}, set()),
    "ex04_ctc_loss": (set(), {"ctc_loss", "CTCLoss"}),
    "ex05_conv": (set(), {"hardtanh", "hardtanh_", "Hardtanh", "ReLU6", "relu6"}),
    "ex06_bigru": (set(), {"GRU", "GRUCell", "gru", "gru_cell", "RNN", "LSTM"}),
    "ex07_batchnorm": (set(), {"BatchNorm1d", "BatchNorm2d", "batch_norm"}),
    "ex10_beam_search": ({"pyctcdecode", "ctcdecode", "kenlm", "torchaudio"}, set()),
}


def _load(package: str, module: str):
    return importlib.import_module(f"{package}.{module}")


def _resolve(mod, dotted: str):
    obj = mod
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _params(obj) -> list[tuple[str, object]]:
    sig = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
    return [(p.name, p.default) for p in sig.parameters.values() if p.name != "self"]


def _contract_params(text: str) -> list[tuple[str, object]]:
    namespace: dict = {}
    exec(f"def f{text}: pass", namespace)
    return _params(namespace["f"])


# ------------------------------------------------------------------------------ generated files
def test_exercises_are_up_to_date():
    differ = gen.check(SOLUTIONS, EXERCISES)
    assert not differ, f"exercises/ differs from solutions/ in {differ}: run `python -m autograder.generate`"


def test_check_cli_exit_codes(tmp_path):
    cmd = [sys.executable, "-m", "autograder.generate", "--check"]
    ok = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    stale = tmp_path / "exercises"
    gen.generate(SOLUTIONS, stale)
    (stale / "ex03_wer.py").write_text((stale / "ex03_wer.py").read_text() + "\nx = 1\n")
    (stale / "ex05_conv.py").unlink()
    bad = subprocess.run(cmd + ["--exercises", str(stale)], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1
    assert "ex03_wer.py" in bad.stdout and "ex05_conv.py (missing)" in bad.stdout
    fixed = subprocess.run([sys.executable, "-m", "autograder.generate", "--exercises", str(stale)],
                           cwd=ROOT, capture_output=True, text=True)
    assert fixed.returncode == 0 and gen.check(SOLUTIONS, stale) == []


@pytest.mark.parametrize("module", MODULES)
def test_generated_file_layout(module):
    text = (EXERCISES / f"{module}.py").read_text()
    first, rest = text.split("\n", 1)
    assert first.startswith("# GENERATED from solutions/") and "YOUR CODE HERE" in first
    assert gen.BEGIN_SOLUTION not in text and gen.END_SOLUTION not in text
    assert gen.BEGIN_HIDDEN not in text
    ex = module[:4]
    for name in CONTRACT[module]:
        if "." not in name and not inspect.isclass(getattr(_load("solutions", module), name)):
            assert f'raise NotImplementedError("{ex}: {name}")' in rest, name
    stubs = [line for line in text.splitlines() if line.strip() == "# YOUR CODE HERE"]
    assert len(stubs) == (SOLUTIONS / f"{module}.py").read_text().count(gen.BEGIN_SOLUTION)


@pytest.mark.parametrize("module", MODULES)
def test_solution_fences_are_balanced(module):
    source = (SOLUTIONS / f"{module}.py").read_text()
    assert gen.check_fences(source, module) >= 1
    graded = {n.split(".")[0] for n in CONTRACT[module]}
    assert set(gen.graded_names(source, module)) == graded


# ------------------------------------------------------------------------------ names and signatures
@pytest.mark.parametrize("module,name", NAMES, ids=[f"{m}:{n}" for m, n in NAMES])
def test_graded_name_signatures(module, name):
    sol = _resolve(_load("solutions", module), name)
    ex = _resolve(_load("exercises", module), name)
    assert inspect.signature(sol) == inspect.signature(ex)
    assert _params(sol) == _contract_params(CONTRACT[module][name]), "signature differs from the contract in docs/design.md"
    assert name.split(".")[0] in getattr(_load("solutions", module), "__all__", [])


# ------------------------------------------------------------------------------ stubs raise
class _Encoder:
    symbols = ["_"] + list("abcdefghijklmnopqrstuvwxyz '")
    vocab_size, blank_idx = 29, 0

    def encode(self, text):
        return [self.symbols.index(c) for c in text.lower()]

    def decode(self, ids):
        return "".join(self.symbols[int(i)] for i in ids if int(i) != 0)

    def ctc_decode(self, ids):
        out, prev = [], None
        for i in ids:
            if int(i) != prev and int(i) != 0:
                out.append(int(i))
            prev = int(i)
        return self.decode(out)


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(161, 29)

    def forward(self, features, lengths):
        return self.lin(features[:, 0].permute(2, 0, 1)).log_softmax(-1), lengths


def _dataset():
    g = torch.Generator().manual_seed(0)
    return [SimpleNamespace(audio=torch.rand(n, generator=g) - 0.5, transcript=t, sample_rate=16000)
            for n, t in ((1600, "a cat"), (800, "it's"), (2400, "the mat"))]


def _batch():
    return _load("solutions", "ex08_sortagrad").collate_batch(_dataset(), _Encoder())


W_IH, W_HH = torch.zeros(12, 3), torch.zeros(12, 4)
LP = torch.zeros(6, 29).log_softmax(-1)
CALLS = {  # one valid call per graded name: the scaffold's input checks pass, the stub raises
    "frame_signal": lambda m: m.frame_signal(torch.zeros(1000), 320, 160),
    "compute_spectrogram": lambda m: m.compute_spectrogram(torch.zeros(1000)),
    "ctc_collapse": lambda m: m.ctc_collapse([1, 1, 0, 2]),
    "greedy_decode": lambda m: m.greedy_decode(torch.zeros(6, 2, 29).log_softmax(-1), _Encoder()),
    "edit_distance": lambda m: m.edit_distance("ab", "b"),
    "word_error_rate": lambda m: m.word_error_rate(["a b"], ["a"]),
    "char_error_rate": lambda m: m.char_error_rate(["a b"], ["a"]),
    "extend_with_blanks": lambda m: m.extend_with_blanks([1, 2]),
    "ctc_log_alpha": lambda m: m.ctc_log_alpha(LP, [1, 2]),
    "ctc_loss": lambda m: m.ctc_loss(torch.zeros(6, 2, 29).log_softmax(-1), torch.tensor([[1, 2], [3, 0]]),
                                     torch.tensor([6, 4]), torch.tensor([2, 1])),
    "clipped_relu": lambda m: m.clipped_relu(torch.linspace(-30, 30, 7)),
    "conv_output_length": lambda m: m.conv_output_length(100, 11, 2, 5),
    "mask_time": lambda m: m.mask_time(torch.ones(2, 1, 3, 4), torch.tensor([4, 2])),
    "gru_cell": lambda m: m.gru_cell(torch.zeros(2, 3), torch.zeros(2, 4), W_IH, W_HH),
    "gru_layer": lambda m: m.gru_layer(torch.zeros(5, 2, 3), torch.tensor([5, 3]), W_IH, W_HH),
    "bidirectional_gru": lambda m: m.bidirectional_gru(torch.zeros(5, 2, 3), torch.tensor([5, 3]),
                                                       (W_IH, W_HH), (W_IH, W_HH, None, None)),
    "SequenceWiseBatchNorm.forward": lambda m: m.SequenceWiseBatchNorm(4)(torch.randn(5, 2, 4), torch.tensor([5, 3])),
    "sortagrad_sampler": lambda m: m.sortagrad_sampler(_dataset(), 0),
    "sortagrad_batches": lambda m: m.sortagrad_batches(_dataset(), 2, 1),
    "collate_batch": lambda m: m.collate_batch(_dataset(), _Encoder()),
    "train_step": lambda m: (lambda model: m.train_step(model, _batch(), torch.optim.SGD(model.parameters(), lr=0.1)))(_Model()),
    "evaluate": lambda m: m.evaluate(_Model(), [_batch()], _Encoder()),
    "prefix_beam_search": lambda m: m.prefix_beam_search(LP, _Encoder(), beam_width=4),
    "row_conv": lambda m: m.row_conv(torch.zeros(5, 2, 3), torch.zeros(2, 3), torch.tensor([5, 3])),
}
STUBS = [(m, n) for m, n in NAMES if n in CALLS]


def test_every_graded_name_has_a_call():
    assert {n for _, n in NAMES} - set(CALLS) == {"SequenceWiseBatchNorm"}


@pytest.mark.parametrize("module,name", STUBS, ids=[n for _, n in STUBS])
def test_stub_raises_not_implemented_with_exercise_id(module, name):
    CALLS[name](_load("solutions", module))                   # the inputs are valid
    with pytest.raises(NotImplementedError) as info:
        CALLS[name](_load("exercises", module))
    assert str(info.value) == f"{module[:4]}: {name}"


# ------------------------------------------------------------------------------ imports and shortcuts
def _imports_and_attributes(path: Path) -> tuple[set[str], set[str]]:
    tree = ast.parse(path.read_text())
    modules, attributes = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:                                     # relative import: a sibling package module
                modules.add("." * node.level + (node.module or ""))
            else:
                modules.add(node.module.split(".")[0])
                attributes |= {a.name for a in node.names}
        elif isinstance(node, ast.Attribute):
            attributes.add(node.attr)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if fname in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                modules.add(node.args[0].value.split(".")[0])
    return modules, attributes


FILES = [(pkg, m) for pkg in ("solutions", "exercises") for m in MODULES]


@pytest.mark.parametrize("package,module", FILES, ids=[f"{p}/{m}" for p, m in FILES])
def test_no_forbidden_imports_or_shortcuts(package, module):
    modules, attributes = _imports_and_attributes(ROOT / package / f"{module}.py")
    assert not modules & FORBIDDEN_MODULES, f"imports {modules & FORBIDDEN_MODULES}"
    assert not [m for m in modules if m.startswith(".")], "relative imports: students get the file alone"
    allowed = {"__future__", "torch", "numpy", "math", "itertools", "dataclasses", "typing", "collections"}
    if module in ("ex08_sortagrad", "ex09_training"):   # the given _earlier helper loads the student's earlier file
        allowed |= {"importlib", "importlib.util", "os", "sys"}
    assert modules <= allowed, modules - allowed
    bad_modules, bad_attributes = FORBIDDEN.get(module, (set(), set()))
    assert not modules & bad_modules and not attributes & bad_attributes
    doc = ast.get_docstring(ast.parse((ROOT / package / f"{module}.py").read_text()))
    assert doc.startswith(f"Exercise {module[2:4]} — ") and f"(lesson {module[2:4]})" in doc.splitlines()[0]
    assert f"make grade ONLY={module[:4]}" in doc and f"python -m autograder --only {module[:4]}" in doc
    assert "FORBIDDEN" in doc
    for name in bad_modules | bad_attributes - {"hardtanh_", "relu6", "gru", "gru_cell", "batch_norm"}:
        assert name in doc, f"the docstring does not name the forbidden {name!r}"


# ------------------------------------------------------------------------------ the generator itself
GOOD = '''\
def f(x):
    """doc"""
    y = 1
    ### BEGIN SOLUTION
    y = x + 1
    ### END SOLUTION
    return y


class C:
    def method(self):
        if True:
            ### BEGIN SOLUTION
            return 1
            ### END SOLUTION

### BEGIN HIDDEN TESTS
assert f(1) == 2
### END HIDDEN TESTS
'''


def test_stub_source_replaces_regions():
    out = gen.stub_source(GOOD, "ex99", "good.py")
    assert out == '''\
def f(x):
    """doc"""
    y = 1
    # YOUR CODE HERE
    raise NotImplementedError("ex99: f")
    return y


class C:
    def method(self):
        if True:
            # YOUR CODE HERE
            raise NotImplementedError("ex99: C.method")

'''
    assert gen.graded_names(GOOD) == ["f", "C"]


@pytest.mark.parametrize("source,message", [
    ("def f():\n    ### BEGIN SOLUTION\n    pass\n", "never closed"),
    ("def f():\n    pass\n    ### END SOLUTION\n", "without a matching BEGIN"),
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION\n    ### END SOLUTION\n", "nested"),
    ("def f():\n    ### BEGIN SOLUTION\n    pass\n    ### END HIDDEN TESTS\n", "closes"),
    ("def f():\n    ### BEGIN SOLUTION\n    pass\n        ### END SOLUTION\n", "indented differently"),
    ("def f():\n    ### BEGIN SOLUTON\n    pass\n", "unknown fence"),
    ("def f(:\n    pass\n", "not valid Python"),
])
def test_generator_refuses_bad_fences(tmp_path, source, message):
    with pytest.raises(gen.FenceError, match=message):
        gen.stub_source(source, "ex99", "bad.py")
    sols = tmp_path / "solutions"
    sols.mkdir()
    (sols / "ex01_good.py").write_text(GOOD)
    (sols / "ex02_bad.py").write_text(source)
    with pytest.raises(gen.FenceError, match="ex02_bad.py"):
        gen.generate(sols, tmp_path / "exercises")
    assert not (tmp_path / "exercises" / "ex01_good.py").exists(), "nothing is written when a file is bad"
    cli = subprocess.run([sys.executable, "-m", "autograder.generate", "--solutions", str(sols),
                          "--exercises", str(tmp_path / "exercises")], cwd=ROOT, capture_output=True, text=True)
    assert cli.returncode == 2 and "ex02_bad.py" in cli.stderr


def test_generate_into_tmp(tmp_path):
    sols = tmp_path / "solutions"
    sols.mkdir()
    (sols / "ex01_good.py").write_text('"""Exercise 01 — Good (lesson 01)."""\n' + GOOD)
    written = gen.generate(sols, tmp_path / "out")
    assert {p.name for p in written} == {"ex01_good.py", "__init__.py", "README.md", "Makefile"}
    text = (tmp_path / "out" / "ex01_good.py").read_text()
    assert text.startswith("# GENERATED from solutions/ex01_good.py")
    assert "| ex01 | `ex01_good.py` | Good | `f`, `C` |" in (tmp_path / "out" / "README.md").read_text()
    assert gen.check(sols, tmp_path / "out") == []
    (tmp_path / "out" / "ex02_orphan.py").write_text("")
    assert gen.check(sols, tmp_path / "out") == ["ex02_orphan.py (no solutions/ex02_orphan.py)"]
