"""The exercises: ids, file names, graded names and what each one forbids.

One id per exercise everywhere (lesson, stub error, check module, report line).  Points live
on the checks themselves (``@pytest.mark.points``); ``tests/test_autograder_points.py`` asserts
that they add up to :data:`TOTAL_POINTS`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

TOTAL_POINTS = 100

#: Imports refused in every exercise: the answers live there.
ALWAYS_BLOCKED_MODULES = ("reference", "solutions", "autograder")


def _routes(*ops: str, nn: tuple = ()) -> tuple[str, ...]:
    """The low-level routes of a forbidden op: ``torch.ops.aten.<op>`` (stubbed at run time, looked-up
    names refused too), ``torch._C._VariableFunctions.<op>`` (read-only in torch: the static scan
    catches it) and, for ``nn``, ``torch._C._nn.<op>``."""
    out = []
    for op in ops:
        out += [f"torch.ops.aten.{op}", f"torch._C._VariableFunctions.{op}"]
    for op in nn:
        out += [f"torch.ops.aten.{op}", f"torch._C._nn.{op}"]
    return tuple(out)


@dataclass(frozen=True)
class Exercise:
    id: str                      # "ex04"
    module: str                  # "ex04_ctc_loss" (the file is exercises/ex04_ctc_loss.py)
    title: str
    graded: tuple[str, ...]
    forbidden_calls: tuple[str, ...] = ()    # dotted names replaced by a refusing stub in the worker
    forbidden_modules: tuple[str, ...] = ()  # imports refused in the worker
    extra: dict = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return self.module + ".py"

    @property
    def check_module(self) -> str:
        return f"test_{self.module}.py"


EXERCISES: dict[str, Exercise] = {e.id: e for e in [
    Exercise("ex01", "ex01_spectrogram", "spectrograms", ("frame_signal", "compute_spectrogram"),
             ("torch.stft", "torch.Tensor.stft", "torch.istft", "torch.Tensor.istft", "torch.functional.stft",
              "torch._VF.stft", "torch._VF.istft") + _routes("stft", "istft"),
             ("torchaudio", "librosa", "scipy.signal")),
    Exercise("ex02", "ex02_ctc_decoding", "CTC collapse and greedy decoding", ("ctc_collapse", "greedy_decode")),
    Exercise("ex03", "ex03_wer", "word error rate", ("edit_distance", "word_error_rate", "char_error_rate"),
             (), ("jiwer", "editdistance", "Levenshtein", "rapidfuzz", "leven", "nltk")),
    Exercise("ex04", "ex04_ctc_loss", "CTC loss", ("extend_with_blanks", "ctc_log_alpha", "ctc_loss"),
             ("torch.nn.functional.ctc_loss", "torch.ctc_loss", "torch.nn.CTCLoss", "torch._ctc_loss",
              "torch.nn.modules.loss.CTCLoss", "torch._VF.ctc_loss") + _routes("ctc_loss", "_ctc_loss")),
    Exercise("ex05", "ex05_conv", "convolutions", ("clipped_relu", "conv_output_length", "mask_time"),
             ("torch.nn.functional.hardtanh", "torch.nn.functional.hardtanh_", "torch.nn.Hardtanh",
              "torch.nn.ReLU6", "torch.nn.functional.relu6", "torch.hardtanh", "torch.nn.modules.activation.Hardtanh",
              "torch.nn.modules.activation.ReLU6") + _routes(nn=("hardtanh", "hardtanh_", "relu6"))),
    Exercise("ex06", "ex06_bigru", "bidirectional GRU", ("gru_cell", "gru_layer", "bidirectional_gru"),
             ("torch.nn.GRU", "torch.nn.GRUCell", "torch.gru", "torch.gru_cell", "torch._VF.gru",
              "torch._VF.gru_cell", "torch.nn.RNN", "torch.nn.LSTM", "torch.nn.RNNCell", "torch.nn.LSTMCell",
              "torch.nn.modules.rnn.GRU", "torch.nn.modules.rnn.GRUCell")
             + _routes("gru", "gru_cell", "rnn_tanh", "rnn_relu", "lstm", "lstm_cell", "rnn_tanh_cell",
                       "rnn_relu_cell") + ("torch.ops.aten._thnn_fused_gru_cell",)),
    Exercise("ex07", "ex07_batchnorm", "sequence-wise batch norm", ("SequenceWiseBatchNorm",),
             ("torch.nn.BatchNorm1d", "torch.nn.functional.batch_norm", "torch.batch_norm", "torch.nn.BatchNorm2d",
              "torch.nn.BatchNorm3d", "torch.nn.SyncBatchNorm", "torch.nn.modules.batchnorm.BatchNorm1d",
              "torch.native_batch_norm", "torch._VF.batch_norm")
             + _routes("batch_norm", "native_batch_norm", "_native_batch_norm_legit",
                       "_native_batch_norm_legit_no_training", "_batch_norm_impl_index", "cudnn_batch_norm",
                       "miopen_batch_norm", "batch_norm_update_stats")
             + ("torch.ops.aten._batch_norm_with_update", "torch.ops.aten._native_batch_norm_legit_functional",
                "torch.ops.aten._batch_norm_no_update")),
    # "given": earlier exercises' functions the file uses; the grader supplies the course's (sandbox/given.py)
    Exercise("ex08", "ex08_sortagrad", "SortaGrad and collating", ("sortagrad_sampler", "sortagrad_batches",
                                                                     "collate_batch"),
             extra={"given": ("compute_spectrogram",)}),
    Exercise("ex09", "ex09_training", "training step and evaluation", ("train_step", "evaluate"),
             extra={"given": ("greedy_decode", "word_error_rate")}),
    Exercise("ex10", "ex10_beam_search", "prefix beam search", ("prefix_beam_search",)),
    Exercise("ex11", "ex11_row_conv", "row convolution", ("row_conv",)),
]}

_FILE_RE = re.compile(r"^(ex\d\d)_[A-Za-z0-9_]*\.py$")


def exercise_of_file(name: str) -> Exercise | None:
    """``ex04_ctc_loss.py`` (or ``ex04_anything.py``) -> the ex04 exercise; anything else -> None."""
    m = _FILE_RE.match(name)
    return EXERCISES.get(m.group(1)) if m else None


# A file meant for an exercise but named otherwise: ``Ex01_spectrogram.py`` (case), ``ex03-wer.py`` /
# ``ex03 wer.py`` (separators), ``ex5_conv.py`` (no leading zero), ``ex04_ctc_loss (1).py`` (a browser's
# duplicate), ``ex01_spectrogram-1.py`` (Canvas's resubmission suffix), ``ex02_ctc_decoding.py.txt``.
_LOOSE_RE = re.compile(r"^ex[ _.-]*0*(?P<n>\d{1,2})(?:[ _.-]+(?P<topic>[a-z0-9][a-z0-9_ .-]*?))?"
                       r"(?P<dup>\s*\(\d{1,3}\)|-\d{1,3})?\s*\.py(?P<txt>\.txt)?$")


def recognise_file(name: str) -> tuple[Exercise, str] | None:
    """A file name that is an exercise's, exactly or nearly: ``(exercise, "")`` for a proper name
    (:func:`exercise_of_file`), ``(exercise, "why it is not the exercise's name")`` for a near miss the
    graders accept with a note, None for anything else (``notes.py``, ``ex12_x.py``, ``ex4.ipynb``)."""
    ex = exercise_of_file(name)
    if ex is not None:
        return ex, ""
    m = _LOOSE_RE.match(name.strip().lower())
    if not m:
        return None
    ex = EXERCISES.get(f"ex{int(m.group('n')):02d}")
    if ex is None:
        return None
    why = []
    if m.group("txt"):
        why.append("a .txt ending")
    if m.group("dup"):
        why.append(f"a copy's suffix {m.group('dup').strip()!r}")
    if name != name.lower():
        why.append("capital letters")
    if not re.match(r"^ex\d\d(_|\.py)", name.lower()):
        why.append("a separator or digit count other than exNN_")
    if m.group("topic") and not re.fullmatch(r"[a-z0-9_]*", m.group("topic")):
        why.append("spaces or dashes in the topic")
    return ex, ", ".join(why) or "not exNN_<topic>.py"
