"""ex08 — SortaGrad and collating (9 points)."""
from __future__ import annotations

import pytest
import torch

from autograder.sandbox import fixtures as FX
from autograder.checks import mistakes as M
from autograder.checks._inputs import R
from autograder.checks._support import check_tensor, check_value, fail, fx

pytestmark = pytest.mark.exercise("ex08")
ENC = FX.ToyEncoder()


def _lengths(ds):
    return [s.audio.numel() for s in ds]


def _contract_order(ds, epoch, seed=0):
    """The contract's order, computed from its text (not from the reference)."""
    L = _lengths(ds)
    if epoch == 0:
        return sorted(range(len(L)), key=lambda i: (L[i], i))
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(len(L), generator=g).tolist()


def _contract_batches(ds, bs, epoch, seed=0):
    order = _contract_order(ds, 0)
    chunks = [order[i: i + bs] for i in range(0, len(order), bs)]
    if epoch == 0:
        return chunks
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return [chunks[i] for i in torch.randperm(len(chunks), generator=g).tolist()]


def _sampler_hints(ds, epoch, seed):
    return M.hints("sortagrad_sampler", ds, epoch, seed)


@pytest.mark.points(2)
def test_sortagrad_sampler_epoch0(sub):
    """sortagrad_sampler: epoch 0 sorted by length, ties by index"""
    for seed, n in [(1, 12), (2, 7), (3, 1)]:
        ds = FX.make_dataset(seed, n)
        what = f"a dataset of {n} samples with lengths {_lengths(ds)}, epoch=0"
        check_value(sub.call("sortagrad_sampler", fx("dataset", seed, n), 0, _what=what, _rng=True),
                    _contract_order(ds, 0), fn="sortagrad_sampler", what=what, hints=_sampler_hints(ds, 0, 0))


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
    for epoch, seed in [(1, 5), (7, 3), (1, 0), (2, 0)]:
        what = f"a dataset of 12 samples, epoch={epoch}, seed={seed}"
        _no_global_rng(sub, "sortagrad_sampler", fx("dataset", 4, 12), epoch, seed, what=what,
                       expected=_contract_order(ds, epoch, seed), hints=_sampler_hints(ds, epoch, seed))


def _batches_hints(ds, bs, epoch, seed):
    return M.hints("sortagrad_batches", ds, bs, epoch, seed)


@pytest.mark.points(2)
def test_sortagrad_batches(sub):
    """sortagrad_batches: length buckets; epoch 0 in increasing length, later epochs shuffled"""
    ds = FX.make_dataset(6, 11)
    for bs, epoch, seed in [(3, 0, 0), (2, 2, 9), (3, 1, 0), (4, 2, 9), (1, 0, 0), (20, 1, 0)]:
        what = f"a dataset of 11 samples, batch_size={bs}, epoch={epoch}, seed={seed}"
        _no_global_rng(sub, "sortagrad_batches", fx("dataset", 6, 11), bs, epoch, seed, what=what,
                       expected=_contract_batches(ds, bs, epoch, seed), hints=_batches_hints(ds, bs, epoch, seed))


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
        mistakes = M.hints("collate_batch", ds, ENC, n_fft)
        for f in fields[:4]:
            hints = [(lambda c=c, f=f: c()[f], msg) for c, msg in mistakes]
            check_tensor(got[f], getattr(exp, f), fn="collate_batch", what=what, name=f"batch.{f}", rtol=2e-3,
                         atol=2e-3, hints=hints)
        check_value(got["transcripts"], list(exp.transcripts), fn="collate_batch", what=what,
                    name="batch.transcripts")
