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
