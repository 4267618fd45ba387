"""The paper-faithful recurrent layer vs nn.GRU at the same sizes, time per training step.

Ours: h_t = GRU(BN(W x_t), h_{t-1}), bidirectional, summed, sequence-wise BN over valid
frames, no packing; fused = torch's native GRU kernel on the normalised projection, loop =
the readable Python unroll.  Baseline: nn.GRU(bidirectional=True) on packed sequences
(no BatchNorm).  Target (issue 2): fused <= 2x nn.GRU.
    python benchmarks/bench_rnn.py [--threads 2]
"""
import argparse

from _common import header, timeit

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from reference.layers import RecurrentLayer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    header("bidirectional recurrent layer, forward + backward", args.threads)
    print(f"{'T':>4} {'B':>3} {'I':>5} {'H':>4} {'nn.GRU ms':>10} {'fused ms':>9} {'loop ms':>8} {'fused/nn':>9} {'loop/nn':>8}")
    for T, B, I, H in [(50, 16, 656, 128), (100, 16, 656, 128), (100, 32, 1312, 256), (200, 16, 656, 128)]:
        torch.manual_seed(0)
        x = torch.randn(T, B, I, requires_grad=True)
        lengths = torch.randint(T // 2, T + 1, (B,))
        lengths[0] = T
        gru = nn.GRU(I, H, bidirectional=True)
        fused, loop = RecurrentLayer(I, H, fused=True), RecurrentLayer(I, H, fused=False)

        def base():
            out, _ = gru(pack_padded_sequence(x, lengths, enforce_sorted=False))
            out, _ = pad_packed_sequence(out, total_length=T)
            (out[..., :H] + out[..., H:]).sum().backward()

        t_base = timeit(base, repeat=5)
        t_fused = timeit(lambda: fused(x, lengths).sum().backward(), repeat=5)
        t_loop = timeit(lambda: loop(x, lengths).sum().backward(), repeat=3, warmup=1)
        print(f"{T:>4} {B:>3} {I:>5} {H:>4} {1000 * t_base:>10.1f} {1000 * t_fused:>9.1f} {1000 * t_loop:>8.1f} "
              f"{t_fused / t_base:>9.2f} {t_loop / t_base:>8.2f}")


if __name__ == "__main__":
    main()
