"""Mistake models: what classic mistakes produce, so a wrong answer can be named.

One registry serves both places a student meets a hint:

* the checks (``autograder/checks/test_exNN_*.py``) pass ``hints("ctc_collapse", ids, blank)`` to
  their comparisons, and the scoreboard says "Hint: you dropped the blanks before merging repeats";
* the lessons' "your turn" cells (``lessons/yourturn.py``) run the student's function on the
  lesson's examples and, on a mismatch, show the same hint.

A mistake model takes the graded function's own arguments and returns a list of
``(candidate, message)`` pairs; ``candidate`` is the value the mistake produces (or a zero-argument
callable computing it, so models that do not apply to an input can simply raise).  Models run in
the grader (or the lesson's kernel), never in the worker, and may use ``reference``.

Every graded function has at least three models.  The classes and ``train_step`` (whose comparisons
are not a single call) keep their mistake models in their checks, where each is still named.
``docs/checks.md`` lists every mistake by exercise.
"""
from __future__ import annotations

import itertools
import math
import random
from typing import Callable, Iterable

import numpy as np
import torch

Hint = tuple  # (candidate value or zero-argument callable returning it, message)

_REGISTRY: dict[str, Callable[..., list]] = {}


def mistakes_of(name: str):
    """Register ``fn(*args, **kwargs) -> [(candidate, message), ...]`` as the mistakes of ``name``."""
    def deco(fn):
        _REGISTRY[name] = fn
        return fn
    return deco


def hints(name: str, *args, **kwargs) -> list:
    """The mistake models of graded name ``name`` for this call (``[]`` when it has none)."""
    model = _REGISTRY.get(name)
    if model is None:
        return []
    try:
        return list(model(*args, **kwargs))
    except Exception:  # noqa: BLE001 - a model that cannot handle this input gives no hint
        return []


def registered() -> list[str]:
    return sorted(_REGISTRY)


def matches(got, candidate, rtol: float = 1e-3, atol: float = 1e-4) -> bool:
    """Does ``got`` equal what a mistake produced (tensors within tolerance, the rest exactly)?"""
    try:
        if isinstance(candidate, torch.Tensor):
            if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(candidate.shape):
                return False
            g, c = got.detach().double(), candidate.detach().double()
            return bool(torch.allclose(g, c, rtol=rtol, atol=atol, equal_nan=True))
        if isinstance(candidate, float) or isinstance(got, float):
            if not isinstance(got, (int, float, np.number)) or isinstance(got, bool):
                return False
            return math.isclose(float(got), float(candidate), rel_tol=max(rtol, 1e-9), abs_tol=atol)
        if isinstance(candidate, (list, tuple)) and isinstance(got, (list, tuple)):
            return len(got) == len(candidate) and all(matches(a, b, rtol, atol) for a, b in zip(got, candidate))
        if isinstance(candidate, dict):  # a subset of fields (collate_batch): every listed field must match
            return isinstance(got, dict) and all(k in got and matches(got[k], v, rtol, atol)
                                                 for k, v in candidate.items())
        return type(got) is type(candidate) and got == candidate
    except Exception:  # noqa: BLE001
        return False


def hint_message(got, hint_list: Iterable[Hint], rtol: float = 1e-3, atol: float = 1e-4) -> str | None:
    """The message of the first mistake whose value ``got`` equals, or ``None``."""
    for candidate, message in hint_list or ():
        try:
            value = candidate() if callable(candidate) else candidate
        except Exception:  # noqa: BLE001 - a mistake model that does not apply to this input
            continue
        if matches(got, value, rtol, atol):
            return message
    return None


def hint_for(got, hint_list: Iterable[Hint], rtol: float = 1e-3, atol: float = 1e-4) -> str:
    """``" Hint: <message>"`` for the first matching mistake, else ``""`` (appended to a failure)."""
    message = hint_message(got, hint_list, rtol, atol)
    return f" Hint: {message}" if message else ""


def _ids(ids):
    return ids.tolist() if isinstance(ids, torch.Tensor) else [int(i) for i in ids]


def _lens(lengths, B, T):
    if lengths is None:
        return [T] * B
    return [int(n) for n in (lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths)]


def _valid_tb(lengths, T):
    """``(T, B, 1)`` float mask of the frames ``t < lengths[b]``."""
    lengths = torch.as_tensor(lengths)
    return (torch.arange(T)[:, None] < lengths[None, :]).unsqueeze(2)


# ============================================================================ ex01
def _frames(audio, L, hop, n):
    if n < 1:
        return audio.new_zeros((0, L))
    idx = torch.arange(n)[:, None] * hop + torch.arange(L)[None, :]
    return audio[idx]


def _pad_to(audio, n_samples):
    return torch.nn.functional.pad(audio, (0, max(0, n_samples - audio.numel())))


@mistakes_of("frame_signal")
def _frame_signal_mistakes(audio, frame_length, hop_length):
    N, L, hop = audio.numel(), int(frame_length), int(hop_length)
    right = 1 + (N - L) // hop
    floor_div = N // hop
    ceil_n = 1 + -(-(N - L) // hop)
    return [
        (lambda: _frames(audio, L, hop, right - 1),
         "off-by-one frame count: n_frames = 1 + (N - frame_length) // hop_length"),
        (lambda: _frames(_pad_to(audio, (floor_div - 1) * hop + L), L, hop, floor_div),
         "N // hop_length frames runs past the end of the audio (you padded it): a frame must fit entirely "
         "inside the audio, n_frames = 1 + (N - frame_length) // hop_length"),
        (lambda: _frames(_pad_to(audio, (ceil_n - 1) * hop + L), L, hop, ceil_n),
         "you rounded the frame count up and padded the last frame: no padding, the last partial frame is "
         "dropped"),
        (lambda: _frames(audio, L, hop, right).T, "you returned (frame_length, n_frames): transpose"),
        (lambda: _frames(audio, hop, L, 1 + (N - hop) // L) if hop != L else None,
         "you swapped frame_length and hop_length: frames are frame_length samples long and start every "
         "hop_length samples"),
    ]


def _win_hop(sample_rate, window_ms, stride_ms, n_fft):
    win = int(round(sample_rate * window_ms / 1000.0))
    hop = int(round(sample_rate * stride_ms / 1000.0))
    nfft = win if n_fft is None else int(n_fft)
    return min(win, nfft), hop, nfft


def spectrogram_variant(audio, sample_rate=16000, n_fft=None, window_ms=20.0, stride_ms=10.0, eps=1e-10,
                        normalize=True, *, periodic=True, window=True, norm="utt", log="ln", power=True,
                        biased_std=False, full_window=False, crop=False):
    """The log power spectrogram with one thing changed (a mistake model; the defaults are right)."""
    win, hop, nfft = _win_hop(sample_rate, window_ms, stride_ms, n_fft)
    if full_window or crop:
        win = int(round(sample_rate * window_ms / 1000.0))
    frames = _frames(audio, win, hop, 1 + (audio.numel() - win) // hop)
    w = torch.hann_window(win, periodic=periodic, dtype=audio.dtype) if window else torch.ones(win, dtype=audio.dtype)
    if crop:
        spec = torch.fft.rfft(frames * w, n=win, dim=-1)[:, : nfft // 2 + 1]
    else:
        spec = torch.fft.rfft(frames * w, n=nfft if not full_window else max(nfft, win), dim=-1)
    p = spec.abs() ** 2 if power else spec.abs()
    if log == "ln":
        s = torch.log(p + eps)
    elif log == "log10":
        s = torch.log10(p + eps)
    else:
        s = p
    s = s.T
    if normalize:
        if norm == "utt":
            s = (s - s.mean()) / s.std(unbiased=not biased_std).clamp_min(1e-5)
        elif norm == "freq":
            s = (s - s.mean(1, keepdim=True)) / s.std(1, keepdim=True).clamp_min(1e-5)
        elif norm == "frame":
            s = (s - s.mean(0, keepdim=True)) / s.std(0, keepdim=True).clamp_min(1e-5)
    return s.contiguous()


@mistakes_of("compute_spectrogram")
def _compute_spectrogram_mistakes(audio, sample_rate=16000, n_fft=None, window_ms=20.0, stride_ms=10.0, eps=1e-10,
                                  normalize=True):
    a = (audio, sample_rate, n_fft, window_ms, stride_ms, eps, normalize)
    win, _, nfft = _win_hop(sample_rate, window_ms, stride_ms, n_fft)
    out = []
    if n_fft is not None and int(n_fft) < int(round(sample_rate * window_ms / 1000.0)):
        out.append((lambda: spectrogram_variant(*a, crop=True),
                    "an n_fft below the window length shortens the window to n_fft samples (you cropped the "
                    "spectrum of the full window instead)"))
    return out + [
        (lambda: spectrogram_variant(*a, log="none"), "you forgot the log: the features are log(|X|^2 + eps)"),
        (lambda: spectrogram_variant(*a, periodic=False), "use the periodic Hann window: "
                                                          "torch.hann_window(win, periodic=True) (np.hanning is "
                                                          "the symmetric one)"),
        (lambda: spectrogram_variant(*a, window=False), "you did not multiply the frames by the Hann window"),
        (lambda: spectrogram_variant(*a, norm="freq"), "normalise the whole utterance with ONE mean and ONE std, "
                                                       "not per frequency bin"),
        (lambda: spectrogram_variant(*a, norm="frame"), "normalise the whole utterance with ONE mean and ONE std, "
                                                        "not per frame"),
        (lambda: spectrogram_variant(*a[:-1], normalize=False), "normalize=True: subtract the mean and divide by "
                                                                "the std"),
        (lambda: spectrogram_variant(*a, biased_std=True), "divide by torch's default (unbiased) std, "
                                                           "spec.std(), not the biased one"),
        (lambda: spectrogram_variant(*a, log="log10"), "use the natural log (torch.log), not log10"),
        (lambda: spectrogram_variant(*a, power=False), "take the power |X|^2, not the magnitude |X| (the log of "
                                                       "the magnitude is half the log of the power)"),
        (lambda: spectrogram_variant(*a[:5], 0.0, normalize), "add eps inside the log: log(|X|^2 + eps). Digital "
                                                               "silence has power exactly 0, log(0) = -inf, and "
                                                               "normalising turns it into NaN"),
        (lambda: spectrogram_variant(*a).T, "return (n_freq, n_frames): transpose"),
    ]


# ============================================================================ ex02
def _drop_then_merge(ids, blank=0):
    kept = [i for i in _ids(ids) if i != blank]
    return [x for k, x in enumerate(kept) if k == 0 or kept[k - 1] != x]


def _drop_only(ids, blank=0):
    return [i for i in _ids(ids) if i != blank]


def _merge_only(ids, blank=0):
    ids = _ids(ids)
    return [x for k, x in enumerate(ids) if k == 0 or ids[k - 1] != x]


def _merge_then_drop(ids, blank):
    return [x for x in _merge_only(ids, blank) if x != blank]


def _prev_skips_blanks(ids, blank=0):
    """"previous" updated only with kept ids: a _ a -> a (blanks never reset it)."""
    out, prev = [], None
    for i in _ids(ids):
        if i == blank:
            continue
        if i != prev:
            out.append(i)
        prev = i
    return out


@mistakes_of("ctc_collapse")
def _ctc_collapse_mistakes(ids, blank=0):
    zero = [(lambda: _merge_then_drop(ids, 0), f"you dropped id 0 instead of the blank argument (blank={blank})")]
    return (zero if blank != 0 else []) + [
        (lambda: _drop_then_merge(ids, blank), "you dropped the blanks before merging repeats: merge first, "
                                               "then drop blanks (a _ a -> aa)"),
        (lambda: _drop_only(ids, blank), "you dropped blanks but did not merge repeated ids"),
        (lambda: _merge_only(ids, blank), "you merged repeats but did not drop the blanks"),
    ]


@mistakes_of("greedy_decode")
def _greedy_decode_mistakes(log_probs, encoder, lengths=None):
    T, B, _ = log_probs.shape
    best = log_probs.argmax(-1)
    lens = _lens(lengths, B, T)
    blank = int(encoder.blank_idx)

    def dec(f):
        return [encoder.decode(f(best[: lens[b], b].tolist(), blank)) for b in range(B)]

    return [
        (lambda: dec(_drop_then_merge), "you dropped the blanks before merging repeats (collapse: merge first, "
                                        "then drop blanks), or collapsed twice (encoder.ctc_decode collapses "
                                        "again: 'l _ l' of 'hello' becomes one 'l'; decode a collapsed path with "
                                        "encoder.decode)"),
        (lambda: dec(lambda p, bl: p), "you did not collapse the path (merge repeats) before decoding"),
        (lambda: [encoder.decode(_merge_then_drop(best[:, b].tolist(), blank)) for b in range(B)],
         "you decoded the padded frames too: keep only the first lengths[b] frames of item b"),
        (lambda: [encoder.decode(_merge_then_drop(best[: lens[0], b].tolist(), blank)) for b in range(B)],
         "you cut every item to lengths[0]: item b has its own length lengths[b]"),
        (lambda: [encoder.decode(_merge_then_drop(log_probs.argmax(1)[: lens[b], b].tolist(), blank))
                  for b in range(B)],
         "you took the argmax over the wrong dimension: the symbols are the LAST axis, argmax(dim=-1) -> (T, B)"),
    ]


# ============================================================================ ex03
def _lev(a, b):
    a, b = list(a), list(b)
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _lcs(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[-1]))
        prev = cur
    return prev[-1]


@mistakes_of("edit_distance")
def _edit_distance_mistakes(ref, hyp):
    r, h = list(ref), list(hyp)
    return [
        (lambda: len(r) + len(h) - 2 * _lcs(r, h), "a substitution costs 1, not a deletion plus an insertion (2)"),
        (lambda: max(len(r), len(h)) - _lev(r, h), "return the distance, not a similarity"),
        (lambda: _lcs(r, h), "you computed the longest common subsequence, not the edit distance"),
        (lambda: sum(a != b for a, b in zip(r, h)) + abs(len(r) - len(h)),
         "you compared position by position (Hamming); insertions and deletions shift the alignment"),
        (lambda: 0 if (not r) != (not h) else None,
         "D has n + 1 rows and m + 1 columns (the empty prefixes): with one sequence empty, the distance is the "
         "other one's length"),
    ]


def _as_list(x):
    return [x] if isinstance(x, str) else list(x)


@mistakes_of("word_error_rate")
def _word_error_rate_mistakes(refs, hyps):
    refs, hyps = _as_list(refs), _as_list(hyps)
    edits = [_lev(r.split(), h.split()) for r, h in zip(refs, hyps)]

    def per_utt():
        return sum(e / len(r.split()) for e, r in zip(edits, refs)) / len(refs)

    return [
        (per_utt, "you averaged the WER of each utterance: the corpus WER is the total edit distance divided by "
                  "the total number of reference words"),
        (lambda: sum(edits) / sum(len(h.split()) for h in hyps), "divide by the number of REFERENCE words, not "
                                                                 "hypothesis words"),
        (lambda: sum(_lev(r.strip(), h.strip()) for r, h in zip(refs, hyps)) / sum(len(r.strip()) for r in refs),
         "WER counts words: split the strings into words first"),
        (lambda: float(sum(edits)), "divide the total edit distance by the total number of reference words"),
        (lambda: sum(_lev(r.split(" "), h.split(" ")) for r, h in zip(refs, hyps)) / sum(len(r.split(" "))
                                                                                         for r in refs),
         "split with str.split() (any run of whitespace), not split(' '), which makes empty words"),
    ]


@mistakes_of("char_error_rate")
def _char_error_rate_mistakes(refs, hyps):
    refs, hyps = _as_list(refs), _as_list(hyps)
    rs, hs = [r.strip() for r in refs], [h.strip() for h in hyps]
    edits = [_lev(r, h) for r, h in zip(rs, hs)]
    return [
        (lambda: sum(e / len(r) for e, r in zip(edits, rs)) / len(rs),
         "you averaged the CER of each utterance: the corpus CER is the total edit distance divided by the total "
         "number of reference characters"),
        (lambda: sum(edits) / sum(len(h) for h in hs), "divide by the number of REFERENCE characters, not the "
                                                       "hypothesis' characters"),
        (lambda: sum(_lev(r.replace(" ", ""), h.replace(" ", "")) for r, h in zip(rs, hs)) / sum(
            len(r.replace(" ", "")) for r in rs), "spaces are characters too: do not remove them"),
        (lambda: sum(_lev(r.split(), h.split()) for r, h in zip(refs, hyps)) / sum(len(r.split()) for r in refs),
         "CER compares characters, not words"),
        (lambda: sum(_lev(r, h) for r, h in zip(refs, hyps)) / sum(len(r) for r in refs),
         "strip leading and trailing spaces first (as jiwer does): they are not characters of the sentence"),
    ]


# ============================================================================ ex04
def _extend(target, blank=0):
    out = [blank]
    for y in _ids(target):
        out += [y, blank]
    return out


@mistakes_of("extend_with_blanks")
def _extend_with_blanks_mistakes(target, blank=0):
    t = _ids(target)
    return [
        (lambda: [x for y in t for x in (blank, y)], "end with a final blank: [blank, y1, ..., blank, yU, blank]"),
        (lambda: [x for y in t for x in (y, blank)], "start with a blank: [blank, y1, ..., blank, yU, blank]"),
        (lambda: _extend(t, 0), "use the blank argument, not 0"),
        (lambda: [blank] + t + [blank], "put a blank between every two symbols, not only at both ends"),
    ]


def alpha_variant(log_probs, target, blank=0, *, skip="rule", combine="logsumexp", start_symbol=True,
                  prob_space=False):
    """Log forward variables with one thing changed (a mistake model; the defaults are right).

    ``skip="neq"`` is the rule written as ``ext[s] != ext[s-2]`` alone (the same rule while the target
    holds no blank; a target with blanks in it, like a padded row used whole, tells them apart).
    ``combine="naive"`` is the textbook ``log(sum(exp(terms)))`` computed in the input's dtype:
    once every incoming alpha is below the smallest ``exp`` the dtype can hold (about -103 in
    float32, -745 in float64), ``exp`` gives 0 and ``log(0)`` gives ``-inf``.
    """
    ext = _extend(target, blank)
    T, L = log_probs.shape[0], len(ext)
    naive = combine == "naive"
    lp = log_probs.detach() if naive else log_probs.detach().double()
    neg = float("-inf")
    a = torch.full((T, L), neg, dtype=lp.dtype)
    if T == 0:
        return a.to(log_probs.dtype)
    a[0, 0] = lp[0, ext[0]]
    if L > 1 and start_symbol:
        a[0, 1] = lp[0, ext[1]]
    for t in range(1, T):
        for s in range(L):
            terms = [a[t - 1, s]]
            if s >= 1:
                terms.append(a[t - 1, s - 1])
            if s >= 2 and (ext[s] != blank or skip == "neq") and (
                    skip == "always" or (skip in ("rule", "neq") and ext[s] != ext[s - 2])):
                terms.append(a[t - 1, s - 2])
            st = torch.stack(terms)
            if combine == "max":
                a[t, s] = st.max() + lp[t, ext[s]]
            elif naive:
                a[t, s] = torch.log(torch.exp(st).sum()) + lp[t, ext[s]]
            else:
                a[t, s] = torch.logsumexp(st, 0) + lp[t, ext[s]]
    if prob_space:  # what float32 probabilities give: exp() underflows to 0, log(0) = -inf
        a = a.float().exp().log().double()
    return a.to(log_probs.dtype)


#: The hint for a hand-written log(sum(exp(...))) (ctc_log_alpha's values, and ctc_loss's NaN gradient).
NAIVE_LOGSUMEXP = ("your log-sum-exp is log(sum(exp(...))): over many frames the alphas fall below what exp() can "
                   "represent (about -103 in float32, -745 in float64), exp() gives 0, log(0) = -inf, and its "
                   "gradient is NaN. Use torch.logsumexp / torch.logaddexp: they subtract the max before exp()")


@mistakes_of("ctc_log_alpha")
def _ctc_log_alpha_mistakes(log_probs, target, blank=0):
    def right():
        return alpha_variant(log_probs, target, blank)

    return [
        (lambda: alpha_variant(log_probs, target, blank, combine="max"),
         "you took the max of the incoming alphas (Viterbi): CTC SUMS them, alpha = logsumexp(...) + emit"),
        (lambda: alpha_variant(log_probs, target, blank, skip="none"),
         "you never skip over a blank: from s-2 to s is allowed when ext[s] is not blank and differs from "
         "ext[s-2]"),
        (lambda: alpha_variant(log_probs, target, blank, skip="always"),
         "you also skip between two EQUAL labels (a _ a needs the blank in between)"),
        (lambda: alpha_variant(log_probs, target, blank, start_symbol=False),
         "an alignment may also START in the first symbol: alpha[0, 1] = log_probs[0, ext[1]]"),
        (lambda: right().exp(), "return LOG alphas (log space), not probabilities"),
        (lambda: right().T, "return (T, 2U+1): transpose"),
        (lambda: alpha_variant(log_probs, target, blank, prob_space=True),
         "your alphas underflow to -inf: stay in log space (torch.logsumexp / torch.logaddexp), never exp() "
         "then log()"),
        (lambda: alpha_variant(log_probs, target, blank, combine="naive"), NAIVE_LOGSUMEXP),
        (lambda: right().masked_fill(torch.isinf(right()), -1e30),
         "your unreachable states hold the finite LOG_ZERO (about -1e30): they must be exactly -inf. Turn them "
         "back at the end (alpha.masked_fill(alpha <= LOG_ZERO / 2, float('-inf')))"),
    ]


def _targets_of(targets, target_lengths, whole_rows=False):
    tl = [int(n) for n in torch.as_tensor(target_lengths).tolist()]
    targets = torch.as_tensor(targets)
    if targets.dim() == 2:
        return [targets[b, : (targets.shape[1] if whole_rows else n)].tolist() for b, n in enumerate(tl)]
    if whole_rows:
        raise ValueError("1-D targets have no padding")
    starts = [sum(tl[:b]) for b in range(len(tl))]
    return [targets[s: s + n].tolist() for s, n in zip(starts, tl)]


def ctc_loss_variant(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", *,
                     combine="logsumexp", full_length=False, final="both", sign=1.0, mean="pytorch",
                     whole_rows=False, skip="rule"):
    """Per-item CTC losses with one thing changed, reduced (a mistake model; the defaults are right).

    ``whole_rows``: every row of ``(B, S)`` targets used whole, its zero padding read as labels."""
    T, B, _ = log_probs.shape
    il = [T] * B if full_length else [int(n) for n in torch.as_tensor(input_lengths).tolist()]
    losses = []
    for b, y in enumerate(_targets_of(targets, target_lengths, whole_rows)):
        a = alpha_variant(log_probs[: il[b], b].double(), y, blank, combine=combine, skip=skip)
        if a.shape[0] == 0:
            losses.append(float("inf"))
            continue
        ends = [a[-1, -1]] + ([a[-1, -2]] if len(y) and final == "both" else [])
        end = torch.stack(ends)
        lp = end.max() if combine == "max" else torch.logsumexp(end, 0)
        losses.append(-sign * float(lp))
    out = torch.tensor(losses, dtype=log_probs.dtype)
    tl = torch.as_tensor(target_lengths).to(out.dtype)
    if reduction == "none":
        return out
    if reduction == "sum":
        return out.sum()
    if mean == "plain":
        return out.mean()
    if mean == "ratio":
        return out.sum() / tl.sum()
    if mean == "sum":
        return (out / tl.clamp_min(1)).sum()
    return (out / tl.clamp_min(1)).mean()


@mistakes_of("ctc_loss")
def _ctc_loss_mistakes(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean"):
    a = (log_probs, targets, input_lengths, target_lengths, blank, reduction)
    out = []
    if reduction == "mean":
        out += [(lambda: ctc_loss_variant(*a, mean="plain"), "'mean' divides each loss by its target length "
                                                             "before averaging (like F.ctc_loss), it is not "
                                                             "losses.mean()"),
                (lambda: ctc_loss_variant(*a, mean="ratio"), "'mean' is the mean of loss_b / target_length_b, not "
                                                             "sum(loss) / sum(target_lengths)"),
                (lambda: ctc_loss_variant(*a, mean="sum"), "'mean' AVERAGES loss_b / target_length_b over the "
                                                           "batch: you summed them (divide by the batch size B)")]
    return out + [
        (lambda: ctc_loss_variant(*a, combine="max"), "you kept the best alignment (max, Viterbi): the CTC loss "
                                                      "SUMS the probabilities of all alignments"),
        (lambda: ctc_loss_variant(*a, full_length=True), "you used all T frames for every item: item b has only "
                                                         "input_lengths[b] frames"),
        (lambda: ctc_loss_variant(*a, final="blank"), "a complete alignment ends in the final blank OR the final "
                                                      "symbol: logsumexp(alpha[-1, -1], alpha[-1, -2])"),
        (lambda: ctc_loss_variant(*a, sign=-1.0), "the loss is the NEGATIVE log-likelihood"),
    ] + [(lambda rule=rule: ctc_loss_variant(*a, whole_rows=True, skip=rule),
          "you used each row of the (B, S) targets whole: its zero padding became labels. Item b's target is "
          "targets[b, :target_lengths[b]]") for rule in ("rule", "neq")]


# ============================================================================ ex05
@mistakes_of("clipped_relu")
def _clipped_relu_mistakes(x, ceiling=20.0):
    return [
        (lambda: x.clamp_min(0), "the ReLU is not clipped: min(max(x, 0), ceiling)"),
        (lambda: x.clamp(-ceiling, ceiling), "the lower bound is 0, not -ceiling"),
        (lambda: x.clamp(0, 20), "use the ceiling argument, not a fixed 20"),
        (lambda: x.clamp(0, 6), "that is ReLU6 (the clip at 6 of mobile networks): DS2 clips at the ceiling "
                                "argument, min(max(x, 0), ceiling), 20 by default"),
        (lambda: x.clamp_max(ceiling), "you forgot the ReLU: negative inputs must give 0"),
    ]


@mistakes_of("conv_output_length")
def _conv_output_length_mistakes(length, kernel_size, stride=1, padding=0, dilation=1):
    L, k, s, p, d = length, kernel_size, stride, padding, dilation
    span = d * (k - 1) + 1
    return [
        (lambda: (L + 2 * p - span) // s, "off by one: floor((L + 2p - d(k-1) - 1) / s) + 1 (the +1 counts the "
                                          "first window)"),
        (lambda: -(-(L + 2 * p - span) // s) + 1, "round DOWN (floor), not up"),
        (lambda: (L + 2 * p - k) // s + 1, "the dilation spreads the kernel over d(k-1)+1 frames"),
        (lambda: (L - span) // s + 1, "the padding is added on both sides: L + 2p"),
        (lambda: (L + p - span) // s + 1, "the padding is added on BOTH sides: L + 2p"),
    ]


@mistakes_of("mask_time")
def _mask_time_mistakes(x, lengths):
    lengths = torch.as_tensor(lengths)
    T = x.shape[-1]
    keep = torch.arange(T)[None, :] < lengths[:, None]
    return [
        (lambda: x * (torch.arange(T)[None, :] <= lengths[:, None])[:, None, None, :],
         "off by one: keep frames t < lengths[b], zero t >= lengths[b]"),
        (lambda: x.clone(), "nothing was masked"),
        (lambda: x * keep[:, None, None, :].to(x.dtype), "x * mask turns an inf in the padding into nan (inf * 0): "
                                                         "use x.masked_fill(~mask, 0) or torch.where"),
        (lambda: x * (~keep)[:, None, None, :], "you zeroed the VALID frames and kept the padding"),
        (lambda: x * (torch.arange(x.shape[2])[None, :] < lengths[:, None])[:, None, :, None],
         "you masked the frequency axis; time is the LAST axis"),
    ]


# ============================================================================ ex06
def gru_cell_variant(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, mistake=""):
    """``torch.nn.GRUCell`` with one thing changed (a mistake model; ``mistake=""`` is right)."""
    F = torch.nn.functional
    gx = F.linear(x, weight_ih, bias_ih)
    rx, zx, nx = gx.chunk(3, -1)
    wr, wz, wn = weight_hh.chunk(3, 0)
    br, bz, bn = bias_hh.chunk(3) if bias_hh is not None else (None, None, None)
    rh, zh = F.linear(h, wr, br), F.linear(h, wz, bz)
    if mistake == "zr":
        rx, zx, rh, zh = zx, rx, zh, rh
    r, z = torch.sigmoid(rx + rh), torch.sigmoid(zx + zh)
    if mistake == "reset_before_matmul":     # n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)
        n = torch.tanh(nx + F.linear(r * h, wn, bn))
    elif mistake == "r_outside_bias":        # r * (W_hn h) + b_hn
        n = torch.tanh(nx + r * F.linear(h, wn) + (bn if bn is not None else 0))
    elif mistake == "no_reset":
        n = torch.tanh(nx + F.linear(h, wn, bn))
    else:
        n = torch.tanh(nx + r * F.linear(h, wn, bn))
    if mistake == "swap_update":
        return z * n + (1 - z) * h
    return (1 - z) * n + z * h


_CELL_MISTAKES = [
    ("reset_before_matmul", "the reset gate multiplies (W_hn h + b_hn), AFTER the matrix product: "
                            "n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), not W_hn (r * h)"),
    ("zr", "the gate order is (r, z, n): r comes first"),
    ("r_outside_bias", "r multiplies (W_hn h + b_hn), bias included: n = tanh(W_in x + b_in + r * (W_hn h + b_hn))"),
    ("swap_update", "h' = (1 - z) * n + z * h (you swapped z and 1-z)"),
    ("no_reset", "you left out the reset gate: n = tanh(W_in x + b_in + r * (W_hn h + b_hn))"),
]


@mistakes_of("gru_cell")
def _gru_cell_mistakes(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    w = (weight_ih, weight_hh, bias_ih, bias_hh)
    return [(lambda m=m: gru_cell_variant(x, h, *w, mistake=m), msg) for m, msg in _CELL_MISTAKES]


def gru_layer_variant(x, lengths, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False, *, cell="",
                      mask=True, from_padded_end=False, carry_out=False):
    """A GRU layer with one thing changed (a mistake model; the defaults are right).

    ``carry_out``: a padded step outputs the state carried from the last valid step instead of 0;
    ``from_padded_end="zeroed"``: the reverse pass starts at t = T-1 over inputs zeroed at the padding."""
    T, B, _ = x.shape
    H = weight_hh.shape[1]
    lengths = torch.as_tensor(lengths)
    if not mask:
        lengths = torch.full_like(lengths, T)
    if from_padded_end == "zeroed":
        x = x * _valid_tb(lengths, T).to(x.dtype)
    h = x.new_zeros(B, H)
    out = [None] * T
    steps = range(T - 1, -1, -1) if reverse else range(T)
    for t in steps:
        new = gru_cell_variant(x[t], h, weight_ih, weight_hh, bias_ih, bias_hh, mistake=cell)
        valid = (t < lengths)[:, None] | torch.full((B, 1), bool(from_padded_end))
        h = torch.where(valid, new, h)
        out[t] = torch.where((t < lengths)[:, None], new, h if carry_out else torch.zeros_like(new))
    return torch.stack(out) if T else x.new_zeros(0, B, H)


@mistakes_of("gru_layer")
def _gru_layer_mistakes(x, lengths, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False):
    a = (x, lengths, weight_ih, weight_hh, bias_ih, bias_hh)
    out = []
    if reverse:
        out += [(lambda: gru_layer_variant(*a, reverse=True, from_padded_end=True),
                 "your reverse pass starts at the padded end (t = T-1): each sequence must start at its own last "
                 "valid step lengths[b]-1 with a zero state"),
                (lambda: gru_layer_variant(*a, reverse=True, from_padded_end="zeroed"),
                 "your reverse pass starts at the padded end (t = T-1): zeroing the padded inputs does not help, "
                 "the GRU's biases still move the state there. Each sequence must start at its own last valid "
                 "step lengths[b]-1 with a zero state (reverse each sequence within its length)"),
                (lambda: gru_layer_variant(*a).flip(0), "reverse the INPUT, run the GRU, then reverse the output "
                                                        "back (within each length)"),
                (lambda: gru_layer_variant(*a), "reverse=True is ignored")]
    out.append((lambda: gru_layer_variant(*a, reverse=reverse, mask=False),
                "zero the outputs at padded steps t >= lengths[b]"))
    out.append((lambda: gru_layer_variant(*a, reverse=reverse, carry_out=True),
                "at padded steps t >= lengths[b] you output the state carried from the last valid step: the "
                "state may be carried, but the OUTPUT there is 0"))
    out += [(lambda m=m: gru_layer_variant(*a, reverse=reverse, cell=m), "(in gru_cell) " + msg)
            for m, msg in _CELL_MISTAKES]
    return out


def _w4(w):
    w = tuple(w)
    return w + (None,) * (4 - len(w))


@mistakes_of("bidirectional_gru")
def _bidirectional_gru_mistakes(x, lengths, forward_weights, backward_weights):
    fw, bw = _w4(forward_weights), _w4(backward_weights)

    def f():
        return gru_layer_variant(x, lengths, *fw)

    def b(**kw):
        return gru_layer_variant(x, lengths, *bw, reverse=True, **kw)

    return [
        (lambda: torch.cat([f(), b()], -1), "DS2 SUMS the two directions; you concatenated them"),
        (lambda: (f() + b()) / 2, "sum the directions, do not average them"),
        (lambda: f() + b(from_padded_end=True), "your backward direction starts at the padded end: start at "
                                                "lengths[b]-1"),
        (lambda: f() + gru_layer_variant(x, lengths, *bw), "the backward direction must use reverse=True"),
        (lambda: f(), "you returned the forward direction only"),
        (lambda: gru_layer_variant(x, lengths, *fw, carry_out=True) + b(),
         "(in gru_layer) at padded steps t >= lengths[b] the forward direction outputs the carried state: the "
         "output there is 0"),
        (lambda: gru_layer_variant(x, lengths, *fw, reverse=True) + gru_layer_variant(x, lengths, *bw),
         "you swapped the weights: forward_weights run forwards, backward_weights backwards"),
    ]


# ============================================================================ ex08
def _lengths_of(dataset):
    return [int(s.audio.numel()) for s in dataset]


def _sorted_order(L, key=None, reverse=False):
    return sorted(range(len(L)), key=key or (lambda i: (L[i], i)), reverse=reverse)


def _epoch_perm(n, seed, epoch):
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def _global_perms(n):
    """What a shuffle from the global RNG gives when the grader seeds torch, numpy and random with 0."""
    r = list(range(n))
    random.Random(0).shuffle(r)
    return [("torch", lambda: torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()),
            ("numpy", lambda: [int(i) for i in np.random.RandomState(0).permutation(n)]),
            ("random", lambda: r)]


_GLOBAL = ("you shuffled with the global {} random generator: use a private generator, "
           "torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))")


@mistakes_of("sortagrad_sampler")
def _sortagrad_sampler_mistakes(dataset, epoch, seed=0):
    L = _lengths_of(dataset)
    n = len(L)
    out = [
        (lambda: _sorted_order(L, key=lambda i: (-L[i], i)), "sort by INCREASING length (shortest first)"),
        (lambda: _sorted_order(L, reverse=True), "sort by INCREASING length (shortest first), not reverse=True"),
        (lambda: _sorted_order(L, key=lambda i: (L[i], -i)), "break ties by index (the smaller index first)"),
        (lambda: _by_transcript(dataset), _BY_TRANSCRIPT),
    ]
    if epoch > 0:
        out = [(lambda: _sorted_order(L), "you sorted by length in a later epoch: SortaGrad sorts only in epoch 0, "
                                          "then shuffles")] + out
        out += [(g, _GLOBAL.format(name)) for name, g in _global_perms(n)]
        out += [
            (lambda: _epoch_perm(n, seed, 1) if epoch != 1 else None,
             "the permutation must change with the epoch: seed the generator with seed * 1_000_003 + epoch"),
            (lambda: torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist(),
             "seed the generator with seed * 1_000_003 + epoch, not the seed alone"),
            (lambda: torch.randperm(n, generator=torch.Generator().manual_seed(epoch)).tolist(),
             "seed the generator with seed * 1_000_003 + epoch, not the epoch alone"),
        ]
    else:
        out.append((lambda: _epoch_perm(n, seed, 0), "epoch 0 is sorted by length, not shuffled"))
    return out


_BY_TRANSCRIPT = ("sort by the AUDIO's length (len(sample.audio), the utterance's duration), not the transcript's: "
                  "the CTC cost and the padding grow with the frames")


def _by_transcript(dataset):
    T = [len(s.transcript) for s in dataset]
    return sorted(range(len(T)), key=lambda i: (T[i], i))


def _chunks(order, bs):
    return [order[i: i + bs] for i in range(0, len(order), bs)]


@mistakes_of("sortagrad_batches")
def _sortagrad_batches_mistakes(dataset, batch_size, epoch, seed=0):
    L = _lengths_of(dataset)
    bs = int(batch_size)
    chunks = _chunks(_sorted_order(L), bs)
    nb = len(chunks)
    out = [
        (lambda: chunks[::-1] if epoch == 0 else None, "epoch 0 visits minibatches in INCREASING length"),
        (lambda: _chunks(_sorted_order(L, reverse=True), bs) if epoch == 0 else None,
         "sort by INCREASING length: epoch 0 starts with the shortest utterances"),
        (lambda: _chunks(_sorted_order(L, key=lambda i: (-L[i], i)), bs) if epoch == 0 else None,
         "sort by INCREASING length: epoch 0 starts with the shortest utterances"),
        (lambda: [c for c in chunks if len(c) == bs] if epoch == 0 else None, "keep the last, shorter minibatch"),
        (lambda: _chunks(_by_transcript(dataset), bs) if epoch == 0 else None, _BY_TRANSCRIPT),
    ]
    if epoch > 0:
        out = [(lambda: chunks, "you kept the epoch-0 order in a later epoch: after epoch 0, visit the minibatches "
                                "in a random order")] + out
        out += [
            (lambda: _chunks(_epoch_perm(len(L), seed, epoch), bs),
             "shuffle the ORDER of the length-sorted minibatches, not the utterances (minibatches hold utterances "
             "of similar length)"),
            (lambda: [c for c in (chunks[i] for i in _epoch_perm(nb, seed, epoch)) if len(c) == bs],
             "keep the last, shorter minibatch"),
        ]
        for name, g in _global_perms(nb):
            out.append((lambda g=g: [chunks[i] for i in g()], _GLOBAL.format(name)))
        out += [(lambda: [chunks[i] for i in torch.randperm(nb, generator=torch.Generator().manual_seed(seed)).tolist()],
                 "seed the generator with seed * 1_000_003 + epoch, not the seed alone")]
    return out


@mistakes_of("collate_batch")
def _collate_batch_mistakes(samples, encoder, n_fft=None):
    """Candidates are dicts of the fields the mistake changes."""
    specs = [spectrogram_variant(s.audio, s.sample_rate, n_fft) for s in samples]
    raw = [spectrogram_variant(s.audio, s.sample_rate, n_fft, normalize=False) for s in samples]
    T = max(x.shape[1] for x in specs)
    F = specs[0].shape[0]

    def stack(xs, fill=0.0):
        out = torch.full((len(xs), 1, F, T), fill, dtype=xs[0].dtype)
        for b, x in enumerate(xs):
            out[b, 0, :, : x.shape[1]] = x
        return out

    def pad_then_norm():
        feats = stack(raw)
        return (feats - feats.mean((1, 2, 3), keepdim=True)) / feats.std((1, 2, 3), keepdim=True)

    def batch_norm_after_padding():
        feats = stack(raw)
        return (feats - feats.mean()) / feats.std()

    def padded_audio():
        n = max(s.audio.numel() for s in samples)
        return torch.stack([spectrogram_variant(_pad_to(s.audio, n), s.sample_rate, n_fft).unsqueeze(0)
                            for s in samples])

    return [
        (lambda: {"features": pad_then_norm()}, "normalise each utterance BEFORE padding, and pad with zeros"),
        (lambda: {"features": batch_norm_after_padding()},
         "you normalised the padded batch with one mean and std: normalise each utterance on its own (its own "
         "frames only, compute_spectrogram's normalize=True), THEN pad with zeros"),
        (lambda: {"features": padded_audio()},
         "you padded the AUDIO before the spectrogram: the silence entered each utterance's mean and std, and the "
         "padded frames are not 0. Compute each spectrogram from its own audio, then pad the features with zeros"),
        (lambda: {"features": stack(raw)}, "the features are the NORMALISED spectrograms (compute_spectrogram's "
                                           "default normalize=True)"),
        (lambda: {"feature_lengths": torch.tensor([s.audio.numel() for s in samples])},
         "feature_lengths counts spectrogram FRAMES, not audio samples"),
        (lambda: {"feature_lengths": torch.tensor([s.audio.numel() // _win_hop(s.sample_rate, 20.0, 10.0, n_fft)[1]
                                                   for s in samples])},
         "feature_lengths is each spectrogram's number of frames, 1 + (N - window) // hop (its shape[1]), not "
         "N // hop"),
        (lambda: {"feature_lengths": torch.full((len(samples),), T)},
         "feature_lengths holds each utterance's OWN number of frames (before padding), not the padded length T"),
        (lambda: {"features": torch.stack([torch.nn.functional.pad(x, (0, T - x.shape[1])) for x in specs])},
         "features are (B, 1, n_freq, T): add the channel dimension"),
    ]


# ============================================================================ ex09
def evaluate_variant(model, batches, encoder, mistake=""):
    """Corpus WER of greedy decoding with one thing changed (a mistake model; ``mistake=""`` is right)."""
    import copy

    model = copy.deepcopy(model)
    model.train(mistake == "train_mode")
    refs, hyps, per_batch, per_utt = [], [], [], []
    with torch.no_grad():
        for b in batches:
            lp, ol = model(b.features, b.feature_lengths)
            lens = {"padded": None, "feature_lengths": b.feature_lengths}.get(mistake, ol)
            T, B, _ = lp.shape
            best = lp.argmax(-1)
            ls = _lens(lens, B, T)
            h = [encoder.decode(_merge_then_drop(best[: min(ls[i], T), i].tolist(), int(encoder.blank_idx)))
                 for i in range(B)]
            r = list(b.transcripts)
            hyps += h
            refs += r
            per_batch.append(sum(_lev(x.split(), y.split()) for x, y in zip(r, h)) / sum(len(x.split()) for x in r))
            per_utt += [_lev(x.split(), y.split()) / len(x.split()) for x, y in zip(r, h)]
    if mistake == "per_batch":
        return sum(per_batch) / len(per_batch)
    if mistake == "per_utterance":
        return sum(per_utt) / len(per_utt)
    return sum(_lev(x.split(), y.split()) for x, y in zip(refs, hyps)) / sum(len(x.split()) for x in refs)


@mistakes_of("evaluate")
def _evaluate_mistakes(model, batches, encoder):
    batches = list(batches)
    return [(lambda m=m: evaluate_variant(model, batches, encoder, m), msg) for m, msg in [
        ("per_batch", "you averaged the WER of each batch: compute ONE corpus WER over all utterances"),
        ("per_utterance", "you averaged the WER of each utterance: the corpus WER is total edits / total reference "
                          "words"),
        ("padded", "decode each item only up to its OUTPUT length (the model's out_lens), not the padded frames"),
        ("feature_lengths", "decode up to the model's OUTPUT lengths, not batch.feature_lengths (the "
                            "convolutions' stride shortens the output)"),
        ("train_mode", "call model.eval() before decoding (BatchNorm and dropout must be in eval mode)")]]


# ============================================================================ ex10
def _word_terms(text, lm, alpha, beta, *, end=True, last=True, per_char=False, lm_weight=None):
    words = text.split()
    scored = words if last else words[:-1]
    q = 0.0
    if lm is not None and alpha != 0:
        w = alpha if lm_weight is None else lm_weight
        q += w * sum(float(lm.score(tuple(words[:i]), word)) for i, word in enumerate(scored))
        if end:
            q += w * float(lm.end_score(tuple(words)))
    q += beta * (len(text) if per_char else len(scored))
    return q


def ctc_text_log_probs(log_probs, encoder, *, threshold=1e-6, combine="sum", collapse="ctc", max_paths=200_000):
    """``{text: log p}`` over every text reachable by paths of "significant" symbols.

    A symbol is significant at a frame when its probability is at least ``threshold`` (the blank
    always is).  ``combine="sum"`` adds the paths of a text (CTC), ``"max"`` keeps the best one
    (Viterbi); ``collapse="across"`` also merges repeats across blanks (a mistake).  Raises when
    there are more than ``max_paths`` paths (the model does not apply).
    """
    lp = log_probs.detach().double()
    T, V = lp.shape
    blank = int(encoder.blank_idx)
    cand = [sorted({blank} | {int(c) for c in (lp[t].exp() >= threshold).nonzero().flatten().tolist()})
            for t in range(T)]
    n = 1
    for c in cand:
        n *= len(c)
    if n > max_paths:
        raise ValueError(f"{n} paths: too many to enumerate")
    rows = lp.tolist()
    acc: dict[tuple, list] = {}
    for path in itertools.product(*cand):
        s = sum(rows[t][c] for t, c in enumerate(path))
        ids = tuple(_drop_then_merge(path, blank) if collapse == "across" else _merge_then_drop(path, blank))
        acc.setdefault(ids, []).append(s)
    out = {}
    for ids, ss in acc.items():
        out[encoder.decode(list(ids))] = max(ss) if combine == "max" else float(torch.logsumexp(torch.tensor(ss), 0))
    return out


def exact_log_p_ctc(log_probs, encoder, text):
    """``log p_ctc(text | x)`` summed over ALL alignments, by ``torch.nn.functional.ctc_loss`` (float64)."""
    lp = log_probs.detach().double()
    ids = encoder.encode(text)
    if not ids:
        return float(lp[:, int(encoder.blank_idx)].sum())
    loss = torch.nn.functional.ctc_loss(lp.unsqueeze(1), torch.tensor([ids]), torch.tensor([lp.shape[0]]),
                                        torch.tensor([len(ids)]), blank=int(encoder.blank_idx), reduction="sum")
    return -float(loss)


def ranked_texts(log_probs, encoder, lm=None, alpha=0.5, beta=1.0, k=None, *, exact=True, **variant):
    """Texts ranked by ``Q`` (best first, ties by text): the exact answer, or a mistake's.

    ``exact=True`` recomputes ``log p_ctc`` of every candidate with ``F.ctc_loss`` (all alignments);
    ``variant`` keys: ``combine``/``collapse`` (for :func:`ctc_text_log_probs`) and ``end``, ``last``,
    ``per_char``, ``lm_weight`` (for the word terms).
    """
    enum_kw = {key: variant.pop(key) for key in ("combine", "collapse", "threshold") if key in variant}
    texts = ctc_text_log_probs(log_probs, encoder, **enum_kw)
    use_exact = exact and not enum_kw
    scored = []
    for text, lpc in texts.items():
        base = exact_log_p_ctc(log_probs, encoder, text) if use_exact else lpc
        scored.append((text, base + _word_terms(text, lm, alpha, beta, **variant)))
    scored.sort(key=lambda r: (-r[1], r[0]))
    return scored[:k] if k else scored


@mistakes_of("prefix_beam_search")
def _prefix_beam_search_mistakes(log_probs, encoder, beam_width=16, lm=None, alpha=0.5, beta=1.0):
    a = (log_probs, encoder, lm, alpha, beta, beam_width)
    out = [
        (lambda: ranked_texts(*a, combine="max"), "you kept the best alignment of each prefix (max, Viterbi); CTC "
                                                  "SUMS the probabilities of all alignments (log-add)"),
        (lambda: ranked_texts(*a, collapse="across"), "you merged repeats across a blank: 'a _ a' is 'aa'; only "
                                                      "'a a' (no blank between) collapses to 'a'"),
        (lambda: ranked_texts(*a, per_char=True), "beta rewards WORDS (len(text.split())), not characters"),
        (lambda: ranked_texts(log_probs, encoder, lm, alpha, 0.0, beam_width), "add beta * word_count(text) to the "
                                                                               "score"),
        (lambda: ranked_texts(log_probs, encoder, lm, alpha, 2 * beta, beam_width),
         "every word earns beta exactly ONCE (you added it when the word was completed and again at the end)"),
        (lambda: beam_variant(log_probs, encoder, beam_width, lm, alpha, beta, merge="max", total="max"),
         "you combined probabilities with max where CTC SUMS them (max, Viterbi): log-add (torch.logaddexp) "
         "both when several beams reach one prefix and when p_b and p_nb make its total"),
        (lambda: beam_variant(log_probs, encoder, beam_width, lm, alpha, beta, merge="max"),
         "when several beams reach the same prefix in a frame you kept the max: CTC SUMS them (log-add)"),
        (lambda: beam_variant(log_probs, encoder, beam_width, lm, alpha, beta, total="max"),
         "a prefix's probability is p_b + p_nb (log-add them), not the max of the two"),
        (lambda: beam_variant(log_probs, encoder, beam_width, lm, alpha, beta, overwrite=True),
         "a prefix can be reached from several beams in one frame: ACCUMULATE its probabilities (log-add), do "
         "not overwrite them"),
        (lambda: [(t.strip(), q) for t, q in ranked_texts(*a)],
         "return each text as emitted: ' cat' and 'cat' are different texts with different scores (you "
         "stripped the spaces at the ends)"),
    ]
    if lm is not None and alpha != 0:
        out += [
            (lambda: ranked_texts(*a, end=False), "add alpha * lm.end_score(words) at the end (the end of the "
                                                  "sentence counts)"),
            (lambda: ranked_texts(*a, last=False), "score the last word too when the search ends (it has no space "
                                                   "after it)"),
            (lambda: ranked_texts(*a, lm_weight=1.0), "multiply the LM's log-probabilities by alpha"),
        ]
    return out


def beam_variant(log_probs, encoder, beam_width=16, lm=None, alpha=0.5, beta=1.0, *, overwrite=False,
                 merge="sum", total="sum"):
    """A plain prefix beam search (the stub's steps, prefixes as strings), with one switchable mistake.

    ``merge="max"``: the ways into one prefix in a frame are combined with max (not log-added);
    ``total="max"``: a prefix's ``p_b`` and ``p_nb`` are combined with max (everywhere it uses their sum).
    """
    neg = float("-inf")

    def logadd(a, b):
        if a == neg:
            return b
        if b == neg:
            return a
        m = max(a, b)
        return m + math.log1p(math.exp(-abs(a - b)))

    merge_add = max if merge == "max" else logadd
    add = max if total == "max" else logadd

    use_lm = lm is not None and alpha != 0
    blank = int(encoder.blank_idx)
    rows = log_probs.detach().double().tolist()
    chars = {c: encoder.decode([c]) for c in range(len(rows[0]) if rows else 0) if c != blank}
    bonus = {"": 0.0}

    def word_bonus(words):
        return beta + (alpha * float(lm.score(tuple(words[:-1]), words[-1])) if use_lm else 0.0)

    beams = {"": (0.0, neg)}
    for row in rows:
        nxt = {}

        def put(k, pb=neg, pnb=neg):
            ob, onb = nxt.get(k, (neg, neg))
            nxt[k] = ((pb if pb != neg else ob), (pnb if pnb != neg else onb)) if overwrite else (
                merge_add(ob, pb), merge_add(onb, pnb))

        for prefix, (pb, pnb) in beams.items():
            tot = add(pb, pnb)
            put(prefix, pb=tot + row[blank])
            for c, ch in chars.items():
                new = prefix + ch
                if new not in bonus:
                    b = bonus[prefix]
                    if ch == " " and prefix and not prefix.endswith(" "):
                        b += word_bonus(prefix.split())
                    bonus[new] = b
                if prefix and prefix[-1] == ch:
                    put(prefix, pnb=pnb + row[c])
                    put(new, pnb=pb + row[c])
                else:
                    put(new, pnb=tot + row[c])
        live = sorted(((add(*v) + bonus[k], k) for k, v in nxt.items() if add(*v) > neg), reverse=True)
        beams = {k: nxt[k] for _, k in live[:beam_width]}
    out = []
    for prefix, v in beams.items():
        words = prefix.split()
        q = add(*v) + bonus[prefix]
        if words and not prefix.endswith(" "):
            q += word_bonus(words)
        if use_lm:
            q += alpha * float(lm.end_score(tuple(words)))
        out.append((prefix, q))
    out.sort(key=lambda r: (-r[1], r[0]))
    return out[:beam_width]


# ============================================================================ ex11
@mistakes_of("row_conv")
def _row_conv_mistakes(x, weight, lengths):
    T, K = x.shape[0], weight.shape[0]
    v = _valid_tb(lengths, T).to(x.dtype)
    pad_end = lambda y: torch.nn.functional.pad(y, (0, 0, 0, 0, 0, K - 1))  # noqa: E731

    def ahead(y, w=weight):
        p = pad_end(y)
        return sum(w[j] * p[j: j + T] for j in range(K))

    def behind(y):
        p = torch.nn.functional.pad(y, (0, 0, 0, 0, K - 1, 0))
        return sum(weight[j] * p[K - 1 - j: K - 1 - j + T] for j in range(K))

    return [
        (lambda: ahead(x) * v, "you read past the end of a sequence: frames t + j >= lengths[b] must count as 0 "
                               "(they hold padding or garbage)"),
        (lambda: behind(x * v) * v, "row convolution looks AHEAD: out[t] uses x[t + j], not x[t - j]"),
        (lambda: ahead(x * v), "zero the outputs at padded frames t >= lengths[b]"),
        (lambda: ahead(x * v, weight.flip(0)) * v, "weight[j] weighs the frame j steps AHEAD: you reversed the taps"),
        (lambda: ahead(x), "you ignored lengths (only the end of the padded tensor counts as 0): frames t + j >= "
                           "lengths[b] must count as 0, and the outputs at padded frames t >= lengths[b] must be 0"),
    ]
