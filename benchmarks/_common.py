"""Shared by the benchmarks: threads, machine load, timing."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def header(name: str, threads: int) -> None:
    """Print what the figures depend on: threads, cores, load (SPEECH-NOTES: a busy machine halves speed)."""
    import torch

    torch.set_num_threads(threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cores = os.cpu_count()
    print(f"# {name}")
    print(f"torch {torch.__version__}, {threads} thread(s), {cores} cores, load average {load:.2f}")
    if load > 0.5 * (cores or 1):
        print(f"WARNING: the machine is busy (load {load:.2f} on {cores} cores): figures will be slower than on an idle machine")


def timeit(fn, repeat: int = 10, warmup: int = 2) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def wer_interval(refs, hyps, level: float = 0.95, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A bootstrap interval of the corpus WER (word errors over reference words) of ``hyps`` against ``refs``.

    The utterances are resampled with replacement, each keeping its own errors and words together, ``reps``
    times; the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resamples' WER.
    It says how far another draw of as many sentences could move the figure (a split of 400 sentences
    cannot tell 3.0 % from 3.6 %), not how good the model is.
    """
    import numpy as np

    from reference.metrics import word_errors

    if len(refs) != len(hyps) or not refs:
        raise ValueError(f"need as many hypotheses as references, at least one: got {len(refs)} and {len(hyps)}")
    errors, words = np.array(word_errors(refs, hyps), dtype=np.float64).T
    if words.sum() == 0:
        raise ValueError("the references have no words")
    pick = np.random.default_rng(seed).integers(0, len(refs), size=(reps, len(refs)))
    totals = words[pick].sum(axis=1)
    rates = errors[pick].sum(axis=1) / np.maximum(totals, 1.0)     # a resample of empty references only: 0 of 0
    lo, hi = np.quantile(rates, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
