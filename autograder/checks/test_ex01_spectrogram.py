"""ex01 — spectrograms (8 points)."""
from __future__ import annotations

import pytest
import torch

from autograder.checks import mistakes as M
from autograder.checks import _inputs as I
from autograder.checks._inputs import R
from autograder.checks._support import CheckFailed, check_raises, check_tensor

pytestmark = pytest.mark.exercise("ex01")

_OUT_OF_RANGE = ("Hint: a frame must fit entirely inside the audio: n_frames = 1 + (N - frame_length) // hop_length "
                 "(N // hop_length frames run past the end)")


def _call_frames(sub, audio, L, hop, what):
    """``frame_signal`` in the worker; an indexing error is named as the classic frame-count mistake."""
    try:
        return sub.call("frame_signal", audio, L, hop, _what=what)
    except CheckFailed as e:
        if e.kind == "error" and any(w in e.message for w in ("IndexError", "out of bounds", "out of range",
                                                               "stack expects each tensor to be equal size")):
            raise CheckFailed(f"{e.message} {_OUT_OF_RANGE}", e.kind) from None
        raise


@pytest.mark.points(2)
def test_frame_signal_values(sub):
    """frame_signal: frame count and frame contents"""
    for seed, (n, L, hop) in enumerate([(320, 320, 160), (321, 320, 160), (479, 320, 160), (480, 320, 160),
                                        (1607, 320, 160), (700, 320, 160), (23, 5, 3), (10, 4, 4)]):
        audio = I.audio(seed, n)
        what = f"audio of {n} samples, frame_length={L}, hop_length={hop}"
        got = _call_frames(sub, audio, L, hop, what)
        expected = audio.unfold(0, L, hop)  # torch's own framing: an independent oracle
        check_tensor(got, expected, fn="frame_signal", what=what, rtol=0, atol=0,
                     hints=M.hints("frame_signal", audio, L, hop))


@pytest.mark.hidden
@pytest.mark.points(1)
def test_frame_signal_errors(sub):
    """frame_signal: audio exactly one frame long gives one frame; shorter or 2-D audio is a ValueError"""
    # the edge cases pay only with evidence that framing works: an ordinary case first, in the same check
    for n in (1000, 320):
        audio = I.audio(3, n)
        what = f"audio of {n} samples{' (exactly one frame)' if n == 320 else ''}, frame_length=320, hop_length=160"
        check_tensor(_call_frames(sub, audio, 320, 160, what), audio.unfold(0, 320, 160), fn="frame_signal",
                     what=what, rtol=0, atol=0, hints=M.hints("frame_signal", audio, 320, 160))
    check_raises(sub, "frame_signal", torch.zeros(100), 320, 160, _what="audio of 100 samples, frame_length=320")
    check_raises(sub, "frame_signal", torch.zeros(319), 320, 160, _what="audio of 319 samples, frame_length=320")
    check_raises(sub, "frame_signal", torch.zeros(2, 400), 320, 160, _what="audio of shape (2, 400)")


def _spec_check(sub, audio, what, rtol=2e-3, atol=2e-3, **kw):
    exp = R.compute_spectrogram(audio, **kw)
    args = dict(kw)
    sr = args.pop("sample_rate", 16000)
    hints = M.hints("compute_spectrogram", audio, sr, **args)
    check_tensor(sub.call("compute_spectrogram", audio, _what=what, **kw), exp, fn="compute_spectrogram", what=what,
                 rtol=rtol, atol=atol, hints=hints)


@pytest.mark.points(2)
def test_compute_spectrogram_default(sub):
    """compute_spectrogram: 20 ms / 10 ms, 161 bins, normalised; digital silence (all zeros, a silent stretch)"""
    for seed, n in enumerate([4000, 5123, 16000]):
        audio = I.audio(10 + seed, n)
        _spec_check(sub, audio, f"audio of {n} samples (seed {10 + seed})")
    # Digital silence has power exactly 0: only the eps inside the log keeps it finite.
    gap = I.audio(13, 6000)
    gap[2000:4500] = 0.0
    for audio, what in [(torch.zeros(4000), "4000 samples of digital silence (all zeros)"),
                        (gap, "6000 samples with digital silence (zeros) from sample 2000 to 4500")]:
        _spec_check(sub, audio, what)
        _spec_check(sub, audio, what + ", normalize=False", atol=5e-3, normalize=False)


@pytest.mark.points(2)
def test_compute_spectrogram_options(sub):
    """compute_spectrogram: normalize=False, n_fft above and below the window, another sample rate"""
    audio = I.audio(20, 3000)
    cases = [dict(normalize=False), dict(n_fft=256), dict(n_fft=512), dict(sample_rate=8000),
             dict(n_fft=128, normalize=False)]
    for kw in cases:
        what = f"audio of 3000 samples, {', '.join(f'{k}={v}' for k, v in kw.items())}"
        _spec_check(sub, audio, what, atol=2e-3 if kw.get("normalize", True) else 5e-3, **kw)


@pytest.mark.hidden
@pytest.mark.points(1)
def test_compute_spectrogram_edges(sub):
    """compute_spectrogram: exactly one window gives one frame; shorter or 2-D audio is a ValueError"""
    _spec_check(sub, I.audio(4, 2000), "audio of 2000 samples (seed 4)")  # an ordinary case first
    audio = I.audio(4, 320)
    _spec_check(sub, audio, "audio of exactly one window (320 samples)")
    check_raises(sub, "compute_spectrogram", torch.zeros(319), _what="audio of 319 samples (window 320)")
    check_raises(sub, "compute_spectrogram", torch.zeros(2, 1000), _what="audio of shape (2, 1000)")
