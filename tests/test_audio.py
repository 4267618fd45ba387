"""WAV input/output, resampling and silence trimming (reference/audio.py).

The resampler is checked against exact properties rather than another library (scipy and
torchaudio are not installed): a sampled sine must come out as the same sine sampled at the
new rate, a tone above the new Nyquist frequency must vanish, lengths are ceil(N * new / old).
"""
from __future__ import annotations

import math
import struct
import wave

import numpy as np
import pytest
import torch

from reference.audio import load_audio, read_wav, resample, trim_silence, write_wav


# --------------------------------------------------------------------------- helpers


def _write_pcm(path, ints: np.ndarray, width: int, rate: int) -> None:
    """Write integer PCM frames ``(n, channels)`` with the stdlib (independent of write_wav)."""
    ints = np.asarray(ints)
    n_channels = ints.shape[1]
    if width == 1:
        raw = (ints + 128).astype(np.uint8).tobytes()
    elif width == 3:
        v = ints.astype(np.int64).reshape(-1) & 0xFFFFFF
        raw = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    else:
        raw = ints.astype({2: "<i2", 4: "<i4"}[width]).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(n_channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def _write_riff(path, fmt_tag: int, bits: int, rate: int, data: bytes, n_channels: int = 1,
                extensible: bool = False, extra_chunk: bool = True) -> None:
    """A hand-built RIFF/WAVE file (float, extensible...), with an extra chunk to skip."""
    block = n_channels * bits // 8
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, n_channels, rate, rate * block, block, bits, 22, bits, 0)
        fmt += struct.pack("<H", fmt_tag) + guid_tail
    else:
        fmt = struct.pack("<HHIIHH", fmt_tag, n_channels, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if extra_chunk:
        chunks += b"LIST" + struct.pack("<I", 5) + b"abcde" + b"\x00"     # odd size: padded
    chunks += b"data" + struct.pack("<I", len(data)) + data
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)


def _sine(freq: float, rate: int, n: int, dtype=torch.float64) -> torch.Tensor:
    return torch.sin(2 * math.pi * freq * torch.arange(n, dtype=dtype) / rate)


# --------------------------------------------------------------------------- reading and writing


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100])
def test_write_read_round_trip_is_exact_on_the_16_bit_grid(tmp_path, rate):
    ints = torch.randint(-32768, 32768, (rate // 10,))
    audio = ints.float() / 32768
    path = tmp_path / "x.wav"
    write_wav(path, audio, rate)
    back, sr = read_wav(path)
    assert sr == rate and back.dtype == torch.float32 and back.shape == audio.shape
    assert torch.equal(back, audio)


def test_write_read_round_trip_of_arbitrary_floats_within_half_a_step(tmp_path):
    audio = torch.rand(1000) * 2 - 1
    write_wav(str(tmp_path / "x.wav"), audio, 16000)
    back, _ = read_wav(str(tmp_path / "x.wav"))
    assert (back - audio).abs().max() <= 0.5 / 32768 + 1e-7


def test_write_wav_clips_and_writes_16_bit_mono(tmp_path):
    write_wav(tmp_path / "x.wav", torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 7.0]), 16000)
    with wave.open(str(tmp_path / "x.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
    back, _ = read_wav(tmp_path / "x.wav")
    assert back.tolist() == [-1.0, -1.0, 0.0, 0.5, 32767 / 32768, 32767 / 32768]


@pytest.mark.parametrize("bad", [torch.zeros(2, 10), torch.zeros(10, dtype=torch.int16), [0.0, 1.0]])
def test_write_wav_rejects_what_is_not_1d_float_audio(tmp_path, bad):
    with pytest.raises(ValueError, match="audio"):
        write_wav(tmp_path / "x.wav", bad, 16000)


@pytest.mark.parametrize("rate", [0, -16000, 16000.0, None])
def test_write_wav_rejects_bad_sample_rates(tmp_path, rate):
    with pytest.raises(ValueError, match="sample_rate"):
        write_wav(tmp_path / "x.wav", torch.zeros(10), rate)


@pytest.mark.parametrize("width, scale", [(1, 128), (2, 32768), (3, 8388608), (4, 2147483648)])
def test_read_pcm_bit_depths(tmp_path, width, scale):
    rng = np.random.default_rng(width)
    ints = rng.integers(-scale, scale, size=(500, 1))
    ints[:3, 0] = [-scale, 0, scale - 1]
    _write_pcm(tmp_path / "x.wav", ints, width, 11025)
    audio, sr = read_wav(tmp_path / "x.wav")
    assert sr == 11025 and audio.shape == (500,)
    np.testing.assert_allclose(audio.numpy(), (ints[:, 0] / scale).astype(np.float32), rtol=0, atol=1e-7)


@pytest.mark.parametrize("width", [1, 2, 3])
def test_read_averages_channels_to_mono(tmp_path, width):
    scale = 2 ** (8 * width - 1)
    ints = np.stack([np.full(50, scale // 2), np.full(50, -scale // 4), np.zeros(50, dtype=np.int64)], axis=1)
    _write_pcm(tmp_path / "x.wav", ints, width, 8000)
    audio, _ = read_wav(tmp_path / "x.wav")
    assert audio.shape == (50,)
    assert torch.allclose(audio, torch.full((50,), (0.5 - 0.25) / 3), atol=1e-6)


@pytest.mark.parametrize("extensible", [False, True])
def test_read_32_bit_float_wav(tmp_path, extensible):
    x = np.array([0.0, 0.25, -0.5, 0.999, -1.0, 1.5, -2.0], dtype="<f4")    # beyond +-1: clipped
    _write_riff(tmp_path / "f.wav", 3, 32, 48000, x.tobytes(), extensible=extensible)
    audio, sr = read_wav(tmp_path / "f.wav")
    assert sr == 48000 and audio.dtype == torch.float32
    assert audio.tolist() == pytest.approx([0.0, 0.25, -0.5, 0.999, -1.0, 1.0, -1.0], abs=1e-7)


def test_read_stereo_64_bit_float_wav(tmp_path):
    x = np.array([[0.5, -0.5], [0.25, 0.75], [1.0, 0.0]], dtype="<f8")
    _write_riff(tmp_path / "f.wav", 3, 64, 16000, x.tobytes(), n_channels=2)
    audio, _ = read_wav(tmp_path / "f.wav")
    assert audio.tolist() == pytest.approx([0.0, 0.5, 0.5])


def test_read_extensible_24_bit_pcm(tmp_path):
    ints = np.array([0, 4194304, -8388608, 8388607])
    v = ints & 0xFFFFFF
    data = np.stack([v & 0xFF, (v >> 8) & 0xFF, v >> 16], axis=1).astype(np.uint8).tobytes()
    _write_riff(tmp_path / "x.wav", 1, 24, 16000, data, extensible=True)
    audio, _ = read_wav(tmp_path / "x.wav")
    assert audio.tolist() == pytest.approx([0.0, 0.5, -1.0, 8388607 / 8388608])


def test_read_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        read_wav(path)


def test_read_non_wav_file_says_what_was_expected(tmp_path):
    (tmp_path / "x.wav").write_text("this is not audio at all")
    with pytest.raises(ValueError, match="RIFF/WAVE"):
        read_wav(tmp_path / "x.wav")


def test_read_truncated_wav_is_a_value_error(tmp_path):
    write_wav(tmp_path / "x.wav", torch.zeros(100), 16000)
    blob = (tmp_path / "x.wav").read_bytes()
    (tmp_path / "y.wav").write_bytes(blob[:30])                      # cut inside the 'fmt ' chunk
    with pytest.raises(ValueError, match="expected"):
        read_wav(tmp_path / "y.wav")


def test_read_wav_without_data_chunk_is_a_value_error(tmp_path):
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32)
    (tmp_path / "x.wav").write_bytes(b"RIFF" + struct.pack("<I", 4 + 8 + 16) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt)
    with pytest.raises(ValueError, match="data"):
        read_wav(tmp_path / "x.wav")


def test_read_unsupported_float_width_is_a_value_error(tmp_path):
    _write_riff(tmp_path / "x.wav", 3, 16, 16000, b"\x00" * 8)
    with pytest.raises(ValueError, match="unsupported sample format"):
        read_wav(tmp_path / "x.wav")


# --------------------------------------------------------------------------- resampling


def test_resample_equal_rates_is_identity_copy():
    x = torch.randn(1234)
    y = resample(x, 16000, 16000)
    assert torch.equal(x, y) and y.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("n", [0, 1, 2, 7, 441, 1000, 22050, 22051])
@pytest.mark.parametrize("orig, new", [(22050, 16000), (16000, 22050), (44100, 16000), (8000, 16000), (48000, 16000), (16000, 14550)])
def test_resample_length_is_ceil_n_new_over_orig(n, orig, new):
    assert resample(torch.zeros(n), orig, new).shape == (math.ceil(n * new / orig),)


@pytest.mark.parametrize("orig, new, freq", [
    (22050, 16000, 440.0), (22050, 16000, 3000.0), (22050, 16000, 6000.0),
    (16000, 8000, 1000.0), (8000, 16000, 3000.0), (44100, 16000, 5000.0),
    (48000, 16000, 6500.0), (16000, 17600, 2500.0), (22050, 14550, 5000.0),
])
def test_resampled_sine_is_the_sine_at_the_new_rate(orig, new, freq):
    x = _sine(freq, orig, orig // 2)                                 # 0.5 s
    y = resample(x, orig, new)
    expected = _sine(freq, new, y.numel())
    edge = new // 20                                                 # skip the filter's edge effects
    assert (y - expected)[edge:-edge].abs().max() < 2e-4


def test_resample_float32_is_close_to_float64():
    x = _sine(1000.0, 22050, 5000)
    y64 = resample(x, 22050, 16000)
    y32 = resample(x.float(), 22050, 16000)
    assert y32.dtype == torch.float32 and (y32.double() - y64).abs().max() < 1e-5


def test_resample_keeps_a_constant_away_from_the_edges():
    y = resample(torch.full((4410,), 0.3, dtype=torch.float64), 22050, 16000)
    assert (y[200:-200] - 0.3).abs().max() < 1e-4


@pytest.mark.parametrize("orig, new, freq", [(22050, 16000, 8800.0), (48000, 16000, 9000.0), (16000, 8000, 4400.0), (44100, 16000, 12000.0)])
def test_tone_above_the_new_nyquist_is_removed(orig, new, freq):
    x = _sine(freq, orig, orig // 2)
    y = resample(x, orig, new)
    edge = new // 20
    rms = y[edge:-edge].pow(2).mean().sqrt()
    attenuation_db = 20 * math.log10(float(rms) / math.sqrt(0.5))
    assert attenuation_db < -40


def test_resample_batches_over_leading_dimensions():
    x = torch.randn(2, 3, 1000)
    y = resample(x, 16000, 22050)
    assert y.shape == (2, 3, math.ceil(1000 * 22050 / 16000))
    assert torch.allclose(y[1, 2], resample(x[1, 2], 16000, 22050), atol=1e-6)


@pytest.mark.parametrize("orig, new", [(0, 16000), (16000, -1), (16000.0, 8000), (True, 8000)])
def test_resample_rejects_bad_rates(orig, new):
    with pytest.raises(ValueError, match="sr"):
        resample(torch.zeros(10), orig, new)


def test_resample_rejects_integer_audio():
    with pytest.raises(ValueError, match="floating"):
        resample(torch.zeros(10, dtype=torch.int16), 16000, 8000)


def test_load_audio_reads_and_resamples_to_16k(tmp_path):
    left = (_sine(1000.0, 44100, 44100) * 0.5 * 32767).round().long()
    ints = torch.stack([left, left], dim=1).numpy()
    _write_pcm(tmp_path / "x.wav", ints, 2, 44100)
    audio = load_audio(tmp_path / "x.wav")
    assert audio.dtype == torch.float32 and audio.shape == (16000,)
    expected = 0.5 * _sine(1000.0, 16000, 16000)
    assert (audio.double() - expected)[800:-800].abs().max() < 1e-3


# --------------------------------------------------------------------------- silence


def test_trim_silence_keeps_a_margin_around_the_sound():
    sr = 16000
    audio = torch.zeros(sr)
    audio[6000:8000] = 0.5 * torch.sin(torch.arange(2000) * 0.3)
    out = trim_silence(audio, sr, margin_ms=50.0)
    assert out.abs().max() == audio.abs().max()
    assert 2000 + 2 * 800 <= out.numel() <= 2000 + 2 * 800 + 2 * 160     # 50 ms each side, 10 ms frames


def test_trim_silence_leaves_silence_and_full_clips_alone():
    assert torch.equal(trim_silence(torch.zeros(100), 16000), torch.zeros(100))
    loud = torch.ones(1000)
    assert torch.equal(trim_silence(loud, 16000), loud)
