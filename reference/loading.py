"""Training minibatches for :func:`~reference.training.fit`: in memory, or loaded by DataLoader workers.

``fit`` plans *global* minibatches (SortaGrad's length buckets, the same on every rank) and asks
a :class:`BatchLoader` for this rank's share of each, in the epoch's order:

* by default (``workers=0``, no ``feature_cache``) every share is collated once, up front, and kept
  in memory: spectrograms do not change between epochs, and a small corpus fits (the presets);
* with ``workers=N`` and/or ``feature_cache=DIR``, a ``torch.utils.data.DataLoader`` with ``N``
  worker processes builds each minibatch when it is needed, reading each utterance's spectrogram
  from ``DIR`` (computed and written there the first time, under a hash of its audio).  That is
  what a corpus too big for memory needs (LibriSpeech's 960 hours are about 220 GB of float32
  spectrograms): the workers read and pad the next minibatches while the model trains.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .data import Batch, collate_batch, pad_features
from .features import compute_spectrogram

__all__ = ["BatchLoader", "FeatureCache"]


class FeatureCache(torch.utils.data.Dataset):
    """``cache[i] -> (spectrogram (n_freq, T), symbol ids, transcript)`` of ``dataset[i]``.

    ``directory``: where spectrograms are kept, one ``.pt`` file per utterance named by a hash of its
    audio, sample rate and ``n_fft`` (so a changed utterance never reads a stale file); written
    atomically, so several workers or ranks may fill it at once.  ``None``: computed every time.
    """

    def __init__(self, dataset: Sequence, encoder, directory=None, n_fft: int | None = None):
        self.dataset, self.encoder, self.n_fft = dataset, encoder, n_fft
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.dataset)

    def _path(self, sample) -> Path:
        audio = sample.audio.detach().cpu().contiguous()
        h = hashlib.sha1(np.ascontiguousarray(audio.numpy()).tobytes())
        h.update(f"|{audio.dtype}|{getattr(sample, 'sample_rate', 16000)}|{self.n_fft}".encode())
        digest = h.hexdigest()
        return self.directory / digest[:2] / f"{digest}.pt"

    def __getitem__(self, i: int):
        sample = self.dataset[i]
        sr = getattr(sample, "sample_rate", 16000)
        spec = None
        if self.directory is not None:
            path = self._path(sample)
            if path.is_file():
                try:
                    spec = torch.load(path, weights_only=True)
                except Exception:  # noqa: BLE001 - a truncated file from a killed run: compute it again
                    spec = None
        if spec is None:
            spec = compute_spectrogram(sample.audio, sample_rate=sr, n_fft=self.n_fft)
            if self.directory is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                torch.save(spec, tmp)
                os.replace(tmp, path)
        ids = self.encoder.encode(sample.transcript)
        if not ids:
            raise ValueError(f"utterance {i} has an empty transcript; CTC needs at least one symbol")
        return spec, ids, sample.transcript


def collate_features(items) -> Batch:
    """A :class:`~reference.data.Batch` from :class:`FeatureCache` items (the same padding as ``collate_batch``)."""
    features, feature_lengths = pad_features([spec for spec, _, _ in items])
    target_lengths = torch.tensor([len(ids) for _, ids, _ in items], dtype=torch.long)
    targets = torch.zeros(len(items), int(target_lengths.max()), dtype=torch.long)
    for b, (_, ids, _) in enumerate(items):
        targets[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return Batch(features, feature_lengths, targets, target_lengths, [t for _, _, t in items])


class BatchLoader:
    """This rank's share of each global minibatch, as collated :class:`~reference.data.Batch` es.

    Args:
        dataset, encoder, n_fft: as for :func:`~reference.training.make_batches`.
        shares: one list of utterance indices per global minibatch (this rank's share of it).
        collate: an implementation of the ``collate_batch`` contract (in-memory mode only).
        workers: DataLoader worker processes (0: minibatches are collated up front, in memory).
        feature_cache: folder of cached spectrograms (implies the DataLoader, with ``workers`` processes).
    """

    def __init__(self, dataset: Sequence, encoder, shares: list[list[int]], *, n_fft=None,
                 collate: Callable | None = None, workers: int = 0, feature_cache=None):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an int >= 0 (DataLoader worker processes), got {workers!r}")
        self.shares, self.workers = [list(s) for s in shares], workers
        self.streaming = workers > 0 or feature_cache is not None
        if self.streaming and collate is not None:
            raise ValueError("collate= works with minibatches collated in memory; with workers or a feature cache "
                             "the loader builds minibatches from cached spectrograms (leave collate=None)")
        if self.streaming:
            self.items = FeatureCache(dataset, encoder, feature_cache, n_fft)
            self.ready = None
        else:
            collate = collate or collate_batch
            self.ready = [collate([dataset[i] for i in s], encoder, n_fft=n_fft) for s in self.shares]

    def __len__(self) -> int:
        return len(self.shares)

    def batches(self, order: Sequence[int]):
        """The minibatches ``order[0], order[1], ...`` (positions in ``shares``), one at a time."""
        if not self.streaming:
            for i in order:
                yield self.ready[i]
            return
        loader = torch.utils.data.DataLoader(self.items, batch_sampler=[self.shares[i] for i in order],
                                             num_workers=self.workers, collate_fn=collate_features,
                                             prefetch_factor=4 if self.workers else None)
        yield from loader
