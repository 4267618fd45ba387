"""The earlier exercises' pieces, for grading a later exercise on its own.

``ex08``'s ``collate_batch`` uses exercise 01's ``compute_spectrogram``; ``ex09``'s ``evaluate`` uses
exercise 02's ``greedy_decode`` and exercise 03's ``word_error_rate``.  In the student's files
these come from the student's own earlier files (the stubs' ``_earlier`` helper, and in the
lessons the implementation ``lessons/yourturn.py`` chose).  The grader grades each exercise **on
its own**: a wrong or unwritten ``ex01`` must not cost points in ``ex08``.  So, for the exercises
listed in :data:`autograder.spec.Exercise.extra` ``["given"]``, the grader sends the source of this
file to the worker after the student's import (``sandbox.Worker.start``, the worker's ``given``
op), and the worker puts these functions in the student module's ``EARLIER`` table, which the
stub's ``_earlier`` reads first.

This file is read by the grader and sent only to those workers: it is not one of the worker-side
files bound into the sandbox, so an earlier exercise's worker never sees it.  It imports only
``torch`` (it runs in the worker) and must stay self-contained.
"""
from __future__ import annotations

import torch


def compute_spectrogram(audio: torch.Tensor, sample_rate: int = 16000, n_fft: int | None = None,
                        window_ms: float = 20.0, stride_ms: float = 10.0, eps: float = 1e-10,
                        normalize: bool = True) -> torch.Tensor:
    """Exercise 01's contract: the normalised log power spectrogram ``(n_fft // 2 + 1, n_frames)``."""
    if not isinstance(audio, torch.Tensor) or audio.dim() != 1 or not audio.is_floating_point():
        raise ValueError(f"audio must be a 1-D floating tensor, got {getattr(audio, 'shape', type(audio))}")
    win_length = int(round(sample_rate * window_ms / 1000.0))
    hop_length = int(round(sample_rate * stride_ms / 1000.0))
    if n_fft is None:
        n_fft = win_length
    if not isinstance(n_fft, int) or n_fft < 2:
        raise ValueError(f"n_fft must be None or an int >= 2, got {n_fft!r}")
    win_length = min(win_length, n_fft)
    if audio.numel() < win_length:
        raise ValueError(f"audio has {audio.numel()} samples, shorter than one frame of {win_length} samples")
    frames = audio.unfold(0, win_length, hop_length)
    window = torch.hann_window(win_length, periodic=True, dtype=frames.dtype)
    spectrum = torch.fft.rfft(frames * window, n=n_fft, dim=-1)
    spec = torch.log(spectrum.real.square() + spectrum.imag.square() + eps).transpose(0, 1)
    if normalize:
        spec = (spec - spec.mean()) / spec.std().clamp_min(1e-5)
    return spec.contiguous()


def greedy_decode(log_probs: torch.Tensor, encoder, lengths=None) -> list[str]:
    """Exercise 02's contract: the best path of ``(T, B, V)`` within ``lengths``, collapsed, as ``B`` strings."""
    T, B, _ = log_probs.shape
    lengths = [T] * B if lengths is None else [int(n) for n in torch.as_tensor(lengths).tolist()]
    best = log_probs.argmax(dim=-1).transpose(0, 1).cpu()       # (B, T)
    texts = []
    for b in range(B):
        out, prev = [], None
        for i in best[b, : lengths[b]].tolist():
            if i != prev and i != encoder.blank_idx:
                out.append(i)
            prev = i
        texts.append(encoder.decode(out))
    return texts


def edit_distance(ref, hyp) -> int:
    """Exercise 03's contract: the Levenshtein distance of two sequences."""
    ref, hyp = list(ref), list(hyp)
    prev = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        row = [i] + [0] * len(hyp)
        for j in range(1, len(hyp) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ref[i - 1] != hyp[j - 1]))
        prev = row
    return prev[-1]


def word_error_rate(refs, hyps) -> float:
    """Exercise 03's contract: corpus WER, total word edit distance / total reference words."""
    refs = [refs] if isinstance(refs, str) else list(refs)
    hyps = [hyps] if isinstance(hyps, str) else list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses")
    n_words = sum(len(r.split()) for r in refs)
    if n_words == 0:
        raise ValueError("the references contain no words: WER is undefined")
    return sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps)) / n_words
