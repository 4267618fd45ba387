"""Spectrogram features (DS2 section 3.1, arXiv 1512.02595 v1).

DS2 feeds its network log-spectrograms of audio clips whose power has been normalised,
computed on 20 ms windows.  The rest is this course's convention: a 10 ms hop, the periodic
Hann window (the paper names no window function), and, in place of normalising the clip's
power, a per-utterance z-score of the log spectrogram (one mean and one std per utterance).
The z-score removes the recording gain as well (a gain adds a constant to the log power),
puts the features on a unit scale, and needs nothing but the utterance itself; lesson 01
says more.  At 16 kHz that is a 320-sample window, a 160-sample hop and
``320 // 2 + 1 = 161`` frequency bins.

Everything here is built from framing, a window, ``torch.fft.rfft`` and a log, so that
``torch.stft`` is available as an independent check (see ``tests/test_features.py``).
"""
from __future__ import annotations

import torch

from .validation import check_audio

__all__ = ["frame_signal", "compute_spectrogram", "n_freq_bins", "window_and_hop"]


def frame_signal(audio: torch.Tensor, frame_length: int, hop_length: int) -> torch.Tensor:
    """Cut ``audio`` into overlapping frames, without padding.

    Args:
        audio: ``(N,)`` float tensor.
        frame_length: samples per frame.
        hop_length: samples between the starts of consecutive frames.

    Returns:
        ``(n_frames, frame_length)`` with ``n_frames = 1 + (N - frame_length) // hop_length``;
        frame ``i`` is ``audio[i * hop_length : i * hop_length + frame_length]``.
    """
    if not isinstance(frame_length, int) or not isinstance(hop_length, int) or frame_length < 1 or hop_length < 1:
        raise ValueError(
            f"frame_length and hop_length must be positive ints, got {frame_length!r} and {hop_length!r}"
        )
    audio = check_audio(audio, min_samples=frame_length, what="audio")
    return audio.unfold(0, frame_length, hop_length)  # (n_frames, frame_length), a view


def window_and_hop(sample_rate: int, window_ms: float, stride_ms: float, n_fft: int | None) -> tuple[int, int, int]:
    """Return ``(window_length, hop_length, n_fft)`` in samples for the given milliseconds.

    ``n_fft=None`` means ``n_fft = window_length``.  An ``n_fft`` *below* the window length
    shortens the window to ``n_fft`` samples: ``n_fft=256`` at 16 kHz turns the 20 ms window
    into a 16 ms one.  An ``n_fft`` above it zero-pads each windowed frame to ``n_fft``.
    """
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    if window_ms <= 0 or stride_ms <= 0:
        raise ValueError(f"window_ms and stride_ms must be positive, got {window_ms} and {stride_ms}")
    window_length = int(round(sample_rate * window_ms / 1000.0))
    hop_length = int(round(sample_rate * stride_ms / 1000.0))
    if n_fft is None:
        n_fft = window_length
    if not isinstance(n_fft, int) or n_fft < 2:
        raise ValueError(f"n_fft must be None or an int >= 2, got {n_fft!r}")
    return min(window_length, n_fft), hop_length, n_fft


def n_freq_bins(n_fft: int | None = None, sample_rate: int = 16000, window_ms: float = 20.0) -> int:
    """Number of frequency bins the spectrogram will have (161 for the defaults)."""
    _, _, n_fft = window_and_hop(sample_rate, window_ms, 10.0, n_fft)
    return n_fft // 2 + 1


def compute_spectrogram(
    audio: torch.Tensor,
    sample_rate: int = 16000,
    n_fft: int | None = None,
    window_ms: float = 20.0,
    stride_ms: float = 10.0,
    eps: float = 1e-10,
    normalize: bool = True,
) -> torch.Tensor:
    """Log power spectrogram of one utterance.

    Args:
        audio: ``(N,)`` float tensor in [-1, 1].
        sample_rate: samples per second of ``audio``.
        n_fft: FFT size; ``None`` means the window length (320 at 16 kHz: 161 bins).
        window_ms, stride_ms: window length and hop in milliseconds (DS2 §3.1 uses 20 ms windows; the 10 ms hop is
            this course's choice, the usual one).
        eps: added to the power before the log, so silence gives ``log(eps)``, not ``-inf``.
        normalize: subtract the utterance's mean and divide by its standard deviation
            (one mean and one std for the whole utterance).

    Returns:
        ``(n_fft // 2 + 1, n_frames)``, with ``n_frames = 1 + (N - window_length) // hop_length``.
    """
    win_length, hop_length, n_fft = window_and_hop(sample_rate, window_ms, stride_ms, n_fft)
    audio = check_audio(audio, min_samples=win_length, what="audio")
    frames = frame_signal(audio, win_length, hop_length)               # (n_frames, win)
    window = torch.hann_window(win_length, periodic=True, dtype=frames.dtype)
    spectrum = torch.fft.rfft(frames * window, n=n_fft, dim=-1)         # (n_frames, n_fft//2+1)
    power = spectrum.real.square() + spectrum.imag.square()            # |X|^2
    spec = torch.log(power + eps).transpose(0, 1)                      # (n_freq, n_frames)
    if normalize:
        spec = (spec - spec.mean()) / spec.std().clamp_min(1e-5)
    return spec.contiguous()
