"""From-scratch CTC loss (alpha-beta) vs torch.nn.functional.ctc_loss, forward + backward.

Target (issue 2): <= 3x at B=32, T=200, U=40.
    python benchmarks/bench_ctc.py [--threads 1]
"""
import argparse

from _common import header, timeit

import torch
import torch.nn.functional as F

from reference.ctc import ctc_loss


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    header("CTC loss: reference.ctc_loss vs F.ctc_loss (forward + backward, float32)", args.threads)
    print(f"{'B':>4} {'T':>5} {'U':>4} {'ours ms':>9} {'torch ms':>9} {'ratio':>6}")
    for B, T, U in [(8, 100, 20), (32, 200, 40), (32, 400, 80)]:
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(T, B, 29, generator=g, requires_grad=True)
        targets = torch.randint(1, 29, (B, U), generator=g)
        il, tl = torch.full((B,), T), torch.randint(U // 2, U + 1, (B,), generator=g)

        def ours():
            ctc_loss(logits.log_softmax(-1), targets, il, tl).backward()

        def theirs():
            F.ctc_loss(logits.log_softmax(-1), targets, il, tl).backward()
        a, b = timeit(ours), timeit(theirs)
        print(f"{B:>4} {T:>5} {U:>4} {1000 * a:>9.1f} {1000 * b:>9.1f} {a / b:>6.2f}")


if __name__ == "__main__":
    main()
