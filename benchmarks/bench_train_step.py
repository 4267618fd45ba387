"""Milliseconds per training step of the capstone recipe, its FLOP rate against the machine's
sgemm peak, and what OpenMP's wait policy does to it.

Each measurement runs in a fresh process (the policy must be set before the OpenMP runtime
starts): ``train_step`` on minibatches of the ``espeak`` preset's corpus and model, a few
warm-up steps, then the median over ``--steps`` steps.  Each process also counts the FLOPs of
its timed steps (``torch.utils.flop_counter.FlopCounterMode`` on an untimed forward and backward
of the same minibatches: convolutions and matrix products) and measures the sgemm peak with the
same threads (a 1024 x 1024 matrix product, best of several, before and after the steps), so the
ratio ``GFLOP/s / peak`` compares like with like even on a shared machine.  The load average is
printed with each row.  Four settings:

* default policy (idle threads spin), alone and with a second identical process beside it;
* ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep), alone and two at once.

Spinning threads are fast on an idle machine and collapse when another process wants the same
cores; sleeping threads cost some speed alone and hold up under contention.  That is why the
lesson runner sets ``PASSIVE`` and the benchmarks do not.

    python benchmarks/bench_train_step.py [--steps 40] [--threads 2] [--quick]

``--quick``: the default policy, one process, only.  ``--profile``: each process also profiles up to ten steps
(torch's profiler) and prints where the time goes: the operators that do the FLOPs (matrix products and
convolutions), each other operator, and the *ceiling*, the step's FLOPs over the FLOP operators' time alone as a %
of the peak: what no removal of other work can beat; then, as a check free of the profiler's overhead per call,
the same steps timed without it and every product they made replayed alone (same shapes, same counts).  ``--clock cpu`` (with ``--threads 1``) times
steps and the sgemm peak by the thread's CPU time instead of the wall clock: on a machine shared
with busier processes the wall clock measures the waiting, CPU time the work.

The step trains the GRU recurrence with the compiled kernel (``reference/_gru_kernel.py``, opt-in
elsewhere: this bench turns it on unless ``DS2_GRU_KERNEL`` is set; built once before the children start,
~20 s); ``DS2_GRU_KERNEL=0`` in the environment measures the Python fast path, the course's default.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

from _common import ROOT, header


def sgemm_peak(repeat: int = 10, clock=time.perf_counter) -> float:
    """GFLOP/s of the best of ``repeat`` 1024 x 1024 float32 matrix products (torch's current threads)."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    best = float("inf")
    for _ in range(repeat):
        t0 = clock()
        a @ b
        best = min(best, clock() - t0)
    return 2 * 1024 ** 3 / best / 1e9


def step_flops(model, batch) -> int:
    """FLOPs of one training step's forward and backward on ``batch`` (FlopCounterMode), untimed; no update."""
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    with FlopCounterMode(display=False) as counter:
        log_probs, out_lengths = model(batch.features, batch.feature_lengths)
        F.ctc_loss(log_probs, batch.targets, out_lengths, batch.target_lengths, zero_infinity=True).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def measure(steps: int, threads: int, batch_size: int, clock_name: str = "wall", profile: bool = False) -> None:
    """Child: time ``train_step`` on the capstone recipe; prints ``ms_per_step utt_per_s gflop_per_s peak``."""
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
    clock = time.thread_time if clock_name == "cpu" else time.perf_counter
    peak = sgemm_peak(clock=clock)
    times, flops = [], []
    for i, batch in enumerate(batches):
        if i >= 5:                                    # the first 5 steps warm up
            flops.append(step_flops(model, batch))
        t0 = clock()
        train_step(model, batch, opt)
        if i >= 5:
            times.append(clock() - t0)
    peak = max(peak, sgemm_peak(clock=clock))
    ms = 1000 * statistics.median(times)
    if profile:                                       # the first ten timed minibatches again, their FLOPs counted
        k = min(len(flops), 10)
        where_the_time_goes(model, batches[5:5 + k], sum(flops[:k]), opt, peak, clock)
    print(f"{ms:.1f} {batch_size / ms * 1000:.1f} {sum(flops) / sum(times) / 1e9:.2f} {peak:.1f}")


#: the operators that do the step's FLOPs (what FlopCounterMode counts: matrix products and convolutions)
FLOP_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mkldnn_convolution",
            "aten::convolution_backward", "aten::_convolution", "aten::conv2d")


def where_the_time_goes(model, batches, flops: int, opt, peak: float, clock) -> None:
    """Child, ``--profile``: the steps again under torch's profiler; prints the time per step of the operators that
    do the FLOPs, of the compiled kernels' own loops and of the rest, and the ceiling: the step's FLOP rate if every
    other operator took no time (``flops``, the minibatches' count, over the FLOP operators' time alone), as a % of
    the sgemm peak.  Then the same products replayed alone without the profiler, against the same steps timed
    without it: the ceiling again, free of the profiler's overhead per call."""
    from torch.profiler import ProfilerActivity, profile

    from reference.training import train_step

    t0 = clock()
    for b in batches:
        train_step(model, b, opt)
    plain = (clock() - t0) / len(batches)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t0 = clock()
        for b in batches:
            train_step(model, b, opt)
        total = (clock() - t0) / len(batches)
    self_s = {}
    for e in prof.key_averages():
        self_s[e.key] = self_s.get(e.key, 0.0) + e.self_cpu_time_total / 1e6 / len(batches)
    flop_s = sum(v for k, v in self_s.items() if k in FLOP_OPS)
    rest = sorted(((v, k) for k, v in self_s.items() if k not in FLOP_OPS), reverse=True)
    print(f"# profile of {len(batches)} steps (profiler overhead included): {1000 * total:.0f} ms per step; "
          f"matrix products and convolutions {1000 * flop_s:.0f} ms ({100 * flop_s / total:.0f} %) at "
          f"{flops / len(batches) / flop_s / 1e9:.0f} GFLOP/s; the ceiling if the rest took no time: "
          f"{100 * flops / len(batches) / flop_s / 1e9 / peak:.0f} % of sgemm peak", file=sys.stderr)
    print("# the rest, ms per step: " + ", ".join(f"{k.replace('aten::', '')} {1000 * v:.1f}" for v, k in rest[:10]),
          file=sys.stderr, flush=True)
    alone = replay_products(prof, model, clock) / len(batches)
    rate = flops / len(batches) / alone / 1e9
    print(f"# without the profiler: these steps {1000 * plain:.0f} ms, {100 * flops / len(batches) / plain / 1e9 / peak:.0f} % "
          f"of sgemm peak; their products replayed alone (same shapes and counts) {1000 * alone:.0f} ms "
          f"({100 * alone / plain:.0f} %) at {rate:.0f} GFLOP/s: a ceiling of {100 * rate / peak:.0f} % of sgemm peak",
          file=sys.stderr, flush=True)


def replay_products(prof, model, clock) -> float:
    """Seconds that the profiled steps' matrix products and convolutions take when run again alone: every call
    the profiler recorded, with its shapes, on random data, timed by ``clock`` without the profiler's overhead
    per call (which the profiled ceiling includes).  A check of that ceiling, not a faster step."""
    import torch
    import torch.nn.functional as F

    calls = {}
    for e in prof.events():
        if e.name in ("aten::mm", "aten::addmm", "aten::mkldnn_convolution", "aten::convolution_backward"):
            key = (e.name, tuple(tuple(s) for s in e.input_shapes))
            calls[key] = calls.get(key, 0) + 1
    convs = {tuple(m.weight.shape): m for m in model.modules() if isinstance(m, torch.nn.Conv2d)}
    total = 0.0
    for (name, shapes), n in calls.items():
        t = [torch.randn(*shape) if shape else None for shape in shapes[:3]]
        if name == "aten::mm":
            call = lambda: torch.mm(t[0], t[1])  # noqa: E731
        elif name == "aten::addmm":
            call = lambda: torch.addmm(t[0], t[1], t[2])  # noqa: E731
        elif name == "aten::mkldnn_convolution":
            conv = convs[shapes[1]]
            call = lambda: F.conv2d(t[0], t[1], None, conv.stride, conv.padding)  # noqa: E731
        else:                                        # the weight's gradient only: the features need none
            conv = convs[shapes[2]]
            call = lambda: torch.ops.aten.convolution_backward(  # noqa: E731
                t[0], t[1], t[2], None, conv.stride, conv.padding, conv.dilation, False, (0, 0), conv.groups,
                (False, True, False))
        call()
        t0 = clock()
        for _ in range(n):
            call()
        total += clock() - t0
    return total


def run(env_extra: dict, copies: int, args) -> list[tuple[float, ...]]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(env_extra)
    cmd = [sys.executable, __file__, "--child", "--steps", str(args.steps), "--threads", str(args.threads),
           "--batch-size", str(args.batch_size), "--clock", args.clock] + (["--profile"] if args.profile else [])
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(copies)]
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"the measuring process failed (exit {p.returncode})")
        out.append(tuple(float(v) for v in stdout.split()[-4:]))    # ms, clips/s, GFLOP/s, sgemm peak
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--quick", action="store_true", help="the default policy, one process, only")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="time by the wall clock or (one thread only) by the thread's CPU time")
    p.add_argument("--profile", action="store_true",
                   help="also profile some steps: where the time goes, and the ceiling if only the FLOPs took time")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("DS2_GRU_KERNEL", "1")                   # the compiled kernel unless told otherwise
    if args.clock == "cpu" and args.threads != 1:
        p.error("--clock cpu needs --threads 1 (other threads' work would not be counted)")
    if args.child:
        measure(args.steps, args.threads, args.batch_size, args.clock, args.profile)
        return
    header(f"training step of the espeak preset, minibatches of {args.batch_size}, {args.clock} clock", args.threads)
    from reference.train import PRESETS, load_data
    load_data(PRESETS["espeak"], 0, str(ROOT / "data_cache"))     # build the corpus cache once, before the children
    from reference import _gru_kernel
    _gru_kernel.load()                                             # and the compiled GRU kernel (or say why not)
    print(f"{'OpenMP wait policy':>20} {'processes':>9} {'ms/step (each)':>16} {'clips/s (all)':>14} "
          f"{'GFLOP/s (each)':>16} {'sgemm peak':>10} {'of peak':>8} {'load':>5}")
    policies = (("default (spin)", {}), ("PASSIVE (sleep)", {"OMP_WAIT_POLICY": "PASSIVE"}))
    for name, env in policies[:1] if args.quick else policies:
        for copies in (1,) if args.quick else (1, 2):
            res = run(env, copies, args)
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            peak = max(r[3] for r in res)
            print(f"{name:>20} {copies:>9} {' / '.join(f'{r[0]:.0f}' for r in res):>16} "
                  f"{sum(r[1] for r in res):>14.0f} {' / '.join(f'{r[2]:.1f}' for r in res):>16} {peak:>10.0f} "
                  f"{' / '.join(f'{100 * r[2] / peak:.0f}' for r in res) + ' %':>8} {load:>5.1f}", flush=True)
    print("of peak: the step's GFLOP/s as a % of sgemm peak (a 1024 x 1024 matmul, same threads, same run); "
          "FLOPs by torch's FlopCounterMode")


if __name__ == "__main__":
    main()
