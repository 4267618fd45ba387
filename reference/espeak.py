"""Speech synthesis with eSpeak NG, through ``ctypes`` (the capstone's "real" speech).

eSpeak NG is a small formant synthesizer: it turns English text into speech in a few
milliseconds per word, in many voices and accents, without any model weights.  The pip
package ``espeakng-loader`` ships the shared library and its data; this module drives the
library's C API directly:

    espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, ...)   # once per process: returns 22050 (Hz)
    espeak_SetSynthCallback(callback)                   # receives int16 samples in chunks
    espeak_SetVoiceByName("en-us+f2")                   # 0 = OK, 2 = unknown name (voice unchanged!)
    espeak_SetParameter(espeakRATE, 175, 0)             # words per minute, 80..450
    espeak_SetParameter(espeakPITCH, 50, 0)             # base pitch, 0..100
    espeak_Synth(text, ...)                             # synchronous: the callback runs inside

Two pitfalls this module handles for you:

1. ``espeak_SetVoiceByName`` returns 2 for an unknown *voice* and silently keeps the previous
   one, and accepts an unknown *variant* (``en-us+zz``) without complaint.  Unknown voices
   and variants here are a ``ValueError``.
2. The library keeps hidden state from one utterance to the next (the phase of its pitch
   "flutter", an automatic gain control, filter memories), so the same call twice in a
   process gives slightly different samples; and it seeds its random generator (breath noise
   of variants such as ``f2``) from the clock.  For reproducible data, every batch of
   utterances is synthesized in a child process forked from the freshly initialised library
   (``os.fork``, Linux and macOS), which reseeds the generator (``espeak_ng_SetRandSeed``)
   first: each batch starts from the same state, and the same batch gives the same samples
   in every process, every time.  Where ``fork`` does not exist (Windows), synthesis runs
   in-process and is only reproducible up to this drift (see :data:`ISOLATED`).

Voices are ``name`` or ``name+variant``; on espeak-ng 1.52 the names ``en``, ``en-us``,
``en-gb-x-rp``, ``en-gb-scotland``, ``en-gb-x-gbclan``, ``en-gb-x-gbcwmd``, ``en-029`` and
``en-us-nyc`` work, ``en-gb`` does not (return code 2), and the variants are the files of
``espeak-ng-data/voices/!v`` (``m1``..``m8``, ``f1``..``f5``, ``klatt``, ``whisper``, ...: see
:func:`list_variants`).

    >>> audio = synthesize("hello world", voice="en-us+f2", rate=160)   # (N,) float, 16 kHz
"""
from __future__ import annotations

import ctypes
import os
import pickle
import tempfile
import threading
import warnings
from typing import NamedTuple, Sequence

import numpy as np
import torch

from .audio import resample, trim_silence

__all__ = [
    "EspeakUnavailable",
    "Utterance",
    "PendingBatch",
    "espeak_available",
    "espeak_version",
    "native_sample_rate",
    "list_variants",
    "check_voice",
    "synthesize",
    "synthesize_batch",
    "phonemize",
    "start_batch",
    "ISOLATED",
    "INSTALL_HINT",
    "RATE_RANGE",
    "PITCH_RANGE",
]

INSTALL_HINT = (
    "eSpeak NG is not available: install it with `pip install espeakng-loader` "
    "(wheels exist for Linux x86-64, macOS arm64 and Windows); the course falls back to its "
    "synthetic generator without it"
)

RATE_RANGE = (80, 450)   # words per minute accepted by espeak (espeakRATE_MINIMUM, espeakRATE_MAXIMUM)
PITCH_RANGE = (0, 100)   # base pitch, 50 is the voice's default

#: True where each batch is synthesized in a forked child (bit-for-bit reproducible output).
ISOLATED: bool = hasattr(os, "fork")

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0
_RAND_SEED = 0

_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakUnavailable(RuntimeError):
    """The eSpeak NG library cannot be loaded (``espeakng-loader`` missing or broken)."""


class Utterance(NamedTuple):
    """What to say and how: ``voice`` is ``name`` or ``name+variant``, ``rate`` in words per minute."""

    text: str
    voice: str = "en-us"
    rate: int = 175
    pitch: int = 50


# --------------------------------------------------------------------------- the library


class _Engine:
    """The process-wide library handle (eSpeak is a global singleton: initialise it once)."""

    lock = threading.RLock()
    lib = None
    sample_rate = 0
    data_path = ""
    version = ""
    error: str | None = None
    chunks: list[bytes] = []


def _on_samples(wav, n_samples, _events) -> int:
    # Called by espeak_Synth with int16 samples (wav is NULL at the end); 0 = keep going.
    if wav and n_samples > 0:
        _Engine.chunks.append(ctypes.string_at(wav, n_samples * 2))
    return 0


_CALLBACK = _CALLBACK_TYPE(_on_samples)   # module-level: must outlive every synthesis


def _engine() -> type[_Engine]:
    """Load and initialise the library on first use; raise :class:`EspeakUnavailable` if impossible."""
    with _Engine.lock:
        if _Engine.lib is not None:
            return _Engine
        if _Engine.error is not None:
            raise EspeakUnavailable(_Engine.error)
        try:
            import espeakng_loader

            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data_path = espeakng_loader.get_data_path()
        except (ImportError, OSError, RuntimeError) as err:
            _Engine.error = f"{INSTALL_HINT} ({type(err).__name__}: {err})"
            raise EspeakUnavailable(_Engine.error) from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_TYPE]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            _Engine.error = f"espeak_Initialize failed (returned {rate}) with data at {data_path!r}"
            raise EspeakUnavailable(_Engine.error)
        lib.espeak_SetSynthCallback(_CALLBACK)
        _Engine.lib, _Engine.sample_rate, _Engine.data_path = lib, int(rate), data_path
        _Engine.version = (lib.espeak_Info(None) or b"").decode(errors="replace")
        return _Engine


def espeak_available() -> bool:
    """True when the eSpeak NG library loads and initialises (``pip install espeakng-loader``)."""
    try:
        _engine()
        return True
    except EspeakUnavailable:
        return False


def espeak_version() -> str:
    """The library's version string, e.g. ``'1.52.0'``."""
    return _engine().version


def native_sample_rate() -> int:
    """The rate eSpeak synthesizes at (22050 Hz)."""
    return _engine().sample_rate


def list_variants() -> list[str]:
    """Names of the voice variants (``m1``, ``f2``, ``klatt``, ...) that may follow a ``+``."""
    return sorted(os.listdir(os.path.join(_engine().data_path, "voices", "!v")))


# --------------------------------------------------------------------------- checks


def _check_utterance(u) -> Utterance:
    if not isinstance(u, Utterance):
        if isinstance(u, str):
            u = Utterance(u)
        elif isinstance(u, (tuple, list)):
            u = Utterance(*u)
        else:
            raise ValueError(f"an utterance must be a str, a tuple (text, voice, rate, pitch) or an Utterance, got {type(u).__name__}")
    text, voice, rate, pitch = u
    if not isinstance(text, str) or not any(ch.isalnum() for ch in text) or "\0" in text:
        raise ValueError(f"text must be a str with at least one letter or digit (and no NUL), got {text!r}")
    if not isinstance(voice, str) or not voice.strip() or voice.count("+") > 1 or voice.strip() != voice:
        raise ValueError(f"voice must be 'name' or 'name+variant' (e.g. 'en-us' or 'en-us+f2'), got {voice!r}")
    if "+" in voice:
        variant = voice.split("+", 1)[1]
        known = list_variants()
        if variant not in known:
            raise ValueError(
                f"unknown eSpeak voice variant {variant!r} in {voice!r}: expected one of the files in "
                f"espeak-ng-data/voices/!v, e.g. {', '.join(v for v in known if v[:1] in 'mfk' and len(v) <= 6)} "
                "(list_variants() has them all)"
            )
    for name, value, (lo, hi) in (("rate", rate, RATE_RANGE), ("pitch", pitch, PITCH_RANGE)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
            raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")
    return Utterance(text, voice, int(rate), int(pitch))


_voice_ok: dict[str, bool] = {}


def check_voice(voice: str) -> str:
    """Return ``voice`` if eSpeak knows it, else raise a ``ValueError`` (result cached per name)."""
    if voice not in _voice_ok:
        try:
            synthesize_batch([Utterance("a", voice)])
            _voice_ok[voice] = True
        except ValueError:
            _voice_ok[voice] = False
            raise
    if not _voice_ok[voice]:
        raise ValueError(f"unknown eSpeak voice {voice!r}")
    return voice


# --------------------------------------------------------------------------- synthesis


def _render(utterances: Sequence[Utterance]) -> list[np.ndarray]:
    """Synthesize in the current process, in order (the caller holds the lock)."""
    eng = _Engine
    out = []
    # The library seeds its own random generator (breath noise of some variants) from the clock
    # when it initialises: reseed it so that a batch does not depend on when the process started.
    eng.lib.espeak_ng_SetRandSeed(_RAND_SEED)
    for u in utterances:
        status = eng.lib.espeak_SetVoiceByName(u.voice.encode())
        if status != _EE_OK:
            raise ValueError(
                f"unknown eSpeak voice {u.voice!r} (espeak_SetVoiceByName returned {status}); "
                "working names include 'en', 'en-us', 'en-gb-x-rp', 'en-gb-scotland', 'en-029', 'en-us-nyc'"
            )
        eng.lib.espeak_SetParameter(_PARAM_RATE, u.rate, 0)
        eng.lib.espeak_SetParameter(_PARAM_PITCH, u.pitch, 0)
        eng.chunks.clear()
        text = u.text.encode("utf-8") + b"\0"
        status = eng.lib.espeak_Synth(text, len(text), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status} on {u.text!r}")
        out.append(np.frombuffer(b"".join(eng.chunks), dtype=np.int16).copy())
        eng.chunks.clear()
    return out


class PendingBatch:
    """``fn(*args)`` (a batch synthesis) running in a forked child; :meth:`result` waits for it.

    Where :data:`ISOLATED` is False it has already run, in-process, under the library's lock.

    The child writes its pickled result to a temporary file (a pipe would block once full)
    and exits with ``os._exit``, running no Python clean-up of the parent's objects.
    """

    def __init__(self, fn, *args):
        self._result = None
        self._pid = None
        self._path = None
        eng = _engine()
        if not ISOLATED:
            with eng.lock:
                self._result = fn(*args)
            return
        fd, self._path = tempfile.mkstemp(prefix="espeak-", suffix=".pkl")
        with eng.lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # "fork() in a multi-threaded process"
            pid = os.fork()
            if pid == 0:                                          # --- child
                code = 0
                try:
                    try:
                        payload = ("ok", fn(*args))
                    except BaseException as err:                  # report it to the parent
                        payload = ("error", type(err).__name__, str(err))
                    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.close(fd)
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
        os.close(fd)
        self._pid = pid

    def done(self) -> bool:
        """True when :meth:`result` would not wait."""
        if self._pid is None:
            return True
        pid, status = os.waitpid(self._pid, os.WNOHANG)
        if pid == 0:
            return False
        self._finish(status)
        return True

    def _finish(self, status: int) -> None:
        self._pid = None
        try:
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                raise RuntimeError(f"the eSpeak child process failed (exit code {code}; negative = killed by that signal)")
            with open(self._path, "rb") as f:
                payload = pickle.load(f)
        finally:
            os.unlink(self._path)
        if payload[0] != "ok":
            kind, message = payload[1], payload[2]
            raise (ValueError if kind == "ValueError" else RuntimeError)(message)
        self._result = payload[1]

    def result(self):
        """What ``fn`` returned (for a synthesis batch: int16 arrays at :func:`native_sample_rate`, in order)."""
        if self._pid is not None:
            _, status = os.waitpid(self._pid, 0)
            self._finish(status)
        return self._result

    def __del__(self):
        if getattr(self, "_pid", None) is not None:   # abandoned: reap the child, drop its file
            try:
                os.waitpid(self._pid, 0)
                os.unlink(self._path)
            except OSError:
                pass


def start_batch(utterances: Sequence) -> PendingBatch:
    """Start synthesizing ``utterances`` (in order, from the freshly initialised state) and return at once.

    Args:
        utterances: items of :class:`Utterance` (or ``(text, voice, rate, pitch)`` tuples, or
            plain strings for the defaults).  They are checked here: a bad text, rate, pitch or
            variant is a ``ValueError`` before anything runs; an unknown voice name is a
            ``ValueError`` from :meth:`PendingBatch.result`.
    """
    return PendingBatch(_render, [_check_utterance(u) for u in utterances])


def synthesize_batch(utterances: Sequence) -> list[np.ndarray]:
    """Synthesize several utterances; int16 arrays at :func:`native_sample_rate` (22050 Hz), untrimmed.

    One batch is one forked child: a batch's output depends on its utterances and their
    order only, never on what was synthesized before.
    """
    return start_batch(utterances).result()


def synthesize(
    text: str,
    voice: str = "en-us",
    rate: int = 175,
    pitch: int = 50,
    sample_rate: int = 16000,
    trim: bool = True,
) -> torch.Tensor:
    """Say ``text`` with eSpeak NG.

    Args:
        text: what to say (any text eSpeak reads; the course uses lower-case words).
        voice: ``'name'`` or ``'name+variant'``, e.g. ``'en-us'``, ``'en-gb-x-rp+f4'``.
        rate: speed in words per minute, in [80, 450].
        pitch: base pitch in [0, 100] (50 is the voice's default).
        sample_rate: output rate; eSpeak's 22050 Hz is resampled with :func:`reference.audio.resample`.
        trim: cut leading and trailing silence, keeping 50 ms on each side.

    Returns:
        ``(N,)`` float32 tensor in [-1, 1].  The same arguments give the same samples
        (where :data:`ISOLATED`).

    Raises:
        EspeakUnavailable: ``espeakng-loader`` is not installed or does not load.
        ValueError: unknown voice or variant, rate or pitch out of range, text without words.
    """
    raw = synthesize_batch([Utterance(text, voice, rate, pitch)])[0]
    return _to_float(raw, trim=trim, sample_rate=sample_rate)


def _phonemes(words: list[str], voice: str) -> list[str]:
    lib = _Engine.lib
    status = lib.espeak_SetVoiceByName(voice.encode())
    if status != _EE_OK:
        raise ValueError(f"unknown eSpeak voice {voice!r} (espeak_SetVoiceByName returned {status})")
    out = []
    for word in words:
        ptr = ctypes.c_char_p(word.encode("utf-8"))
        parts = []
        while ptr.value:                                       # one call per clause
            parts.append((lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, 0) or b"").decode())
        out.append(" ".join(p.strip() for p in parts))
    return out


def phonemize(words: Sequence[str], voice: str = "en-us") -> list[str]:
    """eSpeak's phoneme mnemonics for each of ``words`` (stress marks included), e.g. ``'h@l'oU'``.

    Useful to find homophones: two words with the same phonemes sound the same.
    """
    words = list(words)
    if not all(isinstance(w, str) and w for w in words):
        raise ValueError("phonemize expects non-empty strings")
    return PendingBatch(_phonemes, words, voice).result()


def _to_float(raw: np.ndarray, trim: bool = True, sample_rate: int = 16000, margin_ms: float = 50.0) -> torch.Tensor:
    """int16 samples at the native rate -> trimmed float32 tensor at ``sample_rate``."""
    audio = torch.from_numpy(raw.astype(np.float32) / 32768.0)
    native = native_sample_rate()
    if trim:
        audio = trim_silence(audio, native, threshold_db=-40.0, margin_ms=margin_ms)
    return resample(audio, native, sample_rate).clamp_(-1.0, 1.0)
