"""Exercise 08 — SortaGrad and collating batches (lesson 08).

DS2 section 3.3: "In the first training epoch, we iterate through minibatches in the
training set in increasing order of the length of the longest utterance in the minibatch.
After the first epoch, training reverts back to a random order over minibatches."
Long utterances have large CTC costs, and early gradients are unstable; a length
curriculum in epoch 0 helps, and minibatches of similar lengths waste little padding.

You implement (lesson 08 builds the orders by hand for six utterances):

1. ``sortagrad_sampler``: the order of utterances for one epoch.
2. ``sortagrad_batches``: the minibatches for one epoch, by the paper's rule.
3. ``collate_batch``: samples -> one zero-padded :class:`Batch` of spectrograms and targets.

Randomness: every shuffle uses ``_epoch_generator(seed, epoch)`` (given), a private
``torch.Generator``, so the order depends only on ``(seed, epoch)`` and no global random
state is read or changed.

Grade your work (from the repository root)::

    make grade ONLY=ex08          # or: .venv/bin/python -m autograder --only ex08

Write your code only between the ``# YOUR CODE HERE`` lines of each stub.

FORBIDDEN: importing ``reference``, ``solutions`` or ``autograder``; ``random``/``numpy.random``/
``torch.manual_seed`` (the global random state) for the shuffles.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

__all__ = ["Batch", "sortagrad_sampler", "sortagrad_batches", "collate_batch", "compute_spectrogram"]


# ---------------------------------------------------------------------------------------
# Given: a batch container, a private random generator, and YOUR spectrogram of exercise 01
# ---------------------------------------------------------------------------------------
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


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A private generator for ``(seed, epoch)``: no global RNG is read or advanced."""
    g = torch.Generator()
    g.manual_seed(int(seed) * 1_000_003 + int(epoch))
    return g


def _audio_length(sample) -> int:
    """Number of samples of ``sample.audio`` (a ``ValueError`` if it is not a 1-D tensor)."""
    audio = getattr(sample, "audio", None)
    if not isinstance(audio, torch.Tensor) or audio.dim() != 1:
        raise ValueError(f"a sample needs a 1-D tensor .audio, got {type(sample).__name__} with audio={type(audio).__name__}")
    return int(audio.numel())


#: Earlier exercises' functions this file uses.  ``_earlier`` fills an empty entry from YOUR earlier
#: file beside this one.  The lessons fill it first with the implementation they chose (yours once it
#: matches the reference, else the reference's); the grader with the course's own, so that this
#: exercise is graded on its own (a mistake in an earlier exercise costs no points here).
EARLIER: dict = {"compute_spectrogram": None}


def _earlier(name: str, module: str):
    """Given: ``EARLIER[name]``, else ``name`` from your ``module``.py in this file's folder."""
    fn = EARLIER.get(name)
    if fn is None:
        import importlib.util
        import os
        import sys

        here = globals().get("__file__") or os.path.join(os.getcwd(), "notebook")   # a notebook has no __file__
        path = os.path.join(os.path.dirname(os.path.abspath(here)), module + ".py")
        mod = sys.modules.get(module)
        if mod is None or getattr(mod, "__file__", None) != path:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{name} is yours, from {module}.py, which is not in {os.path.dirname(path)}")
            spec = importlib.util.spec_from_file_location(module, path)
            mod = sys.modules[module] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        fn = EARLIER[name] = getattr(mod, name)
    return fn


def compute_spectrogram(audio: torch.Tensor, sample_rate: int = 16000, n_fft: int | None = None,
                        window_ms: float = 20.0, stride_ms: float = 10.0, eps: float = 1e-10,
                        normalize: bool = True) -> torch.Tensor:
    """Exercise 01's ``compute_spectrogram`` (``(n_fft // 2 + 1, n_frames)``): yours, from ``ex01_spectrogram.py``."""
    return _earlier("compute_spectrogram", "ex01_spectrogram")(audio, sample_rate, n_fft, window_ms, stride_ms, eps,
                                                               normalize)


# ---------------------------------------------------------------------------------------
# Graded
# ---------------------------------------------------------------------------------------
def sortagrad_sampler(dataset, epoch: int, seed: int = 0) -> list[int]:
    """The order in which to visit the utterances of ``dataset`` in one epoch.

    Args:
        dataset: a sequence of samples (each with a 1-D tensor ``.audio``).
        epoch: 0, 1, 2, ...
        seed: with ``epoch``, fixes the shuffle.

    Returns:
        order: a permutation of ``range(len(dataset))`` as a list of ints.
        Epoch 0: indices sorted by ``len(sample.audio)``, ties by index (shortest first).
        Epoch >= 1: ``torch.randperm(len(dataset), generator=_epoch_generator(seed, epoch)).tolist()``.

    Lesson 08, section 3.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch!r}")
    ### BEGIN SOLUTION
    if epoch == 0:
        lengths = [_audio_length(s) for s in dataset]
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    else:
        order = torch.randperm(len(dataset), generator=_epoch_generator(seed, epoch)).tolist()
    ### END SOLUTION
    return order


def sortagrad_batches(dataset, batch_size: int, epoch: int, seed: int = 0) -> list[list[int]]:
    """Minibatches (lists of indices) for one epoch, by the paper's rule.

    Args:
        dataset: a sequence of samples; batch_size: indices per minibatch;
        epoch, seed: as in :func:`sortagrad_sampler`.

    Returns:
        batches: a list of index lists.  The buckets are the epoch-0 order cut into consecutive
        runs of ``batch_size`` indices (the last may be shorter).  Epoch 0 returns them in that
        order (increasing longest utterance); epoch >= 1 returns the SAME buckets in the order
        ``torch.randperm(n_batches, generator=_epoch_generator(seed, epoch))``.

    Common mistake: shuffling the utterances (not the minibatches) in later epochs mixes short
    and long utterances in one minibatch, and pads them heavily (lesson 08, sections 3-4).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch!r}")
    ### BEGIN SOLUTION
    order = sortagrad_sampler(dataset, 0, seed)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if epoch > 0:
        perm = torch.randperm(len(batches), generator=_epoch_generator(seed, epoch)).tolist()
        batches = [batches[i] for i in perm]
    ### END SOLUTION
    return batches


def collate_batch(samples: Sequence, encoder, n_fft: int | None = None) -> Batch:
    """Turn samples into one zero-padded :class:`Batch`.

    Args:
        samples: ``B >= 1`` samples (``.audio``, ``.transcript``, ``.sample_rate``).
        encoder: has ``encode(text) -> list[int]`` (a ``ValueError`` for unknown characters).
        n_fft: passed to :func:`compute_spectrogram` (``None``: 161 bins at 16 kHz).

    Returns:
        A :class:`Batch` with ``features`` ``(B, 1, F, T_max)`` float, ``feature_lengths``
        ``(B,)`` int64, ``targets`` ``(B, S_max)`` int64, ``target_lengths`` ``(B,)`` int64
        and ``transcripts``, in the order of ``samples``.  Item ``b``'s features are
        ``compute_spectrogram(s.audio, sample_rate=s.sample_rate, n_fft=n_fft)`` ``(F, T_b)``
        followed by zeros; its targets are ``encoder.encode(s.transcript)`` followed by zeros.
        An empty transcript is a ``ValueError`` (CTC needs at least one symbol).

    Common mistake: padding before normalising each utterance changes its mean and std
    (lesson 08, section 1, shows by how much).
    """
    if len(samples) == 0:
        raise ValueError("collate_batch needs at least one sample, got an empty list")
    ### BEGIN SOLUTION
    specs, ids = [], []
    for i, s in enumerate(samples):
        try:
            specs.append(compute_spectrogram(s.audio, sample_rate=getattr(s, "sample_rate", 16000), n_fft=n_fft))
            ids.append(encoder.encode(s.transcript))
        except ValueError as err:
            raise ValueError(f"sample {i} ({s.transcript!r}): {err}") from None
        if not ids[-1]:
            raise ValueError(f"sample {i} has an empty transcript; CTC needs at least one symbol")
    n_freq = specs[0].shape[0]
    feature_lengths = torch.tensor([sp.shape[1] for sp in specs], dtype=torch.long)
    target_lengths = torch.tensor([len(t) for t in ids], dtype=torch.long)
    features = torch.zeros(len(specs), 1, n_freq, int(feature_lengths.max()))      # (B, 1, F, T)
    targets = torch.zeros(len(ids), int(target_lengths.max()), dtype=torch.long)   # (B, S)
    for b, (sp, t) in enumerate(zip(specs, ids)):
        features[b, 0, :, : sp.shape[1]] = sp
        targets[b, : len(t)] = torch.tensor(t, dtype=torch.long)
    batch = Batch(features, feature_lengths, targets, target_lengths, [s.transcript for s in samples])
    ### END SOLUTION
    return batch
