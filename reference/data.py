"""Samples, batches and SortaGrad (DS2 section 3.3).

A *sample* is anything with ``.audio`` (1-D float tensor), ``.transcript`` (str) and
``.sample_rate`` (int); a dataset is a sequence of samples.

SortaGrad (DS2 section 3.3): "In the first training epoch, we iterate through minibatches in
the training set in increasing order of the length of the longest utterance in the minibatch.
After the first epoch, training reverts back to a random order over minibatches."  Long
utterances have larger CTC costs and gradients early in training are unstable; a length
curriculum in epoch 0 fixes that, and length-bucketed minibatches waste little padding.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from .features import compute_spectrogram
from .text import CharEncoder

__all__ = ["Sample", "Batch", "collate_batch", "pad_features", "sortagrad_sampler", "sortagrad_batches", "epoch_generator"]


@dataclass
class Sample:
    """One utterance: ``audio`` ``(N,)`` float in [-1, 1], its ``transcript`` and ``sample_rate``.

    ``speaker`` names the (synthetic or eSpeak) voice, so splits can hold voices out.
    """

    audio: torch.Tensor
    transcript: str
    sample_rate: int = 16000
    speaker: str = ""

    def __len__(self) -> int:
        return int(self.audio.numel())

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.audio.numel() / self.sample_rate


@dataclass
class Batch:
    """A padded minibatch.

    Attributes:
        features: ``(B, 1, n_freq, T)`` spectrograms, zero-padded past each ``feature_lengths[b]``.
        feature_lengths: ``(B,)`` int64, valid frames per utterance.
        targets: ``(B, S)`` int64 symbol ids, zero-padded past ``target_lengths[b]``.
        target_lengths: ``(B,)`` int64.
        transcripts: the ``B`` reference strings.
    """

    features: torch.Tensor
    feature_lengths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor
    transcripts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.features.shape[0]

    def to(self, device) -> "Batch":
        return Batch(self.features.to(device), self.feature_lengths.to(device), self.targets.to(device),
                     self.target_lengths.to(device), list(self.transcripts))


def _audio_length(sample) -> int:
    audio = getattr(sample, "audio", None)
    if not isinstance(audio, torch.Tensor) or audio.dim() != 1:
        raise ValueError(f"a sample needs a 1-D tensor .audio, got {type(sample).__name__} with audio={type(audio).__name__}")
    return int(audio.numel())


def _check_sample_rate(sample, expected: int = 16000) -> int:
    sr = getattr(sample, "sample_rate", expected)
    if sr != expected:
        raise ValueError(f"sample has sample_rate {sr}; expected {expected} (resample with reference.audio.resample)")
    return sr


def collate_batch(samples: Sequence, encoder: CharEncoder, n_fft: int | None = None) -> Batch:
    """Turn samples into a padded :class:`Batch` (spectrograms and encoded transcripts).

    Args:
        samples: a non-empty sequence of samples (``.audio``, ``.transcript``, ``.sample_rate``).
        encoder: maps transcripts to ids; a character outside its alphabet is a ``ValueError``.
        n_fft: passed to :func:`compute_spectrogram` (``None``: 161 bins at 16 kHz).
    """
    if len(samples) == 0:
        raise ValueError("collate_batch needs at least one sample, got an empty list")
    specs, ids = [], []
    for i, s in enumerate(samples):
        sr = _check_sample_rate(s, getattr(s, "sample_rate", 16000))
        try:
            specs.append(compute_spectrogram(s.audio, sample_rate=sr, n_fft=n_fft))
            ids.append(encoder.encode(s.transcript))
        except ValueError as err:
            raise ValueError(f"sample {i} ({s.transcript!r}): {err}") from None
        if not ids[-1]:
            raise ValueError(f"sample {i} has an empty transcript; CTC needs at least one symbol")
    features, feature_lengths = pad_features(specs)
    target_lengths = torch.tensor([len(t) for t in ids], dtype=torch.long)
    targets = torch.zeros(len(ids), int(target_lengths.max()), dtype=torch.long)   # (B, S)
    for b, t in enumerate(ids):
        targets[b, : len(t)] = torch.tensor(t, dtype=torch.long)
    return Batch(features, feature_lengths, targets, target_lengths, [s.transcript for s in samples])


def pad_features(specs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(n_freq, T_b)`` spectrograms into ``(B, 1, n_freq, T_max)``, zero-padded, and their lengths."""
    feature_lengths = torch.tensor([sp.shape[1] for sp in specs], dtype=torch.long)
    features = torch.zeros(len(specs), 1, specs[0].shape[0], int(feature_lengths.max()))   # (B, 1, F, T)
    for b, sp in enumerate(specs):
        features[b, 0, :, : sp.shape[1]] = sp
    return features, feature_lengths


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A private generator for (seed, epoch): no global RNG is read or advanced."""
    g = torch.Generator()
    g.manual_seed(int(seed) * 1_000_003 + int(epoch))
    return g


def _sorted_by_length(dataset) -> list[int]:
    lengths = [_audio_length(s) for s in dataset]
    return sorted(range(len(lengths)), key=lambda i: (lengths[i], i))


def sortagrad_sampler(dataset, epoch: int, seed: int = 0) -> list[int]:
    """Order of utterances for one epoch.

    Epoch 0: indices sorted by audio length, ties by index.  Later epochs: a random
    permutation that depends only on ``(seed, epoch)``.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if epoch == 0:
        return _sorted_by_length(dataset)
    return torch.randperm(len(dataset), generator=epoch_generator(seed, epoch)).tolist()


def sortagrad_batches(dataset, batch_size: int, epoch: int, seed: int = 0) -> list[list[int]]:
    """Minibatches for one epoch, by the paper's rule.

    Utterances are bucketed by length (sorted, ties by index, cut into runs of
    ``batch_size``; the last may be shorter), so a minibatch holds utterances of similar
    length.  Epoch 0 visits the minibatches in increasing order of their longest
    utterance; later epochs visit the same minibatches in a random order that depends only
    on ``(seed, epoch)``.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    order = _sorted_by_length(dataset)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if epoch == 0:
        return batches
    perm = torch.randperm(len(batches), generator=epoch_generator(seed, epoch)).tolist()
    return [batches[i] for i in perm]
