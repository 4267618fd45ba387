"""Exercise 01 — Spectrograms (lesson 01).

Deep Speech 2 does not listen to raw samples: it reads a *log power spectrogram*.  You
will build one from its parts:

1. ``frame_signal``: cut the audio into overlapping frames (20 ms long, every 10 ms).
2. ``compute_spectrogram``: the log power spectrogram of one utterance, normalised.

At 16 kHz a 20 ms window is 320 samples and a 10 ms hop is 160 samples, so one second of
audio gives ``1 + (16000 - 320) // 160 = 99`` frames of ``320 // 2 + 1 = 161`` bins.

Grade your work (from the repository root)::

    make grade ONLY=ex01
    .venv/bin/python -m autograder --only ex01     # the same, without make

Write your code only between the ``# YOUR CODE HERE`` lines of each stub.

FORBIDDEN (the grader rejects a file that uses them): ``torch.stft``, ``torch.Tensor.stft``,
``torchaudio``, ``librosa``, ``scipy.signal``; importing ``reference``, ``solutions`` or
``autograder``.  ``torch.fft.rfft`` and ``torch.hann_window`` are allowed (and needed).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["frame_signal", "compute_spectrogram"]


# ---------------------------------------------------------------------------------------
# Given: input checks and the millisecond -> sample conversion (not the point of the lesson)
# ---------------------------------------------------------------------------------------
def _check_audio(audio, min_samples: int) -> torch.Tensor:
    """Return ``audio`` as a 1-D floating tensor, or raise a ``ValueError`` saying what is wrong."""
    if isinstance(audio, np.ndarray):
        audio = torch.from_numpy(audio)
    if not isinstance(audio, torch.Tensor):
        raise ValueError(f"audio must be a 1-D torch.Tensor, got {type(audio).__name__}")
    if audio.dim() != 1:
        raise ValueError(f"audio must be 1-D (n_samples,), got shape {tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise ValueError(f"audio must be a floating tensor in [-1, 1], got dtype {audio.dtype}")
    if audio.numel() < min_samples:
        raise ValueError(f"audio has {audio.numel()} samples, shorter than one frame of {min_samples} samples")
    return audio


def _window_and_hop(sample_rate: int, window_ms: float, stride_ms: float, n_fft: int | None) -> tuple[int, int, int]:
    """Return ``(window_length, hop_length, n_fft)`` in samples.

    ``window_length = round(sample_rate * window_ms / 1000)`` (320 at 16 kHz and 20 ms),
    ``hop_length = round(sample_rate * stride_ms / 1000)`` (160 for 10 ms).
    ``n_fft=None`` means ``n_fft = window_length``.  An ``n_fft`` *below* the window length
    shortens the window to ``n_fft`` samples (``n_fft=256`` turns 20 ms into 16 ms); an
    ``n_fft`` *above* it zero-pads each windowed frame to ``n_fft`` samples.
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


# ---------------------------------------------------------------------------------------
# Graded
# ---------------------------------------------------------------------------------------
def frame_signal(audio: torch.Tensor, frame_length: int, hop_length: int) -> torch.Tensor:
    """Cut ``audio`` into overlapping frames, without padding.

    Args:
        audio: ``(N,)`` float tensor.
        frame_length: samples per frame (e.g. 320).
        hop_length: samples between the starts of consecutive frames (e.g. 160).

    Returns:
        frames: ``(n_frames, frame_length)`` with ``n_frames = 1 + (N - frame_length) // hop_length``;
        row ``i`` is ``audio[i * hop_length : i * hop_length + frame_length]``.

    Lesson 01, section 2 (framing by hand on a toy signal).  The last partial frame is dropped:
    no padding.  Common mistake: ``N // hop_length`` frames, one more than fits.
    """
    if not isinstance(frame_length, int) or not isinstance(hop_length, int) or frame_length < 1 or hop_length < 1:
        raise ValueError(f"frame_length and hop_length must be positive ints, got {frame_length!r} and {hop_length!r}")
    audio = _check_audio(audio, min_samples=frame_length)
    ### BEGIN SOLUTION
    n_frames = 1 + (audio.numel() - frame_length) // hop_length
    starts = torch.arange(n_frames) * hop_length                      # (n_frames,)
    offsets = torch.arange(frame_length)                              # (frame_length,)
    frames = audio[starts[:, None] + offsets[None, :]]                # (n_frames, frame_length)
    ### END SOLUTION
    return frames


def compute_spectrogram(
    audio: torch.Tensor,
    sample_rate: int = 16000,
    n_fft: int | None = None,
    window_ms: float = 20.0,
    stride_ms: float = 10.0,
    eps: float = 1e-10,
    normalize: bool = True,
) -> torch.Tensor:
    """Log power spectrogram of one utterance (DS2 section 3.1).

    Args:
        audio: ``(N,)`` float tensor in [-1, 1].
        sample_rate: samples per second of ``audio``.
        n_fft: FFT size; ``None`` means the window length (320 at 16 kHz: 161 bins).
        window_ms, stride_ms: window length and hop in milliseconds (20 ms is DS2's window;
            the 10 ms hop is the course's choice).
        eps: added to the power before the log, so silence gives ``log(eps)``, not ``-inf``.
        normalize: subtract the utterance's mean and divide by its standard deviation
            (ONE mean and ONE std for the whole spectrogram).

    Returns:
        spec: ``(n_fft // 2 + 1, n_frames)`` (frequency first, time second), with
        ``n_frames = 1 + (N - window_length) // hop_length``.

    Shapes on the way: frames ``(n_frames, win_length)`` (from your ``frame_signal``), their
    one-sided spectra ``(n_frames, n_fft // 2 + 1)`` (``torch.fft.rfft`` with ``n=n_fft``, which
    zero-pads a frame when ``n_fft > win_length``), then ``(n_freq, n_frames)``.  The window is
    the periodic Hann window (``torch.hann_window``, the course's convention); the power is
    ``|X|^2``; the normalisation uses ONE mean and ONE std (torch's default, unbiased) for the
    whole spectrogram, the std clamped below at ``1e-5``.

    Lesson 01: sections 3 (window), 4 (power spectrum of one frame), 5 (log and normalisation)
    and 8 (``n_fft`` below the window length).  Common mistake: normalising each frequency bin
    on its own (``mean(dim=1)``), a different feature.
    """
    win_length, hop_length, n_fft = _window_and_hop(sample_rate, window_ms, stride_ms, n_fft)
    audio = _check_audio(audio, min_samples=win_length)
    ### BEGIN SOLUTION
    frames = frame_signal(audio, win_length, hop_length)                  # (n_frames, win)
    window = torch.hann_window(win_length, periodic=True, dtype=frames.dtype)
    spectrum = torch.fft.rfft(frames * window, n=n_fft, dim=-1)           # (n_frames, n_fft//2+1)
    power = spectrum.real.square() + spectrum.imag.square()               # |X|^2
    spec = torch.log(power + eps).transpose(0, 1)                         # (n_freq, n_frames)
    if normalize:
        spec = (spec - spec.mean()) / spec.std().clamp_min(1e-5)
    spec = spec.contiguous()
    ### END SOLUTION
    return spec
