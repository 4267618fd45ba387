"""ex08 — SortaGrad and collating (9 points)."""
from __future__ import annotations

import pytest
import torch

from autograder import fixtures as FX
from autograder.checks._inputs import R
from autograder.checks._support import check_tensor, check_value, fail, fx

pytestmark = pytest.mark.exercise("ex08")
ENC = FX.ToyEncoder()


def _lengths(ds):
    return [s.audio.numel() for s in ds]


def _sampler_hints(ds, epoch, seed):
    L = _lengths(ds)
    return [
        (lambda: sorted(range(len(L)), key=lambda i: (L[i], i)), "you sorted by length in a later epoch: SortaGrad "
                                                                 "sorts only in epoch 0, then shuffles"),
        (lambda: sorted(range(len(L)), key=lambda i: (-L[i], i)), "sort by INCREASING length"),
        (lambda: sorted(range(len(L)), key=lambda i: (L[i], -i)), "break ties by index (the smaller index first)"),
        (lambda: R.sortagrad_sampler(ds, 1, seed), "the permutation must change with the epoch: seed the generator "
                                                   "with seed * 1_000_003 + epoch"),
        (lambda: torch.randperm(len(L), generator=torch.Generator().manual_seed(seed)).tolist(),
         "seed the generator with seed * 1_000_003 + epoch, not the seed alone"),
        (lambda: torch.randperm(len(L), generator=torch.Generator().manual_seed(epoch)).tolist(),
         "seed the generator with seed * 1_000_003 + epoch, not the epoch alone"),
    ]


@pytest.mark.points(2)
def test_sortagrad_sampler_epoch0(sub):
    """sortagrad_sampler: epoch 0 sorted by length, ties by index"""
    for seed, n in [(1, 12), (2, 7), (3, 1)]:
        ds = FX.make_dataset(seed, n)
        what = f"a dataset of {n} samples with lengths {_lengths(ds)}, epoch=0"
        check_value(sub.call("sortagrad_sampler", fx("dataset", seed, n), 0, _what=what, _rng=True),
                    R.sortagrad_sampler(ds, 0), fn="sortagrad_sampler", what=what, hints=_sampler_hints(ds, 0, 0))


def _no_global_rng(sub, fn, *args, what, expected, hints):
    reply = sub.call_full(fn, *args, _what=what, _rng=True)
    check_value(reply.value, expected, fn=fn, what=what, hints=hints)
    touched = reply.raw.get("rng_touched") or []
    if touched:
        fail(f"{fn}({what}): your code changed the global {', '.join(touched)} random state; use a private "
             "torch.Generator seeded with seed * 1_000_003 + epoch")


@pytest.mark.points(2)
def test_sortagrad_sampler_later_epochs(sub):
    """sortagrad_sampler: later epochs shuffled, deterministic per (seed, epoch), no global RNG"""
    ds = FX.make_dataset(4, 12)
    for epoch, seed in [(1, 0), (2, 0), (1, 5), (7, 3)]:
        what = f"a dataset of 12 samples, epoch={epoch}, seed={seed}"
        _no_global_rng(sub, "sortagrad_sampler", fx("dataset", 4, 12), epoch, seed, what=what,
                       expected=R.sortagrad_sampler(ds, epoch, seed), hints=_sampler_hints(ds, epoch, seed))


def _batches_hints(ds, bs, epoch, seed):
    order = R.sortagrad_sampler(ds, 0)
    sorted_batches = [order[i: i + bs] for i in range(0, len(order), bs)]
    return [
        (sorted_batches, "you kept the epoch-0 order in a later epoch: after epoch 0, visit the minibatches in a "
                         "random order"),
        (lambda: [b for b in sorted_batches if len(b) == bs], "keep the last, shorter minibatch"),
        (lambda: [R.sortagrad_sampler(ds, epoch, seed)[i: i + bs] for i in range(0, len(ds), bs)],
         "shuffle the ORDER of the length-sorted minibatches, not the utterances (minibatches hold utterances of "
         "similar length)"),
        (sorted_batches[::-1], "epoch 0 visits minibatches in INCREASING length"),
    ]


@pytest.mark.points(2)
def test_sortagrad_batches(sub):
    """sortagrad_batches: length buckets; epoch 0 in increasing length, later epochs shuffled"""
    ds = FX.make_dataset(6, 11)
    for bs, epoch, seed in [(3, 0, 0), (3, 1, 0), (4, 2, 9), (1, 0, 0), (20, 1, 0)]:
        what = f"a dataset of 11 samples, batch_size={bs}, epoch={epoch}, seed={seed}"
        _no_global_rng(sub, "sortagrad_batches", fx("dataset", 6, 11), bs, epoch, seed, what=what,
                       expected=R.sortagrad_batches(ds, bs, epoch, seed), hints=_batches_hints(ds, bs, epoch, seed))


@pytest.mark.points(3)
def test_collate_batch(sub):
    """collate_batch: zero-padded features and targets, lengths, transcripts"""
    for seed, n, n_fft in [(8, 4, None), (9, 3, 64)]:
        ds = FX.make_dataset(seed, n, min_len=320, max_len=3000)
        what = f"{n} samples of lengths {_lengths(ds)}, n_fft={n_fft}"
        fields = ["features", "feature_lengths", "targets", "target_lengths", "transcripts"]
        got = sub.call("collate_batch", fx("dataset", seed, n, min_len=320, max_len=3000), fx("encoder"),
                       n_fft=n_fft, _what=what, _attrs=fields)
        exp = R.collate_batch(ds, ENC, n_fft=n_fft)
        hints = {"features": [(lambda: _padded_then_normalised(ds, n_fft), "normalise each utterance BEFORE "
                                                                            "padding, and pad with zeros")]}
        for f in fields[:4]:
            check_tensor(got[f], getattr(exp, f), fn="collate_batch", what=what, name=f"batch.{f}", rtol=2e-3,
                         atol=2e-3, hints=hints.get(f, ()))
        check_value(got["transcripts"], list(exp.transcripts), fn="collate_batch", what=what,
                    name="batch.transcripts")


def _padded_then_normalised(ds, n_fft):
    T = max(R.compute_spectrogram(s.audio, n_fft=n_fft).shape[1] for s in ds)
    feats = []
    for s in ds:
        raw = R.compute_spectrogram(s.audio, n_fft=n_fft, normalize=False)
        raw = torch.nn.functional.pad(raw, (0, T - raw.shape[1]))
        feats.append(((raw - raw.mean()) / raw.std()).unsqueeze(0))
    return torch.stack(feats)
