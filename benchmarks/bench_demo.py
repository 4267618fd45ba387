"""The demo: held-out WER against seconds of training, on synthetic speech.

Target (issue 2): <= 2 % WER on held-out synthetic utterances within 60 s on 2 CPU cores.
The recipe is ``reference.train``'s ``demo`` preset: 2,000 training utterances of 1-2
words, held-out utterances from other sentences *and* other speakers, 1 conv + 3 BiGRU x 128,
Adam 2e-3 annealed linearly over the budget, SortaGrad.  Evaluation time is not counted.

    python benchmarks/bench_demo.py [--seconds 60] [--seeds 1] [--threads 2]
"""
import argparse
import time

from _common import header

import torch

from reference import CharEncoder, DeepSpeech2
from reference.train import PRESETS, load_data
from reference.training import fit


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seeds", type=int, default=1, help="repeat with seeds 0..N-1")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=25)
    args = p.parse_args()
    header(f"demo: held-out WER vs training seconds (budget {args.seconds:.0f} s)", args.threads)
    recipe = PRESETS["demo"]
    enc = CharEncoder()
    finals = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        train, valid, _ = load_data(recipe, seed, "", progress=False)
        print(f"\nseed {seed}: {len(train)} train / {len(valid)} held-out utterances generated in {time.perf_counter() - t0:.1f} s")
        torch.manual_seed(seed)
        model = DeepSpeech2(n_freq=161, vocab_size=29, **recipe["model"])
        hist = fit(model, train, enc, valid_set=valid, epochs=recipe["epochs"], batch_size=recipe["batch_size"],
                   lr=recipe["lr"], anneal=recipe["anneal"], seconds=args.seconds, eval_every=args.eval_every, seed=seed,
                   progress=False)
        print(f"{'seconds':>8} {'step':>5} {'WER %':>6} {'CER %':>6}")
        for s, sec, w, c in zip(hist.eval_step, hist.eval_seconds, hist.eval_wer, hist.eval_cer):
            print(f"{sec:>8.1f} {s:>5} {100 * w:>6.2f} {100 * c:>6.2f}")
        first = next((sec for sec, w in zip(hist.eval_seconds, hist.eval_wer) if w <= 0.02), None)
        print(f"steps {hist.step[-1]}, {1000 * hist.seconds[-1] / hist.step[-1]:.0f} ms/step; "
              f"first <= 2 % WER at {'%.1f s' % first if first is not None else 'never'}; "
              f"final WER {100 * hist.eval_wer[-1]:.2f} %")
        finals.append(hist.eval_wer[-1])
    if len(finals) > 1:
        print(f"\nfinal WER over {len(finals)} seeds: " + ", ".join(f"{100 * w:.2f} %" for w in finals))


if __name__ == "__main__":
    main()
