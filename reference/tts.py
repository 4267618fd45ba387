"""Two more speech synthesizers, driven through ``ctypes``: SVOX Pico and RHVoice.

:mod:`reference.voices` builds a corpus of many synthesized voices.  A model trained on eSpeak NG
and Flite alone still hears a person as new (``docs/figures.md``, zero-shot CER about 53 %), and
the one lever measured to close part of that gap was *more distinct voices*: Pico's two English
voices took the zero-shot test CER from 54.5 to 48.3 % against the same training without them.
These two engines bring six voices, all built from recordings of people:

- **SVOX Pico** (Debian ``libttspico0`` and ``libttspico-data``, Apache-2.0; in ``non-free``
  because its voice data is shipped without the sources that built it): ``en-US`` (``lh0``, a
  woman) and ``en-GB`` (``kh0``, a woman), 16 kHz.  Pitch and speed are Pico's own markup,
  ``<pitch level="P"><speed level="S">text</speed></pitch>`` (100 = the voice's own).
- **RHVoice** (Debian ``librhvoice5``, ``librhvoice-core7``, ``rhvoice-english``, LGPL-2.1+;
  ``non-free`` because its voices are trained models without their training scripts): ``alan``
  (a Scottish man, from CSTR's recordings), ``bdl`` (an American man), ``clb`` and ``slt`` (two
  American women; the three from CMU ARCTIC), 24 kHz.  ``rhvoice-english`` also holds
  ``evgeniy-eng`` and ``lyubov``, licensed CC-BY-NC-ND-4.0: they are not used.

Both are C libraries without a Python binding on PyPI that ships them, so this module calls their C
APIs (``picoapi.h``, ``RHVoice.h``) with ``ctypes``.  Each :class:`PicoVoice` or :class:`RHVoiceEngine`
is one engine in this process; :func:`synthesize_many` spreads many texts over worker processes,
each with its own engines.  Both engines are deterministic (Pico once reset before each text): the same
text and settings give the same samples.

    >>> with PicoVoice(root, "en-US") as pico:                 # root: the .deb files extracted
    ...     audio = pico.say("please leave a message", pitch=90, speed=110)   # int16, 16 kHz
"""
from __future__ import annotations

import ctypes as C
import multiprocessing as mp
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["PICO_PACKAGES", "RHVOICE_PACKAGES", "PICO_VOICES", "RHVOICE_VOICES", "PicoVoice", "RHVoiceEngine",
           "missing_files", "synthesize_many"]

LIBS = "usr/lib/x86_64-linux-gnu"
PICO_PACKAGES = ("libttspico0", "libttspico-data")
RHVOICE_PACKAGES = ("librhvoice5", "librhvoice-core7", "rhvoice-english", "libsonic0")
PICO_LANG = "usr/share/pico/lang"
PICO_VOICES = {"en-US": "lh0", "en-GB": "kh0"}       # language -> speaker
RHVOICE_DATA = "usr/share/RHVoice"
RHVOICE_VOICES = ("alan", "bdl", "clb", "slt")        # the LGPL ones; evgeniy-eng and lyubov are CC-BY-NC-ND
PICO_RATE = 16000

_PICO_MEMORY = 20_000_000           # bytes for pico_initialize: two resources and one engine fit
_PICO_STEP_BUSY = 201
_PICO_RESET_FULL = 0


def missing_files(root) -> list[str]:
    """The files of both synthesizers that are not under ``root`` (empty when both can run)."""
    root = Path(root)
    need = [root / LIBS / name for name in ("libttspico.so.0", "libsonic.so.0", "libRHVoice_core.so.7", "libRHVoice.so.5")]
    for language, speaker in PICO_VOICES.items():
        need += [root / PICO_LANG / f"{language}_ta.bin", root / PICO_LANG / f"{language}_{speaker}_sg.bin"]
    need += [root / RHVOICE_DATA / "languages" / "English"] + [root / RHVOICE_DATA / "voices" / v for v in RHVOICE_VOICES]
    return [str(p) for p in need if not p.exists()]


def _load(path: Path, mode: int = C.DEFAULT_MODE) -> C.CDLL:
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is missing: are the synthesizer's Debian packages extracted there?")
    return C.CDLL(str(path), mode=mode)


# --------------------------------------------------------------------------- SVOX Pico


class PicoVoice:
    """One Pico engine speaking ``language`` (a key of :data:`PICO_VOICES`).

    Pico allows one engine per system at a time in practice, so close this one (or leave its ``with``
    block) before opening another.
    """

    def __init__(self, root, language: str):
        if language not in PICO_VOICES:
            raise ValueError(f"unknown Pico language {language!r}; expected one of {sorted(PICO_VOICES)}")
        root = Path(root)
        self.language = language
        self._lib = _load(root / LIBS / "libttspico.so.0")
        lang_dir = root / PICO_LANG
        files = [lang_dir / f"{language}_ta.bin", lang_dir / f"{language}_{PICO_VOICES[language]}_sg.bin"]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"{str(f)!r} is missing: is libttspico-data extracted in {str(root)!r}?")
        self._memory = C.create_string_buffer(_PICO_MEMORY)
        self._system = C.c_void_p()
        self._check(self._lib.pico_initialize(self._memory, C.c_uint32(_PICO_MEMORY), C.byref(self._system)),
                    "pico_initialize")
        self._resources = []
        voice = f"course-{language}".encode()
        self._check(self._lib.pico_createVoiceDefinition(self._system, voice), "pico_createVoiceDefinition")
        for f in files:
            res = C.c_void_p()
            self._check(self._lib.pico_loadResource(self._system, str(f).encode(), C.byref(res)), f"loading {f.name}")
            self._resources.append(res)
            name = C.create_string_buffer(200)
            self._check(self._lib.pico_getResourceName(self._system, res, name), "pico_getResourceName")
            self._check(self._lib.pico_addResourceToVoiceDefinition(self._system, voice, name.value),
                        "pico_addResourceToVoiceDefinition")
        self._engine = C.c_void_p()
        self._check(self._lib.pico_newEngine(self._system, voice, C.byref(self._engine)), "pico_newEngine")

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"SVOX Pico: {what} failed with status {status}")

    def say(self, text: str, pitch: int = 100, speed: int = 100) -> np.ndarray:
        """``text`` spoken at ``pitch`` and ``speed`` percent of the voice's own: int16 samples at 16 kHz."""
        if self._engine is None:
            raise RuntimeError("this PicoVoice is closed")
        for name, value in (("pitch", pitch), ("speed", speed)):
            if not 50 <= value <= 200:
                raise ValueError(f"{name} must be a percentage in [50, 200], got {value!r}")
        plain = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        data = f'<pitch level="{int(pitch)}"><speed level="{int(speed)}">{plain}</speed></pitch>'.encode() + b"\0"
        # A full reset first: Pico's excitation noise carries over from one text to the next, and only a
        # reset makes the same text give the same samples.
        self._check(self._lib.pico_resetEngine(self._engine, C.c_int32(_PICO_RESET_FULL)), "pico_resetEngine")
        buf = C.create_string_buffer(4096)
        put, got, kind = C.c_int16(), C.c_int16(), C.c_int16()
        out, pos = [], 0
        while pos < len(data):
            chunk = data[pos : pos + 30000]
            self._check(self._lib.pico_putTextUtf8(self._engine, chunk, C.c_int16(len(chunk)), C.byref(put)),
                        "pico_putTextUtf8")
            pos += put.value
            while True:
                status = self._lib.pico_getData(self._engine, buf, C.c_int16(len(buf)), C.byref(got), C.byref(kind))
                if got.value:
                    out.append(np.frombuffer(buf.raw[: got.value], dtype=np.int16).copy())
                if status != _PICO_STEP_BUSY:
                    break
        return np.concatenate(out) if out else np.zeros(0, np.int16)

    def close(self) -> None:
        if self._engine is not None:
            self._lib.pico_disposeEngine(self._system, C.byref(self._engine))
            for res in self._resources:
                self._lib.pico_unloadResource(self._system, C.byref(res))
            self._lib.pico_terminate(C.byref(self._system))
            self._engine = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- RHVoice

_SAMPLE_RATE_CB = C.CFUNCTYPE(C.c_int, C.c_int, C.c_void_p)
_PLAY_CB = C.CFUNCTYPE(C.c_int, C.POINTER(C.c_short), C.c_uint, C.c_void_p)


class _Callbacks(C.Structure):          # RHVoice_callbacks; unused ones must be NULL
    _fields_ = [("set_sample_rate", _SAMPLE_RATE_CB), ("play_speech", _PLAY_CB), ("process_mark", C.c_void_p),
                ("word_starts", C.c_void_p), ("word_ends", C.c_void_p), ("sentence_starts", C.c_void_p),
                ("sentence_ends", C.c_void_p), ("play_audio", C.c_void_p), ("done", C.c_void_p)]


class _InitParams(C.Structure):         # RHVoice_init_params
    _fields_ = [("data_path", C.c_char_p), ("config_path", C.c_char_p), ("resource_paths", C.POINTER(C.c_char_p)),
                ("callbacks", _Callbacks), ("options", C.c_uint)]


class _SynthParams(C.Structure):        # RHVoice_synth_params
    _fields_ = [("voice_profile", C.c_char_p), ("absolute_rate", C.c_double), ("absolute_pitch", C.c_double),
                ("absolute_volume", C.c_double), ("relative_rate", C.c_double), ("relative_pitch", C.c_double),
                ("relative_volume", C.c_double), ("punctuation_mode", C.c_int), ("punctuation_list", C.c_char_p),
                ("capitals_mode", C.c_int), ("flags", C.c_int)]


class _VoiceInfo(C.Structure):          # RHVoice_voice_info
    _fields_ = [("language", C.c_char_p), ("name", C.c_char_p), ("gender", C.c_int), ("country", C.c_char_p)]


class RHVoiceEngine:
    """One RHVoice engine over the voices in ``root/usr/share/RHVoice``; ``say`` picks the voice."""

    def __init__(self, root):
        root = Path(root)
        libs = root / LIBS
        _load(libs / "libsonic.so.0", C.RTLD_GLOBAL)
        _load(libs / "libRHVoice_core.so.7", C.RTLD_GLOBAL)
        self._lib = lib = _load(libs / "libRHVoice.so.5")
        data = root / RHVOICE_DATA
        if not (data / "languages" / "English").is_dir():
            raise FileNotFoundError(f"{str(data / 'languages' / 'English')!r} is missing: "
                                    f"is rhvoice-english extracted in {str(root)!r}?")
        lib.RHVoice_new_tts_engine.restype = C.c_void_p
        lib.RHVoice_delete_tts_engine.argtypes = [C.c_void_p]
        lib.RHVoice_get_number_of_voices.argtypes = [C.c_void_p]
        lib.RHVoice_get_voices.argtypes = [C.c_void_p]
        lib.RHVoice_get_voices.restype = C.POINTER(_VoiceInfo)
        lib.RHVoice_new_message.restype = C.c_void_p
        lib.RHVoice_new_message.argtypes = [C.c_void_p, C.c_char_p, C.c_uint, C.c_int, C.POINTER(_SynthParams), C.c_void_p]
        lib.RHVoice_speak.argtypes = [C.c_void_p]
        lib.RHVoice_delete_message.argtypes = [C.c_void_p]
        self._rate = 0
        self._chunks: list[np.ndarray] = []

        def set_rate(rate, _user):
            self._rate = rate
            return 1

        def play(samples, count, _user):
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
            return 1

        self._callbacks = (_SAMPLE_RATE_CB(set_rate), _PLAY_CB(play))      # kept alive as long as the engine
        self._config = tempfile.TemporaryDirectory(prefix="rhvoice-")       # no user configuration
        params = _InitParams(str(data).encode(), self._config.name.encode(), None,
                             _Callbacks(*self._callbacks, None, None, None, None, None, None, None), 0)
        self._engine = lib.RHVoice_new_tts_engine(C.byref(params))
        if not self._engine:
            raise RuntimeError(f"RHVoice could not start on the data in {str(data)!r}")
        infos = lib.RHVoice_get_voices(self._engine)
        self.voices = sorted(infos[i].name.decode().lower() for i in range(lib.RHVoice_get_number_of_voices(self._engine)))

    def say(self, text: str, voice: str, rate: float = 0.0, pitch: float = 0.0) -> tuple[np.ndarray, int]:
        """``text`` in ``voice``: ``(int16 samples, sample rate)``.

        ``rate`` and ``pitch`` are RHVoice's absolute settings in [-1, 1]; 0 is the voice's own.  On this
        version, rate r scales the duration by about 2 ** -r and pitch p the fundamental by about 2 ** p.
        """
        if self._engine is None:
            raise RuntimeError("this RHVoiceEngine is closed")
        if voice not in self.voices:       # RHVoice would fall back to another voice without a word
            raise ValueError(f"unknown RHVoice voice {voice!r}; this data has {self.voices}")
        for name, value in (("rate", rate), ("pitch", pitch)):
            if not -1.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [-1, 1], got {value!r}")
        self._chunks = []
        params = _SynthParams(voice.capitalize().encode(), float(rate), float(pitch), 0.0, 1.0, 1.0, 1.0, 0, None, 0, 0)
        data = text.encode()
        message = self._lib.RHVoice_new_message(self._engine, data, len(data), 0, C.byref(params), None)
        if not message:
            raise RuntimeError(f"RHVoice refused the text {text!r}")
        try:
            if not self._lib.RHVoice_speak(message):
                raise RuntimeError(f"RHVoice failed to say {text!r} in {voice!r}")
        finally:
            self._lib.RHVoice_delete_message(message)
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        self._chunks = []
        return audio, self._rate

    def close(self) -> None:
        if self._engine is not None:
            self._lib.RHVoice_delete_tts_engine(self._engine)
            self._engine = None
            self._config.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- many texts

_worker_engines: dict = {}


def _worker_say(root: str, engine: str, voice: str, items: list[tuple[str, float, float]]) -> list[tuple[np.ndarray, int]]:
    """In a worker process: say each ``(text, a, b)`` of ``items`` (Pico: pitch, speed; RHVoice: rate, pitch)."""
    key = (root, engine, voice if engine == "pico" else "")
    if key not in _worker_engines:
        for old in list(_worker_engines):          # Pico: one engine at a time
            _worker_engines.pop(old).close()
        _worker_engines[key] = PicoVoice(root, voice) if engine == "pico" else RHVoiceEngine(root)
    e = _worker_engines[key]
    if engine == "pico":
        return [(e.say(text, int(a), int(b)), PICO_RATE) for text, a, b in items]
    return [e.say(text, voice, a, b) for text, a, b in items]


def synthesize_many(root, jobs: list[tuple[str, str, str, float, float]], workers: int = 2, chunk: int = 50,
                    progress: bool = False, desc: str = "Pico/RHVoice") -> list[tuple[np.ndarray, int]]:
    """Say many texts: ``jobs`` are ``(engine, voice, text, a, b)`` with engine ``"pico"`` (voice: a
    language of :data:`PICO_VOICES`; a, b: pitch and speed in percent) or ``"rhvoice"`` (voice: one of
    :data:`RHVOICE_VOICES`; a, b: rate and pitch in [-1, 1]).

    Returns ``(int16 samples, sample rate)`` per job, in order.  Jobs run in chunks of one voice on up to
    ``workers`` processes, each with its own engines; the samples do not depend on ``workers``.
    """
    from tqdm.auto import tqdm

    for engine, voice, *_ in jobs:
        known = PICO_VOICES if engine == "pico" else RHVOICE_VOICES if engine == "rhvoice" else None
        if known is None:
            raise ValueError(f"unknown engine {engine!r}; expected 'pico' or 'rhvoice'")
        if voice not in known:
            raise ValueError(f"unknown {engine} voice {voice!r}; expected one of {sorted(known)}")
    # Chunks of one voice each, so that a worker keeps one engine for a whole chunk; results in job order.
    groups: dict = {}
    for i, job in enumerate(jobs):
        groups.setdefault(tuple(job[:2]), []).append(i)
    chunks = [g[i : i + chunk] for g in groups.values() for i in range(0, len(g), chunk)]
    results: list = [None] * len(jobs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool, \
            tqdm(total=len(jobs), desc=desc, unit="clip", disable=not progress, leave=False) as bar:
        futures = [(c, pool.submit(_worker_say, str(root), jobs[c[0]][0], jobs[c[0]][1],
                                   [(jobs[j][2], jobs[j][3], jobs[j][4]) for j in c])) for c in chunks]
        for c, fut in futures:
            for j, r in zip(c, fut.result()):
                results[j] = r
            bar.update(len(c))
    return results
