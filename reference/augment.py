"""Feature-level augmentation: SpecAugment-style masking (Park et al., 2019).

DS2 augments its *audio* (noise on 40 % of the clips, section 5.2; :mod:`reference.corpus`
also perturbs speed).  Those clips are rendered once, so every epoch sees the same ones.
Masking the spectrogram is a cheap second kind of augmentation that changes every step:
blank out ``freq_masks`` bands of up to ``freq_width`` frequency bins and ``time_masks``
spans of up to ``time_width`` (a fraction of the utterance) frames.  A network that must
transcribe with a formant band or a syllable hidden leans less on any one cue, which is
what an unseen voice (other formants, other timing) takes away.

Features are normalised per utterance (zero mean), so a masked cell is set to 0, the mean.
Only valid frames are masked; padding stays zero.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .data import Batch

__all__ = ["SpecAugment", "speed_perturb"]


@dataclass(frozen=True)
class SpecAugment:
    """``SpecAugment(...)(batch, generator) -> batch`` with masked features (a new tensor).

    Attributes:
        freq_masks: frequency bands masked per utterance.
        freq_width: each band's width is uniform in ``0..freq_width`` bins.
        time_masks: time spans masked per utterance.
        time_width: each span's length is uniform in ``0..time_width x (valid frames)``.
    """

    freq_masks: int = 2
    freq_width: int = 20
    time_masks: int = 2
    time_width: float = 0.05

    def __post_init__(self):
        for name in ("freq_masks", "freq_width", "time_masks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if not 0.0 <= self.time_width <= 1.0:
            raise ValueError(f"time_width must be a fraction in [0, 1], got {self.time_width!r}")

    def __call__(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        x = batch.features
        B, _, n_freq, T = x.shape
        keep = torch.ones(B, n_freq, T, dtype=torch.bool)
        if self.freq_masks and self.freq_width:
            size = torch.full((B,), n_freq)
            keep &= ~_spans(self.freq_masks, torch.full((B,), self.freq_width), size, n_freq, generator)[:, :, None]
        if self.time_masks and self.time_width:
            lengths = batch.feature_lengths.cpu().long()
            width = (self.time_width * lengths.double()).long()
            keep &= ~_spans(self.time_masks, width, lengths, T, generator)[:, None, :]
        return replace(batch, features=x * keep[:, None].to(x.dtype))


def _spans(n: int, width: torch.Tensor, size: torch.Tensor, total: int, generator) -> torch.Tensor:
    """``(B, total)`` bool: ``n`` spans per row, each ``U{0..width[b]}`` long, inside ``0..size[b]``."""
    B = size.shape[0]
    w = torch.minimum((torch.rand(B, n, generator=generator) * (width[:, None] + 1)).long(), width[:, None])
    start = (torch.rand(B, n, generator=generator) * (size[:, None] - w + 1)).long()
    pos = torch.arange(total)[None, None]
    return ((pos >= start[..., None]) & (pos < (start + w)[..., None])).any(1)


def speed_perturb(samples, factors=(0.9, 1.1)) -> list:
    """``samples`` plus one copy of each at every speed in ``factors`` (Ko et al., 2015).

    A copy at speed ``f`` is the clip resampled from 16 kHz to ``16000 / f`` Hz and played at 16 kHz:
    ``f = 0.9`` is 11 % longer and lower (pitch and formants move with the speed, as in a tape played
    slower).  The copies are made once, so a list of ``n`` clips becomes ``n * (1 + len(factors))``;
    DS2 perturbs its audio too (noise, section 5.2).  Used by ``python -m reference.train --speed-perturb``.
    """
    from .data import Sample

    factors = [float(f) for f in factors]
    if any(not 0.5 <= f <= 2.0 for f in factors):
        raise ValueError(f"speed factors must lie in [0.5, 2], got {factors}")
    rates = {s.sample_rate for s in samples} - {16000}
    if rates:
        raise ValueError(f"speed_perturb expects 16 kHz clips, got {sorted(rates)} Hz")
    out = list(samples)
    for f in factors:
        for s in samples:
            out.append(Sample(_resample_to(s.audio, int(round(16000 / f))), s.transcript, 16000, s.speaker))
    return out


def _resample_to(audio: torch.Tensor, rate: int) -> torch.Tensor:
    """16 kHz ``audio`` resampled to ``rate`` Hz: ``soxr`` where installed, else the course's own
    resampler at the nearest multiple of 800 Hz (it needs rates with a large common divisor)."""
    try:
        import soxr
    except ImportError:
        from .audio import resample
        return resample(audio, 16000, 800 * max(1, round(rate / 800))).contiguous()
    return torch.from_numpy(soxr.resample(audio.double().numpy(), 16000, rate, quality="HQ")).float()
