"""Milliseconds per training step of the capstone recipe, and what OpenMP's wait policy does to it.

Each measurement runs in a fresh process (the policy must be set before the OpenMP runtime
starts): ``train_step`` on minibatches of the ``espeak`` preset's corpus and model, a few
warm-up steps, then the median over ``--steps`` steps.  Four settings:

* default policy (idle threads spin), alone and with a second identical process beside it;
* ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep), alone and two at once.

Spinning threads are fast on an idle machine and collapse when another process wants the same
cores; sleeping threads cost some speed alone and hold up under contention.  That is why the
lesson runner sets ``PASSIVE`` and the benchmarks do not.

    python benchmarks/bench_train_step.py [--steps 40] [--threads 2]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

from _common import ROOT, header


def measure(steps: int, threads: int, batch_size: int) -> None:
    """Child: time ``train_step`` on the capstone recipe; prints ``ms_per_step utt_per_s``."""
    import torch

    from reference import CharEncoder, DeepSpeech2
    from reference.train import PRESETS, load_data
    from reference.training import make_batches, train_step

    torch.set_num_threads(threads)
    recipe = PRESETS["espeak"]
    train, _, _ = load_data(recipe, 0, str(ROOT / "data_cache"), progress=False)
    enc = CharEncoder()
    # the corpus is in random order: its first clips are a fair sample of lengths; epoch 1 shuffles the buckets
    batches = make_batches(train[: batch_size * (steps + 5)], enc, batch_size, epoch=1)
    torch.manual_seed(0)
    model = DeepSpeech2(n_freq=161, vocab_size=enc.vocab_size, **recipe["model"])
    opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    times = []
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        train_step(model, batch, opt)
        if i >= 5:
            times.append(time.perf_counter() - t0)    # the first 5 steps warm up
    ms = 1000 * statistics.median(times)
    print(f"{ms:.1f} {batch_size / ms * 1000:.1f}")


def run(env_extra: dict, copies: int, args) -> list[tuple[float, float]]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(env_extra)
    cmd = [sys.executable, __file__, "--child", "--steps", str(args.steps), "--threads", str(args.threads),
           "--batch-size", str(args.batch_size)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(copies)]
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"the measuring process failed (exit {p.returncode})")
        ms, ups = stdout.split()[-2:]
        out.append((float(ms), float(ups)))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        measure(args.steps, args.threads, args.batch_size)
        return
    header(f"training step of the espeak preset, minibatches of {args.batch_size}", args.threads)
    from reference.train import PRESETS, load_data
    load_data(PRESETS["espeak"], 0, str(ROOT / "data_cache"))     # build the corpus cache once, before the children
    print(f"{'OpenMP wait policy':>20} {'processes':>9} {'ms/step (each)':>16} {'clips/s (all)':>14}")
    for name, env in (("default (spin)", {}), ("PASSIVE (sleep)", {"OMP_WAIT_POLICY": "PASSIVE"})):
        for copies in (1, 2):
            res = run(env, copies, args)
            print(f"{name:>20} {copies:>9} {' / '.join(f'{ms:.0f}' for ms, _ in res):>16} "
                  f"{sum(u for _, u in res):>14.0f}", flush=True)


if __name__ == "__main__":
    main()
