"""Spectrograms against torch.stft (an independent implementation of the same maths)."""
import pytest
import torch

from reference import compute_spectrogram, frame_signal
from reference.features import n_freq_bins


def stft_log_power(audio, n_fft, win, hop, eps=1e-10):
    X = torch.stft(audio.double(), n_fft=n_fft, hop_length=hop, win_length=win,
                   window=torch.hann_window(win, periodic=True, dtype=torch.float64), center=False, return_complex=True)
    return torch.log(X.abs() ** 2 + eps)


@pytest.mark.parametrize("n", [320, 321, 479, 480, 16000, 16123])
def test_frame_signal_count_and_content(n):
    audio = torch.randn(n)
    frames = frame_signal(audio, 320, 160)
    assert frames.shape == (1 + (n - 320) // 160, 320)
    for i in (0, frames.shape[0] - 1):
        torch.testing.assert_close(frames[i], audio[i * 160 : i * 160 + 320])


@pytest.mark.parametrize("n_fft", [None, 320, 256])
def test_spectrogram_matches_torch_stft(n_fft):
    audio = torch.randn(8000, dtype=torch.float64) * 0.1
    win = 320 if n_fft is None else min(320, n_fft)
    ours = compute_spectrogram(audio, n_fft=n_fft, normalize=False)
    ref = stft_log_power(audio, n_fft or 320, win, 160)
    assert ours.shape == ref.shape == ((n_fft or 320) // 2 + 1, 1 + (8000 - win) // 160)
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)


def test_n_fft_above_window_zero_pads_each_frame():
    audio = torch.randn(4000, dtype=torch.float64)
    ours = compute_spectrogram(audio, n_fft=512, normalize=False)
    frames = audio.unfold(0, 320, 160) * torch.hann_window(320, dtype=torch.float64)
    ref = torch.log(torch.fft.rfft(frames, n=512).abs() ** 2 + 1e-10).T
    torch.testing.assert_close(ours, ref)


def test_normalisation_is_per_utterance():
    spec = compute_spectrogram(torch.randn(16000) * 0.3)
    assert spec.shape == (161, 99)
    assert abs(spec.mean().item()) < 1e-5 and abs(spec.std().item() - 1) < 1e-4
    assert n_freq_bins() == 161 and n_freq_bins(256) == 129


def test_silence_is_finite():
    assert torch.isfinite(compute_spectrogram(torch.zeros(1600))).all()


@pytest.mark.parametrize("bad, msg", [
    (torch.randn(2, 400), "1-D"),
    (torch.randn(100), "shorter than one frame"),
    (torch.zeros(400, dtype=torch.int16), "floating"),
    ([0.0] * 400, "torch.Tensor"),
])
def test_bad_audio_is_a_clear_value_error(bad, msg):
    with pytest.raises(ValueError, match=msg):
        compute_spectrogram(bad)
    if isinstance(bad, torch.Tensor) and bad.dim() != 1:
        with pytest.raises(ValueError, match=msg):
            frame_signal(bad, 320, 160)
