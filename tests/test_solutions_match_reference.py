"""The instructor solutions give the reference's values on the same inputs.

Two kinds of checks for every graded name:

* against ``reference.<name>`` (seeded random and edge-case inputs; exact for ints and
  strings, ``torch.testing.assert_close`` for tensors; gradients too for ``ctc_loss``).
  A check whose reference name does not exist yet is skipped, so this file runs while the
  reference is being written and tightens as it lands;
* against independent oracles (``torch.stft``, ``F.ctc_loss``, ``nn.GRU``,
  ``nn.BatchNorm1d``, ``jiwer``, brute force), so the solutions are right on their own.
"""
from __future__ import annotations

import copy
import importlib
import inspect
import itertools
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so `solutions` and `reference` import under a bare `pytest`
    sys.path.insert(0, str(ROOT))

from solutions import (ex01_spectrogram as ex01, ex02_ctc_decoding as ex02, ex03_wer as ex03,  # noqa: E402
                       ex04_ctc_loss as ex04, ex05_conv as ex05, ex06_bigru as ex06, ex07_batchnorm as ex07,
                       ex08_sortagrad as ex08, ex09_training as ex09, ex10_beam_search as ex10,
                       ex11_row_conv as ex11)

# Where each graded name lives in the reference if `reference/__init__.py` does not export it.
_REFERENCE_MODULES = ("features", "ctc", "metrics", "layers", "data", "training", "decoding")

GRADED = {
    ex01: ["frame_signal", "compute_spectrogram"],
    ex02: ["ctc_collapse", "greedy_decode"],
    ex03: ["edit_distance", "word_error_rate", "char_error_rate"],
    ex04: ["extend_with_blanks", "ctc_log_alpha", "ctc_loss"],
    ex05: ["clipped_relu", "conv_output_length", "mask_time"],
    ex06: ["gru_cell", "gru_layer", "bidirectional_gru"],
    ex07: ["SequenceWiseBatchNorm"],
    ex08: ["sortagrad_sampler", "sortagrad_batches", "collate_batch"],
    ex09: ["train_step", "evaluate"],
    ex10: ["prefix_beam_search"],
    ex11: ["row_conv"],
}
ALL_NAMES = [(mod, name) for mod, names in GRADED.items() for name in names]


def ref(name: str):
    """``reference.<name>``, or skip the test while the reference does not have it yet."""
    try:
        reference = importlib.import_module("reference")
    except Exception as err:  # pragma: no cover - depends on the state of reference/
        pytest.skip(f"reference is not importable yet: {err!r}")
    obj = getattr(reference, name, None)
    for module in _REFERENCE_MODULES:
        if obj is not None:
            break
        try:
            obj = getattr(importlib.import_module(f"reference.{module}"), name, None)
        except Exception:
            continue
    if obj is None:
        pytest.skip(f"reference.{name} does not exist yet")
    return obj


class _TinyEncoder:
    """The course alphabet (0 = blank, a..z, space, apostrophe) without the reference."""

    symbols = ["_"] + list("abcdefghijklmnopqrstuvwxyz '")
    vocab_size, blank_idx = 29, 0

    def encode(self, text):
        ids = []
        for ch in text.lower():
            if ch not in self.symbols[1:]:
                raise ValueError(f"character {ch!r} is not in the alphabet")
            ids.append(self.symbols.index(ch))
        return ids

    def decode(self, ids):
        return "".join(self.symbols[int(i)] for i in ids if int(i) != self.blank_idx)

    def ctc_decode(self, ids):
        return self.decode(ex02.ctc_collapse(ids))


@pytest.fixture(scope="module")
def encoder():
    try:
        from reference.text import CharEncoder
        return CharEncoder("english")
    except Exception:  # pragma: no cover
        return _TinyEncoder()


def gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def random_log_probs(*shape, seed=0, scale=3.0, dtype=torch.float32):
    return (scale * torch.randn(*shape, generator=gen(seed), dtype=torch.float64)).log_softmax(-1).to(dtype)


def same_error(fn_a, fn_b, *args, **kwargs):
    """Both raise ValueError."""
    with pytest.raises(ValueError):
        fn_a(*args, **kwargs)
    with pytest.raises(ValueError):
        fn_b(*args, **kwargs)


# ------------------------------------------------------------------------------ signatures
def _params(obj):
    sig = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
    return [(p.name, p.default) for p in sig.parameters.values() if p.name != "self"]


@pytest.mark.parametrize("module,name", ALL_NAMES, ids=[n for _, n in ALL_NAMES])
def test_signature_matches_reference(module, name):
    """Same parameter names, order and defaults as the reference (the reference may add
    trailing optional parameters, e.g. ``prefix_beam_search(..., char_cutoff=...)``)."""
    ours, theirs = _params(getattr(module, name)), _params(ref(name))
    assert theirs[: len(ours)] == ours
    assert all(default is not inspect.Parameter.empty for _, default in theirs[len(ours):])
    if inspect.isclass(getattr(module, name)):
        assert _params(getattr(module, name).forward) == _params(ref(name).forward)


# ------------------------------------------------------------------------------ ex01
AUDIO_LENGTHS = [320, 321, 479, 480, 1000, 4000]


FRAME_CASES = [(n, frame, hop) for n in AUDIO_LENGTHS for frame, hop in [(320, 160), (400, 160), (7, 3), (1, 1)]
               if n >= frame]                                                # shorter: test_frame_signal_errors


@pytest.mark.parametrize("n,frame,hop", FRAME_CASES)
def test_frame_signal(n, frame, hop):
    audio = torch.rand(n, generator=gen(n)) * 2 - 1
    frames = ex01.frame_signal(audio, frame, hop)
    assert_close(frames, audio.unfold(0, frame, hop), rtol=0, atol=0)
    assert frames.shape == (1 + (n - frame) // hop, frame)
    assert_close(frames, ref("frame_signal")(audio, frame, hop), rtol=0, atol=0)


@pytest.mark.parametrize("bad", [torch.zeros(2, 400), torch.zeros(100), torch.zeros(400, dtype=torch.int16)])
def test_frame_signal_errors(bad):
    with pytest.raises(ValueError):
        ex01.frame_signal(bad, 320, 160)
    same_error(ex01.frame_signal, ref("frame_signal"), bad, 320, 160)


SPEC_CASES = [
    dict(),
    dict(normalize=False),
    dict(n_fft=256),
    dict(n_fft=512),
    dict(n_fft=512, normalize=False),
    dict(sample_rate=8000),
    dict(window_ms=25.0, stride_ms=10.0),
    dict(eps=1e-6),
]


@pytest.mark.parametrize("kwargs", SPEC_CASES, ids=[str(k) for k in SPEC_CASES])
@pytest.mark.parametrize("n,dtype", [(16000, torch.float32), (3210, torch.float64), (400, torch.float32)])
def test_compute_spectrogram_matches_reference(kwargs, n, dtype):
    audio = (torch.rand(n, generator=gen(n), dtype=torch.float64) * 2 - 1).to(dtype)
    ours = ex01.compute_spectrogram(audio, **kwargs)
    assert ours.dtype == dtype
    assert_close(ours, ref("compute_spectrogram")(audio, **kwargs))


@pytest.mark.parametrize("n_fft", [None, 256])
@pytest.mark.parametrize("normalize", [False, True])
def test_compute_spectrogram_matches_torch_stft(n_fft, normalize):
    audio = torch.rand(8000, generator=gen(1), dtype=torch.float64) * 2 - 1
    win = 320 if n_fft is None else n_fft
    stft = torch.stft(audio, n_fft=win, hop_length=160, win_length=win,
                      window=torch.hann_window(win, periodic=True, dtype=audio.dtype),
                      center=False, return_complex=True)                      # (n_freq, n_frames)
    expected = torch.log(stft.abs() ** 2 + 1e-10)
    if normalize:
        expected = (expected - expected.mean()) / expected.std()
    ours = ex01.compute_spectrogram(audio, n_fft=n_fft, normalize=normalize)
    assert ours.shape == (win // 2 + 1, 1 + (8000 - win) // 160)
    assert_close(ours, expected)


def test_compute_spectrogram_zero_padding_and_silence():
    audio = torch.rand(1600, generator=gen(2)) * 2 - 1
    spec = ex01.compute_spectrogram(audio, n_fft=512, normalize=False)        # 320-sample window, 512-point FFT
    frames = audio.unfold(0, 320, 160) * torch.hann_window(320, periodic=True)
    expected = torch.log(torch.fft.rfft(F.pad(frames, (0, 192))).abs() ** 2 + 1e-10).T
    assert_close(spec, expected, rtol=1e-4, atol=1e-4)
    silent = ex01.compute_spectrogram(torch.zeros(640))                       # constant: std clamped, no NaN
    assert torch.isfinite(silent).all()
    assert_close(silent, ref("compute_spectrogram")(torch.zeros(640)))


@pytest.mark.parametrize("bad", [torch.zeros(1, 16000), torch.zeros(319), torch.zeros(16000, dtype=torch.int16), [0.0] * 400])
def test_compute_spectrogram_errors(bad):
    with pytest.raises(ValueError):
        ex01.compute_spectrogram(bad)
    same_error(ex01.compute_spectrogram, ref("compute_spectrogram"), bad)


# ------------------------------------------------------------------------------ ex02
@pytest.mark.parametrize("ids,expected", [
    ([], []), ([0, 0], []), ([1, 1, 0, 1, 2, 2], [1, 1, 2]), ([1, 0, 0, 1], [1, 1]),
    ([3, 3, 3], [3]), ([0, 5, 0, 5, 5, 0], [5, 5]), ([1, 2, 1, 2], [1, 2, 1, 2]),
])
def test_ctc_collapse_examples(ids, expected):
    for form in (list(ids), tuple(ids), torch.tensor(ids, dtype=torch.long)):
        out = ex02.ctc_collapse(form)
        assert out == expected and all(type(i) is int for i in out)
        assert out == ref("ctc_collapse")(form)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("blank", [0, 3])
def test_ctc_collapse_random(seed, blank):
    ids = torch.randint(0, 5, (40,), generator=gen(seed))
    assert ex02.ctc_collapse(ids, blank=blank) == ref("ctc_collapse")(ids, blank=blank)


def test_ctc_collapse_rejects_2d():
    same_error(ex02.ctc_collapse, ref("ctc_collapse"), torch.zeros(2, 3, dtype=torch.long))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("with_lengths", [False, True])
def test_greedy_decode(encoder, seed, with_lengths):
    T, B = 30, 4
    log_probs = random_log_probs(T, B, 29, seed=seed)
    log_probs[:, :, 0] += 1.5                                                  # blanks, as a trained model
    lengths = torch.tensor([30, 17, 1, 0]) if with_lengths else None
    ours = ex02.greedy_decode(log_probs, encoder, lengths)
    best = log_probs.argmax(-1)
    n = lengths.tolist() if with_lengths else [T] * B
    assert ours == [encoder.decode(ex02.ctc_collapse(best[: n[b], b])) for b in range(B)]
    assert ours == ref("greedy_decode")(log_probs, encoder, lengths)


def test_greedy_decode_errors(encoder):
    same_error(ex02.greedy_decode, ref("greedy_decode"), torch.zeros(5, 29), encoder)
    same_error(ex02.greedy_decode, ref("greedy_decode"), torch.zeros(5, 2, 10), encoder)
    same_error(ex02.greedy_decode, ref("greedy_decode"), torch.zeros(5, 2, 29), encoder, torch.tensor([6, 1]))


# ------------------------------------------------------------------------------ ex03
@pytest.mark.parametrize("a,b,d", [
    ("", "", 0), ("abc", "", 3), ("", "ab", 2), ("kitten", "sitting", 3), ("flaw", "lawn", 2),
    (["the", "cat"], ["the", "bat", "sat"], 2), ([1, 2, 3], [1, 2, 3], 0), ((1, 2), (2, 1), 2),
])
def test_edit_distance_examples(a, b, d):
    assert ex03.edit_distance(a, b) == d
    assert ex03.edit_distance(a, b) == ref("edit_distance")(a, b)


def _random_sentences(seed, k=12, vocab=("a", "the", "cat", "sat", "on", "mat", "dog", "it's")):
    g = gen(seed)
    out = []
    for _ in range(k):
        n = int(torch.randint(0, 7, (1,), generator=g))
        out.append(" ".join(vocab[int(i)] for i in torch.randint(0, len(vocab), (n,), generator=g)))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_wer_cer_random(seed):
    jiwer = pytest.importorskip("jiwer")
    refs, hyps = _random_sentences(seed), _random_sentences(seed + 100)
    refs[0] = refs[0] or "the cat"                                             # at least one word
    wer, cer = ex03.word_error_rate(refs, hyps), ex03.char_error_rate(refs, hyps)
    assert math.isclose(wer, jiwer.wer(refs, hyps), rel_tol=1e-12)
    nonempty = [(r, h) for r, h in zip(refs, hyps) if r]                      # jiwer.cer rejects empty references
    if nonempty:
        assert math.isclose(ex03.char_error_rate(*map(list, zip(*nonempty))),
                            jiwer.cer(*map(list, zip(*nonempty))), rel_tol=1e-12)
    assert wer == ref("word_error_rate")(refs, hyps)
    assert cer == ref("char_error_rate")(refs, hyps)


def test_wer_single_strings_and_corpus_level():
    assert ex03.word_error_rate("the cat sat", "the bat sat down") == pytest.approx(2 / 3)
    # corpus level: (1 + 0) / (1 + 4), not the mean of 1.0 and 0.0
    assert ex03.word_error_rate(["a", "b c d e"], ["x", "b c d e"]) == pytest.approx(0.2)
    assert ex03.char_error_rate(["ab", "cd ef"], ["ab", "cdef"]) == pytest.approx(1 / 7)
    for name in ("word_error_rate", "char_error_rate"):
        assert getattr(ex03, name)("the cat", "a cat") == ref(name)("the cat", "a cat")


@pytest.mark.parametrize("name", ["word_error_rate", "char_error_rate"])
@pytest.mark.parametrize("refs,hyps", [(["a b"], ["a", "b"]), ([""], ["x"]), ([], []), (["a"], [None])])
def test_wer_cer_errors(name, refs, hyps):
    same_error(getattr(ex03, name), ref(name), refs, hyps)


# ------------------------------------------------------------------------------ ex04
@pytest.mark.parametrize("target", [[], [1], [1, 1], [3, 1, 4, 1, 5]])
def test_extend_with_blanks(target):
    ext = ex04.extend_with_blanks(target)
    assert ext == [0] + [v for y in target for v in (y, 0)]
    assert ext == ref("extend_with_blanks")(target)
    assert ex04.extend_with_blanks(torch.tensor(target, dtype=torch.long), blank=7) == \
        ref("extend_with_blanks")(torch.tensor(target, dtype=torch.long), blank=7)


ALPHA_CASES = [  # (T, V, target)
    (1, 5, []), (1, 5, [2]), (3, 5, []), (6, 5, [1, 2, 3]), (8, 6, [1, 1, 2]), (5, 4, [3, 3, 3]),
    (2, 5, [1, 1]),                                                            # infeasible: needs 3 frames
    (12, 29, [8, 5, 12, 12, 15]), (20, 7, [6, 1, 6, 2, 2]),
]


@pytest.mark.parametrize("T,V,target", ALPHA_CASES, ids=[str(c) for c in ALPHA_CASES])
def test_ctc_log_alpha(T, V, target):
    lp = random_log_probs(T, V, seed=T * 31 + V, dtype=torch.float64)
    alpha = ex04.ctc_log_alpha(lp, target)
    assert alpha.shape == (T, 2 * len(target) + 1)
    # oracle: the end of the recursion is F.ctc_loss
    end = alpha[-1, -2:] if target else alpha[-1, -1:]
    expected = -F.ctc_loss(lp[:, None], torch.tensor([target + [1]]), torch.tensor([T]), torch.tensor([len(target)]),
                           reduction="sum")
    assert_close(torch.logsumexp(end, 0), expected)
    # unreachable states are exactly -inf: state s needs at least (s + 1) // 2 symbols... of time
    t = torch.arange(T)[:, None]
    s = torch.arange(alpha.shape[1])[None, :]
    assert torch.isneginf(alpha[s > 2 * t + 1]).all()
    assert_close(alpha, ref("ctc_log_alpha")(lp, target))
    assert_close(ex04.ctc_log_alpha(lp.float(), torch.tensor(target, dtype=torch.long), blank=0),
                 ref("ctc_log_alpha")(lp.float(), torch.tensor(target, dtype=torch.long), blank=0))


def test_ctc_log_alpha_blank_elsewhere():
    lp = random_log_probs(7, 5, seed=3, dtype=torch.float64)
    assert_close(ex04.ctc_log_alpha(lp, [0, 2, 2], blank=4), ref("ctc_log_alpha")(lp, [0, 2, 2], blank=4))


def _ctc_batch(seed, T=15, B=4, V=6, dtype=torch.float64):
    g = gen(seed)
    lp = random_log_probs(T, B, V, seed=seed, dtype=dtype)
    input_lengths = torch.tensor([T, T - 3, 9, 4])[:B]
    target_lengths = torch.tensor([5, 1, 4, 0])[:B]
    targets = torch.randint(1, V, (B, int(target_lengths.max())), generator=g)
    targets[2, :2] = 3                                                         # a repeat
    for b in range(B):
        targets[b, int(target_lengths[b]):] = 0
    return lp, targets, input_lengths, target_lengths


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
@pytest.mark.parametrize("seed", range(2))
def test_ctc_loss_value_and_gradient(reduction, layout, seed):
    lp, targets, il, tl = _ctc_batch(seed)
    if layout == "concatenated":
        targets = torch.cat([targets[b, : int(tl[b])] for b in range(len(tl))])
    results = {}
    for who, fn in (("ours", ex04.ctc_loss), ("torch", F.ctc_loss), ("reference", None)):
        if who == "reference":
            try:
                fn = ref("ctc_loss")
            except pytest.skip.Exception:
                continue
        # F.ctc_loss's backward assumes log_probs come from a log_softmax, so differentiate
        # with respect to the logits (exact autograd of ours equals it only through that).
        x = lp.detach().clone().requires_grad_(True)
        loss = fn(x.log_softmax(-1), targets, il, tl, blank=0, reduction=reduction)
        (loss * torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).view_as(loss)).sum().backward()
        results[who] = (loss.detach(), x.grad)
    for who in results:
        assert_close(results["ours"][0], results[who][0], msg=f"loss vs {who}")
        assert_close(results["ours"][1], results[who][1], msg=f"gradient vs {who}")


def test_ctc_loss_float32_and_infeasible():
    lp, targets, il, tl = _ctc_batch(5, dtype=torch.float32)
    il = torch.tensor([15, 2, 9, 4])                                           # item 1: 1 symbol in 2 frames: fine
    tl2 = tl.clone()
    targets2 = targets.clone()
    targets2[1, 0] = 2
    il2 = il.clone()
    il2[0] = 4                                                                 # item 0: 5 symbols in 4 frames: inf
    ours = ex04.ctc_loss(lp, targets2, il2, tl2, reduction="none")
    expected = F.ctc_loss(lp, targets2, il2, tl2, reduction="none")
    assert torch.isinf(ours[0]) and torch.isinf(expected[0])
    assert_close(ours[1:], expected[1:])
    assert_close(ours, ref("ctc_loss")(lp, targets2, il2, tl2, reduction="none"))
    assert_close(ex04.ctc_loss(lp, targets, il, tl), F.ctc_loss(lp, targets, il, tl))


def test_ctc_loss_zero_frames_matches_torch():
    """An item with no frames: loss 0 for an empty target, inf otherwise (as F.ctc_loss)."""
    lp = random_log_probs(5, 3, 6, seed=4)
    targets = torch.tensor([[1, 2], [3, 0], [0, 0]])
    for il, tl in (([5, 0, 3], [2, 1, 0]), ([5, 5, 0], [2, 1, 0])):
        il, tl = torch.tensor(il), torch.tensor(tl)
        assert_close(ex04.ctc_loss(lp, targets, il, tl, reduction="none"),
                     F.ctc_loss(lp, targets, il, tl, reduction="none"))


def test_ctc_loss_gradcheck():
    lp = random_log_probs(6, 2, 4, seed=3, dtype=torch.float64).requires_grad_(True)
    targets, il, tl = torch.tensor([[1, 2, 2], [3, 0, 0]]), torch.tensor([6, 4]), torch.tensor([3, 1])
    assert torch.autograd.gradcheck(lambda z: ex04.ctc_loss(z, targets, il, tl), (lp,))


def test_ctc_loss_errors():
    lp, targets, il, tl = _ctc_batch(0)
    same_error(ex04.ctc_loss, ref("ctc_loss"), lp, targets, il, tl, reduction="average")
    same_error(ex04.ctc_loss, ref("ctc_loss"), lp[:, 0], targets, il, tl)
    same_error(ex04.ctc_loss, ref("ctc_loss"), lp, targets, il + 1, tl)


# ------------------------------------------------------------------------------ ex05
@pytest.mark.parametrize("ceiling", [20.0, 1.0])
def test_clipped_relu(ceiling):
    x = torch.randn(3, 4, 50, generator=gen(0)) * 30
    y = ex05.clipped_relu(x, ceiling)
    assert_close(y, torch.minimum(torch.relu(x), torch.tensor(ceiling)))
    assert_close(y, ref("clipped_relu")(x, ceiling))
    x.requires_grad_(True)
    ex05.clipped_relu(x, ceiling).sum().backward()
    assert_close(x.grad, ((x > 0) & (x < ceiling)).float())
    assert_close(ex05.clipped_relu(x.detach()), ref("clipped_relu")(x.detach()))


@pytest.mark.parametrize("k,s,p,d", list(itertools.product([1, 3, 11, 21], [1, 2, 3], [0, 1, 5, 10], [1, 2])))
def test_conv_output_length_matches_conv(k, s, p, d):
    conv = nn.Conv1d(1, 1, k, stride=s, padding=p, dilation=d)
    for length in (1, 7, 50, 161):
        expected = conv(torch.zeros(1, 1, length)).shape[-1] if length + 2 * p >= d * (k - 1) + 1 else None
        ours = ex05.conv_output_length(length, k, s, p, d)
        assert type(ours) is int
        if expected is not None:
            assert ours == expected
        assert ours == ref("conv_output_length")(length, k, s, p, d)
    lengths = torch.tensor([1, 7, 50, 161], dtype=torch.int32)
    out = ex05.conv_output_length(lengths, k, s, p, d)
    assert out.dtype == torch.int64
    assert out.tolist() == [ex05.conv_output_length(int(n), k, s, p, d) for n in lengths]
    assert_close(out, ref("conv_output_length")(lengths, k, s, p, d))


@pytest.mark.parametrize("seed", range(3))
def test_mask_time(seed):
    x = torch.randn(4, 3, 5, 9, generator=gen(seed))
    lengths = torch.tensor([9, 0, 4, 1])
    y = ex05.mask_time(x, lengths)
    expected = x.clone()
    for b, n in enumerate(lengths.tolist()):
        expected[b, ..., n:] = 0
    assert_close(y, expected, rtol=0, atol=0)
    assert y.data_ptr() != x.data_ptr()
    assert_close(y, ref("mask_time")(x, lengths))


# ------------------------------------------------------------------------------ ex06
def _gru_weights(I, H, seed, bias=True, dtype=torch.float64):
    g = gen(seed)
    w = [torch.randn(3 * H, I, generator=g, dtype=dtype) * 0.5, torch.randn(3 * H, H, generator=g, dtype=dtype) * 0.5]
    if bias:
        w += [torch.randn(3 * H, generator=g, dtype=dtype) * 0.5, torch.randn(3 * H, generator=g, dtype=dtype) * 0.5]
    return w


@pytest.mark.parametrize("bias", [True, False])
def test_gru_cell_matches_torch(bias):
    I, H, B = 5, 4, 3
    cell = nn.GRUCell(I, H, bias=bias).double()
    x = torch.randn(B, I, generator=gen(1), dtype=torch.float64)
    h = torch.randn(B, H, generator=gen(2), dtype=torch.float64)
    args = [cell.weight_ih, cell.weight_hh] + ([cell.bias_ih, cell.bias_hh] if bias else [])
    assert_close(ex06.gru_cell(x, h, *args), cell(x, h))
    assert_close(ex06.gru_cell(x, h, *args), ref("gru_cell")(x, h, *args))


def _torch_gru_direction(x, lengths, weights, reverse):
    """nn.GRU over packed sequences: the oracle for one direction of gru_layer."""
    T, B, I = x.shape
    H = weights[1].shape[1]
    rnn = nn.GRU(I, H, bidirectional=True, bias=len(weights) == 4).double()
    with torch.no_grad():
        suffix = "_reverse" if reverse else ""
        getattr(rnn, "weight_ih_l0" + suffix).copy_(weights[0])
        getattr(rnn, "weight_hh_l0" + suffix).copy_(weights[1])
        if len(weights) == 4:
            getattr(rnn, "bias_ih_l0" + suffix).copy_(weights[2])
            getattr(rnn, "bias_hh_l0" + suffix).copy_(weights[3])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=T)              # (T, B, 2H)
    return out[..., H:] if reverse else out[..., :H]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_layer_matches_packed_torch_gru(reverse, bias):
    T, B, I, H = 7, 4, 3, 5
    x = torch.randn(T, B, I, generator=gen(3), dtype=torch.float64)
    lengths = torch.tensor([7, 3, 1, 5])
    x[3:, 1] = 9.0                                                            # padding must not matter
    w = _gru_weights(I, H, seed=4, bias=bias)
    out = ex06.gru_layer(x, lengths, *w, reverse=reverse)
    assert out.shape == (T, B, H)
    assert_close(out, _torch_gru_direction(x, lengths, w, reverse))
    assert_close(out, ref("gru_layer")(x, lengths, *w, reverse=reverse))


@pytest.mark.parametrize("n_weights", [2, 4])
def test_bidirectional_gru(n_weights):
    T, B, I, H = 6, 3, 4, 5
    x = torch.randn(T, B, I, generator=gen(5), dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    fw, bw = _gru_weights(I, H, 6)[:n_weights], _gru_weights(I, H, 7)[:n_weights]
    out = ex06.bidirectional_gru(x, lengths, tuple(fw), tuple(bw))
    expected = _torch_gru_direction(x, lengths, fw, False) + _torch_gru_direction(x, lengths, bw, True)
    assert_close(out, expected)
    assert_close(out, ref("bidirectional_gru")(x, lengths, tuple(fw), tuple(bw)))


def test_gru_gradients_match_reference():
    T, B, I, H = 5, 2, 3, 4
    x = torch.randn(T, B, I, generator=gen(8), dtype=torch.float64)
    lengths = torch.tensor([5, 3])
    grads = []
    for fn in (ex06.bidirectional_gru, ref("bidirectional_gru")):
        fw = [w.requires_grad_(True) for w in _gru_weights(I, H, 9)]
        bw = [w.requires_grad_(True) for w in _gru_weights(I, H, 10)]
        fn(x, lengths, fw, bw).square().sum().backward()
        grads.append([w.grad for w in fw + bw])
    for a, b in zip(*grads):
        assert_close(a, b)


# ------------------------------------------------------------------------------ ex07
def _bn_steps(bn_cls, steps, H=6, seed=0, momentum=0.1):
    """Train mode for ``steps`` batches, then eval; returns outputs, input grads and state."""
    torch.manual_seed(0)  # nothing random inside, but keep it explicit
    bn = bn_cls(H, momentum=momentum).double()
    with torch.no_grad():
        getattr(bn, "bn", bn).weight.copy_(torch.linspace(0.5, 2.0, H))
        getattr(bn, "bn", bn).bias.copy_(torch.linspace(-1.0, 1.0, H))
    outs, grads = [], []
    for k in range(steps):
        T, B = 9, 4
        x = (torch.randn(T, B, H, generator=gen(seed + k), dtype=torch.float64) * 3 + 1).requires_grad_(True)
        lengths = torch.tensor([9, 4, 1, 6])
        y = bn(x, lengths)
        (y * torch.arange(H, dtype=y.dtype)).sum().backward()
        outs.append(y.detach())
        grads.append(x.grad)
    bn.eval()
    x = torch.randn(5, 2, H, generator=gen(99), dtype=torch.float64)
    outs.append(bn(x, torch.tensor([5, 2])).detach())
    return outs, grads, {k: v.clone() for k, v in bn.state_dict().items()}, bn


class _BatchNorm1dOnValidFrames(nn.Module):
    """The oracle: nn.BatchNorm1d applied to the valid frames only."""

    def __init__(self, H, momentum=0.1):
        super().__init__()
        self.bn = nn.BatchNorm1d(H, momentum=momentum)

    def forward(self, x, lengths):
        mask = torch.arange(x.shape[0])[:, None] < lengths[None, :]          # (T, B)
        out = torch.zeros_like(x)
        out[mask] = self.bn(x[mask])                                           # (n_valid, H)
        return out

    def state_dict(self, *args, **kwargs):
        return self.bn.state_dict(*args, **kwargs)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_batchnorm_matches_batchnorm1d_on_valid_frames(momentum):
    ours = _bn_steps(ex07.SequenceWiseBatchNorm, 3, momentum=momentum)
    oracle = _bn_steps(_BatchNorm1dOnValidFrames, 3, momentum=momentum)
    for a, b in zip(ours[0] + ours[1], oracle[0] + oracle[1]):
        assert_close(a, b)
    assert ours[2].keys() == oracle[2].keys()
    for k in ours[2]:
        assert_close(ours[2][k], oracle[2][k], msg=k)
    bn = ours[3]
    assert dict(bn.named_parameters()).keys() == {"weight", "bias"}
    assert dict(bn.named_buffers()).keys() == {"running_mean", "running_var", "num_batches_tracked"}


def test_batchnorm_matches_reference():
    ours = _bn_steps(ex07.SequenceWiseBatchNorm, 2)
    theirs = _bn_steps(ref("SequenceWiseBatchNorm"), 2)
    for a, b in zip(ours[0] + ours[1], theirs[0] + theirs[1]):
        assert_close(a, b)
    for k in ours[2]:
        assert_close(ours[2][k], theirs[2][k], msg=k)


def test_batchnorm_initial_state_and_padding():
    bn = ex07.SequenceWiseBatchNorm(3)
    ref_bn = nn.BatchNorm1d(3)
    for k, v in ref_bn.state_dict().items():
        assert_close(bn.state_dict()[k], v, msg=k)
    x = torch.randn(4, 2, 3, generator=gen(0))
    x[2:, 1] = 1e6                                                            # padding must not matter
    y = bn(x, torch.tensor([4, 2]))
    assert (y[2:, 1] == 0).all()
    assert_close(bn.running_mean, 0.1 * torch.cat([x[:, 0], x[:2, 1]]).mean(0))


# ------------------------------------------------------------------------------ ex08
def _dataset(lengths, seed=0):
    g = gen(seed)
    words = ["a", "cat", "sat", "on", "the", "mat", "it's"]
    return [SimpleNamespace(audio=torch.rand(n, generator=g) * 2 - 1,
                            transcript=" ".join(words[(i + j) % len(words)] for j in range(1 + i % 3)),
                            sample_rate=16000)
            for i, n in enumerate(lengths)]


DATA_LENGTHS = [1600, 800, 3200, 800, 480, 2400, 1600, 960, 4000, 320, 800]


@pytest.mark.parametrize("epoch", [0, 1, 2, 5])
@pytest.mark.parametrize("seed", [0, 7])
def test_sortagrad_sampler(epoch, seed):
    data = _dataset(DATA_LENGTHS)
    state = torch.random.get_rng_state()
    order = ex08.sortagrad_sampler(data, epoch, seed)
    assert torch.equal(state, torch.random.get_rng_state()), "the global RNG was touched"
    assert sorted(order) == list(range(len(data)))
    if epoch == 0:
        assert order == sorted(range(len(data)), key=lambda i: (DATA_LENGTHS[i], i))
    else:
        g = torch.Generator()
        g.manual_seed(seed * 1_000_003 + epoch)
        assert order == torch.randperm(len(data), generator=g).tolist()
    assert order == ref("sortagrad_sampler")(data, epoch, seed)


@pytest.mark.parametrize("batch_size", [1, 3, 4, 11, 20])
@pytest.mark.parametrize("epoch", [0, 1, 3])
def test_sortagrad_batches(batch_size, epoch):
    data = _dataset(DATA_LENGTHS)
    batches = ex08.sortagrad_batches(data, batch_size, epoch, seed=3)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(data)))
    by_length = sorted(range(len(data)), key=lambda i: (DATA_LENGTHS[i], i))
    chunks = [by_length[i : i + batch_size] for i in range(0, len(data), batch_size)]
    assert sorted(batches) == sorted(chunks)
    if epoch == 0:
        assert batches == chunks
    assert batches == ref("sortagrad_batches")(data, batch_size, epoch, seed=3)


def test_sortagrad_errors():
    data = _dataset(DATA_LENGTHS[:3])
    same_error(ex08.sortagrad_batches, ref("sortagrad_batches"), data, 0, 0)
    same_error(ex08.sortagrad_batches, ref("sortagrad_batches"), data, 2, -1)
    same_error(ex08.sortagrad_sampler, ref("sortagrad_sampler"), data, -1)


@pytest.mark.parametrize("n_fft", [None, 256, 512])
def test_collate_batch(encoder, n_fft):
    data = _dataset([1600, 800, 3200, 481])
    ours = ex08.collate_batch(data, encoder, n_fft=n_fft)
    theirs = ref("collate_batch")(data, encoder, n_fft=n_fft)
    for field in ("features", "feature_lengths", "targets", "target_lengths"):
        assert_close(getattr(ours, field), getattr(theirs, field), rtol=0, atol=0, msg=field)
    assert ours.transcripts == theirs.transcripts == [s.transcript for s in data]
    assert ours.features.dtype == torch.float32 and ours.targets.dtype == torch.int64
    assert ours.feature_lengths.dtype == ours.target_lengths.dtype == torch.int64
    # independent: each item is its own spectrogram, then zeros
    for b, s in enumerate(data):
        spec = ex01.compute_spectrogram(s.audio, n_fft=n_fft)
        n = spec.shape[1]
        assert_close(ours.features[b, 0, :, :n], spec)
        assert (ours.features[b, 0, :, n:] == 0).all()
        assert ours.targets[b, : len(s.transcript)].tolist() == encoder.encode(s.transcript)


def test_collate_batch_errors(encoder):
    same_error(ex08.collate_batch, ref("collate_batch"), [], encoder)
    bad = _dataset([800])
    bad[0].transcript = ""
    same_error(ex08.collate_batch, ref("collate_batch"), bad, encoder)
    bad[0].transcript = "caf\u00e9"
    same_error(ex08.collate_batch, ref("collate_batch"), bad, encoder)


# ------------------------------------------------------------------------------ ex09
class _TinyModel(nn.Module):
    """features (B, 1, F, T) -> log_probs (T', B, V) with T' = ceil(T / 2)."""

    def __init__(self, n_freq, vocab=29):
        super().__init__()
        self.conv = nn.Conv1d(n_freq, 16, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, vocab)

    def forward(self, features, lengths):
        x = torch.relu(self.bn(self.conv(features[:, 0])))                     # (B, 16, T')
        out_lengths = (lengths + 2 - 3) // 2 + 1
        return self.out(x.permute(2, 0, 1)).log_softmax(-1), out_lengths       # (T', B, V)


def _batches(encoder):
    data = _dataset([3200, 2400, 1600, 4000, 2000, 2800])
    return [ex08.collate_batch(data[i : i + 3], encoder) for i in (0, 3)]


@pytest.mark.parametrize("max_grad_norm", [400.0, 0.01])
def test_train_step(encoder, max_grad_norm):
    batch = _batches(encoder)[0]
    results = []
    for fn in (ex09.train_step, None, "reference"):
        torch.manual_seed(0)
        model = _TinyModel(161)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model.eval()
        if fn is None:                                                         # the oracle, step by step
            model.train()
            lp, ol = model(batch.features, batch.feature_lengths)
            loss = F.ctc_loss(lp, batch.targets, ol, batch.target_lengths, zero_infinity=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            opt.step()
            value = float(loss.detach())
        else:
            if fn == "reference":
                try:
                    fn = ref("train_step")
                except pytest.skip.Exception:
                    continue
            value = fn(model, batch, opt, max_grad_norm)
            assert model.training
        results.append((value, [p.detach().clone() for p in model.parameters()], model.bn.running_mean.clone()))
    for value, params, running in results[1:]:
        assert results[0][0] == pytest.approx(value, rel=1e-6)
        for a, b in zip(results[0][1], params):
            assert_close(a, b)
        assert_close(results[0][2], running)
    assert isinstance(results[0][0], float)


def test_train_step_skips_non_finite(encoder):
    batch = _batches(encoder)[0]
    model = _TinyModel(161)
    with torch.no_grad():
        model.out.bias[3] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    value = ex09.train_step(model, batch, opt)
    assert not math.isfinite(value)
    for a, p in zip(before, model.parameters()):
        assert_close(a, p.detach(), equal_nan=True)
        assert p.grad is None or not p.grad.abs().gt(0).any()


@pytest.mark.parametrize("training", [True, False])
def test_evaluate(encoder, training):
    batches = _batches(encoder)
    torch.manual_seed(1)
    model = _TinyModel(161)
    model.train(training)
    state = copy.deepcopy(model.state_dict())
    wer = ex09.evaluate(model, batches, encoder)
    assert model.training == training
    for k, v in model.state_dict().items():                                   # eval mode: running stats untouched
        assert_close(v, state[k])
    model.eval()
    with torch.no_grad():
        refs, hyps = [], []
        for b in batches:
            lp, ol = model(b.features, b.feature_lengths)
            hyps += ex02.greedy_decode(lp, encoder, ol)
            refs += b.transcripts
    assert wer == pytest.approx(ex03.word_error_rate(refs, hyps))
    model.train(training)
    assert wer == pytest.approx(ref("evaluate")(model, batches, encoder))
    assert model.training == training


# ------------------------------------------------------------------------------ ex10
class _ToyLM:
    """A made-up word LM: deterministic and history-dependent (not normalised; it need not be)."""

    def score(self, history, word):
        return -1.0 - 0.3 * len(word) - 0.5 * (len(history) % 2) - 0.1 * len(set(word))

    def end_score(self, history):
        return -0.7 - 0.2 * len(history)


class _SmallEncoder:
    """4 symbols: blank, 'a', 'b', ' ' (for brute force over all alignments)."""

    symbols = ["", "a", "b", " "]
    vocab_size, blank_idx = 4, 0

    def encode(self, text):
        return [self.symbols.index(c) for c in text]

    def decode(self, ids):
        return "".join(self.symbols[int(i)] for i in ids)


def _brute_force(lp, enc, lm, alpha, beta):
    """Q(text) for every text, summing over all T^V alignments."""
    T, V = lp.shape
    p_ctc = {}
    for path in itertools.product(range(V), repeat=T):
        text = enc.decode(ex02.ctc_collapse(list(path), blank=enc.blank_idx))
        score = sum(float(lp[t, c]) for t, c in enumerate(path))
        p_ctc[text] = ex10._log_add(p_ctc.get(text, ex10.NEG_INF), score)
    out = {}
    for text, p in p_ctc.items():
        words = text.split()
        q = p + beta * len(words)
        if lm is not None:
            q += alpha * (sum(lm.score(tuple(words[:k]), w) for k, w in enumerate(words)) + lm.end_score(tuple(words)))
        out[text] = q
    return out


@pytest.mark.parametrize("with_lm", [False, True])
@pytest.mark.parametrize("seed", range(2))
def test_prefix_beam_search_is_exact_with_a_wide_beam(with_lm, seed):
    enc = _SmallEncoder()
    lp = random_log_probs(5, 4, seed=seed, scale=1.0, dtype=torch.float64)
    lm = _ToyLM() if with_lm else None
    exact = _brute_force(lp, enc, lm, alpha=0.7, beta=0.4)
    hyps = ex10.prefix_beam_search(lp, enc, beam_width=10_000, lm=lm, alpha=0.7, beta=0.4)
    assert {t for t, _ in hyps} == set(exact)
    for text, score in hyps:
        assert score == pytest.approx(exact[text], abs=1e-9), text
    assert [s for _, s in hyps] == sorted((s for _, s in hyps), reverse=True)


@pytest.mark.parametrize("with_lm", [False, True])
@pytest.mark.parametrize("beam_width", [1, 4, 16])
@pytest.mark.parametrize("seed", range(2))
def test_prefix_beam_search_matches_reference(encoder, with_lm, beam_width, seed):
    lp = random_log_probs(25, 29, seed=seed, scale=2.5)
    lp[:, 0] += 1.0
    lp[:, 27] += 0.5
    lp = lp.log_softmax(-1)
    lm = _ToyLM() if with_lm else None
    ours = ex10.prefix_beam_search(lp, encoder, beam_width=beam_width, lm=lm, alpha=0.8, beta=1.5)
    theirs = ref("prefix_beam_search")(lp, encoder, beam_width=beam_width, lm=lm, alpha=0.8, beta=1.5)
    assert [t for t, _ in ours] == [t for t, _ in theirs]
    assert_close(torch.tensor([s for _, s in ours]), torch.tensor([s for _, s in theirs]), rtol=1e-6, atol=1e-6)
    assert len(ours) <= beam_width


def test_prefix_beam_search_edge_cases(encoder):
    lp = torch.full((3, 29), -30.0)
    lp[0, 1] = lp[1, 0] = lp[2, 2] = 0.0
    lp = lp.log_softmax(-1)
    assert ex10.prefix_beam_search(lp, encoder, beam_width=4)[0][0] == "ab"
    empty = ex10.prefix_beam_search(torch.zeros(0, 29), encoder)
    assert empty == [("", 0.0)]
    assert empty == ref("prefix_beam_search")(torch.zeros(0, 29), encoder)
    same_error(ex10.prefix_beam_search, ref("prefix_beam_search"), torch.zeros(2, 3, 29), encoder)
    same_error(ex10.prefix_beam_search, ref("prefix_beam_search"), lp, encoder, 0)
    same_error(ex10.prefix_beam_search, ref("prefix_beam_search"), torch.randn(4, 29) + 3, encoder)


# ------------------------------------------------------------------------------ ex11
@pytest.mark.parametrize("tau", [0, 1, 3, 10])
@pytest.mark.parametrize("seed", range(2))
def test_row_conv(tau, seed):
    T, B, H = 8, 3, 4
    x = torch.randn(T, B, H, generator=gen(seed), dtype=torch.float64)
    lengths = torch.tensor([8, 5, 1])
    x[5:, 1] = 100.0                                                          # padding must not leak
    w = torch.randn(tau + 1, H, generator=gen(seed + 10), dtype=torch.float64)
    out = ex11.row_conv(x, w, lengths)
    expected = torch.zeros_like(x)
    for t, b, i in itertools.product(range(T), range(B), range(H)):
        if t < lengths[b]:
            expected[t, b, i] = sum(w[j, i] * x[t + j, b, i] for j in range(tau + 1) if t + j < lengths[b])
    assert_close(out, expected)
    assert_close(out, ref("row_conv")(x, w, lengths))


def test_row_conv_errors():
    x = torch.zeros(4, 2, 3)
    same_error(ex11.row_conv, ref("row_conv"), x, torch.zeros(2, 4), torch.tensor([4, 4]))
    same_error(ex11.row_conv, ref("row_conv"), x, torch.zeros(2, 3), torch.tensor([5, 4]))
