"""Audio input/output and resampling.

The course's convention for audio is a 1-D float tensor in [-1, 1] at 16 kHz (DS2 trains on
16 kHz speech).  This module gets audio into that form:

- :func:`read_wav` reads RIFF/WAVE files: PCM at 8, 16, 24 or 32 bits and IEEE float at 32 or
  64 bits, any number of channels (averaged to mono).  It uses the stdlib ``wave`` module and,
  where ``wave`` refuses a file (float WAVs before Python 3.12, ``WAVE_FORMAT_EXTENSIBLE``),
  walks the RIFF chunks itself.
- :func:`write_wav` writes 16-bit PCM mono.
- :func:`resample` changes the sample rate with a band-limited windowed-sinc filter (Kaiser
  window), computed polyphase: both rates are divided by their gcd, and one matrix product
  over strided blocks of the input produces all ``new / gcd`` output phases at once.
- :func:`load_audio` reads any audio file ``soundfile`` decodes (WAV, FLAC, OGG, MP3) and
  resamples it to 16 kHz with ``soxr``, a well-kept resampler, where both are installed
  (``requirements.txt``); without them it reads WAV only (:func:`read_wav`) and resamples with
  :func:`resample`.
- :func:`trim_silence` cuts leading and trailing silence, keeping a margin.

    >>> x = torch.sin(2 * math.pi * 440 * torch.arange(22050) / 22050)   # 1 s at 22.05 kHz
    >>> resample(x, 22050, 16000).shape
    torch.Size([16000])
"""
from __future__ import annotations

import functools
import math
import os
import struct
import wave

import numpy as np
import torch

from .validation import check_audio

__all__ = ["read_wav", "write_wav", "resample", "load_audio", "trim_silence"]

# WAVE format tags (the first field of the 'fmt ' chunk).
WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE

_EXPECTED = ("a RIFF/WAVE file with 'fmt ' and 'data' chunks holding PCM (8, 16, 24 or 32 bits) "
             "or IEEE float (32 or 64 bits) samples")


# --------------------------------------------------------------------------- reading


def read_wav(path) -> tuple[torch.Tensor, int]:
    """Read a WAV file.

    Args:
        path: a ``str`` or ``os.PathLike``.

    Returns:
        ``(audio, sample_rate)``: ``audio`` is a ``(N,)`` float32 tensor in [-1, 1] (channels
        averaged to mono), ``sample_rate`` an int.  Integer PCM is scaled by ``2 ** (bits - 1)``
        (8-bit PCM is unsigned, centred on 128); float samples are clipped to [-1, 1].

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a WAV file this function can decode.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"WAV file not found: {path!r}")
    try:
        with wave.open(path, "rb") as w:
            n_channels, width, sample_rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
        fmt_tag = WAVE_FORMAT_PCM
    except (wave.Error, EOFError, struct.error):
        # ``wave`` accepts only format 1 (and EXTENSIBLE-PCM from Python 3.12): parse the chunks.
        fmt_tag, n_channels, sample_rate, width, raw = _parse_riff(path)
    if sample_rate <= 0 or n_channels <= 0:
        raise ValueError(f"{path!r}: invalid header ({n_channels} channels at {sample_rate} Hz); expected {_EXPECTED}")
    samples = _decode(raw, fmt_tag, width, path)                     # (n_frames * n_channels,)
    n_frames = samples.size // n_channels
    samples = samples[: n_frames * n_channels].reshape(n_frames, n_channels)
    mono = samples.mean(axis=1) if n_channels > 1 else samples[:, 0]
    audio = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    return audio.clamp_(-1.0, 1.0), int(sample_rate)


def _decode(raw: bytes, fmt_tag: int, width: int, path: str) -> np.ndarray:
    """Little-endian sample bytes -> float64 array in (about) [-1, 1]."""
    if fmt_tag == WAVE_FORMAT_PCM:
        if width == 1:                               # 8-bit PCM is unsigned
            return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
        if width == 2:
            return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
        if width == 3:                               # 24-bit: assemble three bytes, sign-extend
            b = np.frombuffer(raw[: len(raw) // 3 * 3], dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            v = (v ^ 0x800000) - 0x800000
            return v.astype(np.float64) / 8388608.0
        if width == 4:
            return np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0
    elif fmt_tag == WAVE_FORMAT_IEEE_FLOAT:
        if width in (4, 8):
            x = np.frombuffer(raw[: len(raw) // width * width], dtype="<f4" if width == 4 else "<f8")
            return np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
    raise ValueError(
        f"{path!r}: unsupported sample format (format tag {fmt_tag:#06x}, {8 * width} bits); expected {_EXPECTED}"
    )


def _parse_riff(path: str) -> tuple[int, int, int, int, bytes]:
    """Walk the RIFF chunks of ``path``: ``(format_tag, channels, sample_rate, bytes_per_sample, data)``."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise ValueError(f"{path!r} is not a WAV file: expected {_EXPECTED}, got header {blob[:12]!r}")
    fmt = data = None
    pos = 12
    while pos + 8 <= len(blob):
        cid, size = blob[pos : pos + 4], struct.unpack("<I", blob[pos + 4 : pos + 8])[0]
        body = blob[pos + 8 : pos + 8 + size]          # a truncated last chunk keeps what is there
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            data = body
        pos += 8 + size + (size & 1)                    # chunks are padded to an even size
    if fmt is None or len(fmt) < 16 or data is None:
        raise ValueError(f"{path!r}: missing or short 'fmt ' chunk or no 'data' chunk; expected {_EXPECTED}")
    tag, n_channels, sample_rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 26:
            raise ValueError(f"{path!r}: WAVE_FORMAT_EXTENSIBLE header too short; expected {_EXPECTED}")
        tag = struct.unpack("<H", fmt[24:26])[0]        # the sub-format GUID starts with the format tag
    if bits % 8 or bits == 0 or n_channels == 0 or block_align != n_channels * bits // 8:
        raise ValueError(
            f"{path!r}: inconsistent 'fmt ' chunk ({n_channels} channels, {bits} bits, block align {block_align}); "
            f"expected {_EXPECTED}"
        )
    return tag, n_channels, sample_rate, bits // 8, data


# --------------------------------------------------------------------------- writing


def write_wav(path, audio: torch.Tensor, sample_rate: int) -> None:
    """Write ``audio`` (``(N,)`` float, nominally in [-1, 1]) as a 16-bit PCM mono WAV file.

    Samples are clipped to [-1, 1] and stored as ``round(x * 32768)`` limited to
    [-32768, 32767], so :func:`read_wav` returns every multiple of 1/32768 exactly.
    """
    audio = check_audio(audio, min_samples=0)
    _check_rate(sample_rate, "sample_rate")
    x = audio.detach().to(torch.float64).cpu().clamp(-1.0, 1.0).numpy()
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())


# --------------------------------------------------------------------------- resampling


def _check_rate(rate, name: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"{name} must be a positive int (Hz), got {rate!r}")
    return int(rate)


@functools.lru_cache(maxsize=64)
def _sinc_kernels(orig: int, new: int, lowpass_filter_width: int, rolloff: float, beta: float,
                  dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, int]:
    """Polyphase windowed-sinc filters for reduced rates ``orig -> new`` (gcd already divided out).

    Time is measured in units where input sample ``n`` sits at ``n / orig`` and output sample
    ``k = q * new + j`` at ``q + j / new``.  Output phase ``j`` of block ``q`` is

        y[q*new + j] = sum_i x[q*orig + i] * h(j/new - i/orig),   i = -width .. width + orig - 1,

    with ``h(t) = (base / orig) * sinc(base * t) * kaiser(base * t / lowpass_filter_width)``, a
    low-pass at ``base / 2`` where ``base = rolloff * min(orig, new)`` (just under the lower
    Nyquist frequency); the factor ``base / orig`` gives unit gain at DC.  ``width`` input samples
    on each side cover ``lowpass_filter_width`` zero crossings of the sinc.

    Returns:
        ``(kernels, width)``: ``kernels`` is ``(2 * width + orig, new)`` of ``dtype`` (computed in
        float64), one column per output phase.  Cached: a corpus resamples thousands of clips
        between a handful of rates.
    """
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    i = torch.arange(-width, width + orig, dtype=torch.float64) / orig        # input times, (L,)
    j = torch.arange(0, new, dtype=torch.float64)[:, None] / new              # output phases, (new, 1)
    t = ((i - j) * base).clamp(-lowpass_filter_width, lowpass_filter_width)   # in sinc zero crossings
    window = torch.i0(beta * torch.sqrt(1.0 - (t / lowpass_filter_width) ** 2)) / torch.i0(torch.tensor(beta, dtype=torch.float64))
    pt = math.pi * t
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(pt) / torch.where(t == 0, torch.ones_like(pt), pt))
    kernels = sinc * window * (base / orig)                                   # (new, L)
    return kernels.T.contiguous().to(dtype), width


def resample(
    audio: torch.Tensor,
    orig_sr: int,
    new_sr: int,
    lowpass_filter_width: int = 48,
    rolloff: float = 0.92,
    beta: float = 8.6,
) -> torch.Tensor:
    """Band-limited resampling from ``orig_sr`` to ``new_sr`` Hz.

    Args:
        audio: ``(..., N)`` float tensor; the last dimension is time.
        orig_sr, new_sr: sample rates in Hz (positive ints).
        lowpass_filter_width: zero crossings of the sinc on each side of a tap (longer = sharper).
        rolloff: cut-off as a fraction of the lower Nyquist frequency (below 1 leaves room for
            the transition band, so what is above the new Nyquist is attenuated, not aliased).
        beta: Kaiser window shape (8.6: about 85 dB side-lobe suppression).

    Returns:
        ``(..., ceil(N * new_sr / orig_sr))``, same dtype.  Equal rates return a copy.

    The rates are divided by their gcd (22050 -> 16000 becomes 441 -> 320); the input is cut
    into blocks that start every 441 samples, and one matrix product with the 320 polyphase
    filters gives the 320 outputs of each block.  (That is a ``conv1d`` with stride 441 and
    320 output channels; the matrix product is the same arithmetic, and about 10 times faster
    on clips of varying length, for which ``conv1d`` re-plans its computation every call.)
    """
    orig_sr, new_sr = _check_rate(orig_sr, "orig_sr"), _check_rate(new_sr, "new_sr")
    if not isinstance(audio, torch.Tensor) or not audio.is_floating_point() or audio.dim() < 1:
        raise ValueError(
            f"audio must be a floating tensor of shape (..., N), got "
            f"{type(audio).__name__}{'' if not isinstance(audio, torch.Tensor) else f' {audio.dtype} {tuple(audio.shape)}'}"
        )
    if not 0.0 < rolloff <= 1.0 or lowpass_filter_width < 1:
        raise ValueError(f"need 0 < rolloff <= 1 and lowpass_filter_width >= 1, got {rolloff} and {lowpass_filter_width}")
    if orig_sr == new_sr:
        return audio.clone()
    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g
    n = audio.shape[-1]
    target = -(-n * new // orig)                                  # ceil(N * new / orig), exact in ints
    if orig * new > 4_000_000:
        raise ValueError(
            f"resampling {orig_sr} -> {new_sr} Hz reduces to {orig} -> {new}, too many polyphase filters; "
            "resample through a rate with a larger common divisor (e.g. 48000 or 16000)"
        )
    shape = audio.shape[:-1]
    if n == 0:
        return audio.new_zeros(*shape, 0)
    kernels, width = _sinc_kernels(orig, new, int(lowpass_filter_width), float(rolloff), float(beta), audio.dtype)
    x = torch.nn.functional.pad(audio.reshape(-1, n), (width, width + orig))    # (B, N + 2 width + orig)
    frames = x.unfold(-1, kernels.shape[0], orig)                 # (B, n_blocks, L): block q starts at q * orig
    y = frames @ kernels                                          # (B, n_blocks, new): all phases of block q
    y = y.reshape(x.shape[0], -1)[:, :target]                     # interleave: output q * new + j
    return y.reshape(*shape, target).contiguous()


def _optional(name: str):
    try:
        return __import__(name)
    except (ImportError, OSError):        # OSError: soundfile without its libsndfile
        return None


def load_audio(path, sample_rate: int = 16000) -> torch.Tensor:
    """Read an audio file and resample it to ``sample_rate`` Hz: a ``(N,)`` float32 tensor in [-1, 1].

    Any format ``soundfile`` decodes (WAV, FLAC, OGG Vorbis/Opus, MP3, ...), channels averaged to
    mono, resampled with ``soxr`` (its "HQ" quality) to ``ceil(N * sample_rate / rate)`` samples.
    Where ``soundfile`` is not installed, WAV files only (:func:`read_wav`); where ``soxr`` is
    not, :func:`resample`.  :func:`resample` itself stays this module's sinc resampler: the eSpeak
    corpus (``reference.corpus``) is built with it, and its cache does not record a resampler.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not audio that can be decoded here.
    """
    path = os.fspath(path)
    sample_rate = _check_rate(sample_rate, "sample_rate")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio file not found: {path!r}")
    sf = _optional("soundfile")
    if sf is None:
        try:
            audio, sr = read_wav(path)
        except ValueError as err:
            raise ValueError(f"{err} (only WAV can be read without the soundfile package: pip install soundfile)") from None
        mono = audio.numpy().astype(np.float64)
    else:
        try:
            data, sr = sf.read(path, dtype="float64", always_2d=True)       # (n, channels)
        except Exception as err:  # noqa: BLE001 - libsndfile's errors (LibsndfileError, RuntimeError, ...)
            try:                                                           # a WAV variant libsndfile refuses
                audio, sr = read_wav(path)
                data = audio.numpy().astype(np.float64)[:, None]
            except ValueError:
                raise ValueError(f"{path!r}: cannot decode it as audio ({str(err)[:200]}); expected WAV, FLAC, "
                                 "OGG or MP3") from None
        mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    mono = np.clip(np.nan_to_num(mono, nan=0.0), -1.0, 1.0)
    soxr = _optional("soxr")
    if sr == sample_rate:
        out = mono
    elif soxr is None or mono.size == 0:
        out = resample(torch.from_numpy(mono), int(sr), sample_rate).numpy()
    else:
        out = soxr.resample(mono, int(sr), sample_rate, quality="HQ")
        target = -(-mono.size * sample_rate // int(sr))                   # ceil(N * new / old), as resample
        out = out[:target] if out.size >= target else np.pad(out, (0, target - out.size))
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).clamp_(-1.0, 1.0)


# --------------------------------------------------------------------------- silence


def trim_silence(
    audio: torch.Tensor,
    sample_rate: int,
    threshold_db: float = -40.0,
    margin_ms: float = 50.0,
    frame_ms: float = 10.0,
) -> torch.Tensor:
    """Cut leading and trailing silence, keeping ``margin_ms`` on each side.

    A frame of ``frame_ms`` is *active* when its peak is within ``threshold_db`` of the
    whole clip's peak.  The result runs from ``margin_ms`` before the first active frame to
    ``margin_ms`` after the last one (clamped to the clip).  A silent clip comes back unchanged.

    Args:
        audio: ``(N,)`` float tensor.
    Returns:
        a ``(M,)`` slice (a view) of ``audio``, ``M <= N``.
    """
    audio = check_audio(audio, min_samples=0)
    sample_rate = _check_rate(sample_rate, "sample_rate")
    peak = float(audio.abs().max()) if audio.numel() else 0.0
    if peak == 0.0:
        return audio
    frame = max(1, int(round(sample_rate * frame_ms / 1000.0)))
    n_frames = -(-audio.numel() // frame)
    padded = torch.nn.functional.pad(audio.abs(), (0, n_frames * frame - audio.numel()))
    frame_peaks = padded.view(n_frames, frame).amax(dim=1)
    active = torch.nonzero(frame_peaks >= peak * 10.0 ** (threshold_db / 20.0)).flatten()
    margin = int(round(sample_rate * margin_ms / 1000.0))
    start = max(0, int(active[0]) * frame - margin)
    end = min(audio.numel(), (int(active[-1]) + 1) * frame + margin)
    return audio[start:end]
