"""ex01 — spectrograms (8 points)."""
from __future__ import annotations

import pytest
import torch

from autograder.checks import _inputs as I
from autograder.checks._inputs import R
from autograder.checks._support import check_raises, check_tensor

pytestmark = pytest.mark.exercise("ex01")


def _frames_hints(audio, L, hop):
    n = audio.numel()
    return [
        (lambda: R.frame_signal(audio, L, hop)[:-1],
         "off-by-one frame count: n_frames = 1 + (N - frame_length) // hop_length"),
        (lambda: R.frame_signal(audio, L, hop).T, "you returned (frame_length, n_frames): transpose"),
    ]


@pytest.mark.points(2)
def test_frame_signal_values(sub):
    """frame_signal: frame count and frame contents"""
    for seed, (n, L, hop) in enumerate([(320, 320, 160), (321, 320, 160), (479, 320, 160), (480, 320, 160),
                                        (1607, 320, 160), (23, 5, 3), (10, 4, 4)]):
        audio = I.audio(seed, n)
        what = f"audio of {n} samples, frame_length={L}, hop_length={hop}"
        got = sub.call("frame_signal", audio, L, hop, _what=what)
        check_tensor(got, R.frame_signal(audio, L, hop), fn="frame_signal", what=what, rtol=0, atol=0,
                     hints=_frames_hints(audio, L, hop))


@pytest.mark.points(1)
def test_frame_signal_errors(sub):
    """frame_signal: audio that is not 1-D, or shorter than one frame, is a ValueError"""
    audio = I.audio(3, 700)
    check_tensor(sub.call("frame_signal", audio, 320, 160, _what="audio of 700 samples, 320, 160"),
                 R.frame_signal(audio, 320, 160), fn="frame_signal", what="audio of 700 samples, 320, 160", rtol=0,
                 atol=0, hints=_frames_hints(audio, 320, 160))
    check_raises(sub, "frame_signal", torch.zeros(100), 320, 160, _what="audio of 100 samples, frame_length=320")
    check_raises(sub, "frame_signal", torch.zeros(2, 400), 320, 160, _what="audio of shape (2, 400)")


def _spec_pieces(audio, sr=16000, n_fft=None):
    win, hop, nfft = R.features.window_and_hop(sr, 20.0, 10.0, n_fft)
    frames = R.frame_signal(audio, win, hop)
    return win, hop, nfft, frames


def _spec_variant(audio, sr=16000, n_fft=None, normalize=True, periodic=True, window=True, norm="utt", log="ln",
                  power=True, eps=1e-10):
    win, hop, nfft, frames = _spec_pieces(audio, sr, n_fft)
    w = torch.hann_window(win, periodic=periodic) if window else torch.ones(win)
    spec = torch.fft.rfft(frames * w, n=nfft, dim=-1)
    p = spec.abs() ** 2 if power else spec.abs()
    s = (torch.log(p + eps) if log == "ln" else torch.log10(p + eps)).T
    if normalize:
        if norm == "utt":
            s = (s - s.mean()) / s.std().clamp_min(1e-5)
        elif norm == "freq":
            s = (s - s.mean(1, keepdim=True)) / s.std(1, keepdim=True).clamp_min(1e-5)
        elif norm == "frame":
            s = (s - s.mean(0, keepdim=True)) / s.std(0, keepdim=True).clamp_min(1e-5)
    return s


def _spec_hints(audio, sr=16000, n_fft=None, normalize=True):
    kw = dict(sr=sr, n_fft=n_fft, normalize=normalize)
    return [
        (lambda: _spec_variant(audio, periodic=False, **kw), "use the periodic Hann window: "
                                                             "torch.hann_window(win, periodic=True)"),
        (lambda: _spec_variant(audio, window=False, **kw), "you did not multiply the frames by the Hann window"),
        (lambda: _spec_variant(audio, norm="freq", **kw), "normalise the whole utterance with ONE mean and ONE std, "
                                                          "not per frequency bin"),
        (lambda: _spec_variant(audio, norm="frame", **kw), "normalise the whole utterance with ONE mean and ONE std, "
                                                           "not per frame"),
        (lambda: _spec_variant(audio, sr=sr, n_fft=n_fft, normalize=False), "normalize=True: subtract the mean and "
                                                                            "divide by the std"),
        (lambda: _spec_variant(audio, log="log10", **kw), "use the natural log (torch.log), not log10"),
        (lambda: _spec_variant(audio, power=False, **kw), "take the power |X|^2, not the magnitude |X|"),
        (lambda: _spec_variant(audio, eps=0.0, **kw), "add eps inside the log: log(|X|^2 + eps)"),
        (lambda: R.compute_spectrogram(audio, sr, n_fft, normalize=normalize).T, "return (n_freq, n_frames): transpose"),
    ]


@pytest.mark.points(2)
def test_compute_spectrogram_default(sub):
    """compute_spectrogram: 20 ms / 10 ms, 161 bins, normalised"""
    for seed, n in enumerate([4000, 320, 5123]):
        audio = I.audio(10 + seed, n)
        what = f"audio of {n} samples (seed {10 + seed})"
        check_tensor(sub.call("compute_spectrogram", audio, _what=what), R.compute_spectrogram(audio),
                     fn="compute_spectrogram", what=what, rtol=2e-3, atol=2e-3, hints=_spec_hints(audio))


@pytest.mark.points(2)
def test_compute_spectrogram_options(sub):
    """compute_spectrogram: normalize=False, n_fft above and below the window, another sample rate"""
    audio = I.audio(20, 3000)
    cases = [dict(normalize=False), dict(n_fft=256), dict(n_fft=512), dict(sample_rate=8000),
             dict(n_fft=128, normalize=False)]
    for kw in cases:
        what = f"audio of 3000 samples, {', '.join(f'{k}={v}' for k, v in kw.items())}"
        exp = R.compute_spectrogram(audio, **kw)
        hk = dict(sr=kw.get("sample_rate", 16000), n_fft=kw.get("n_fft"), normalize=kw.get("normalize", True))
        hints = _spec_hints(audio, **hk)
        if kw.get("n_fft") == 256 or kw.get("n_fft") == 128:
            hints = [(lambda n=kw["n_fft"]: _shorter_window_padded(audio, n, hk["normalize"]),
                      "an n_fft below the window length shortens the window to n_fft samples "
                      "(you cropped the spectrum instead)")] + hints
        check_tensor(sub.call("compute_spectrogram", audio, _what=what, **kw), exp, fn="compute_spectrogram",
                     what=what, rtol=2e-3, atol=2e-3 if kw.get("normalize", True) else 5e-3, hints=hints)


def _shorter_window_padded(audio, n_fft, normalize):
    full = R.compute_spectrogram(audio, normalize=False)
    return full[: n_fft // 2 + 1]


@pytest.mark.points(1)
def test_compute_spectrogram_errors(sub):
    """compute_spectrogram: audio shorter than one window is a ValueError"""
    audio = I.audio(4, 320)
    check_tensor(sub.call("compute_spectrogram", audio, _what="audio of exactly one window (320 samples)"),
                 R.compute_spectrogram(audio), fn="compute_spectrogram", what="audio of 320 samples", rtol=2e-3,
                 atol=2e-3)
    check_raises(sub, "compute_spectrogram", torch.zeros(319), _what="audio of 319 samples (window 320)")
    check_raises(sub, "compute_spectrogram", torch.zeros(2, 1000), _what="audio of shape (2, 1000)")
