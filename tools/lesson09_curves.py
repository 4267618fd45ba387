"""The curves behind lesson 09's comparisons: DS2's depth, BatchNorm and SortaGrad experiments, longer.

Lesson 09 re-runs three of the paper's comparisons on its synthetic speech (DS2 Table 1: depth vs
width at a fixed parameter count, and BatchNorm; Table 2: SortaGrad with and without BatchNorm).
A live run of a few seconds cannot separate those effects from the noise of one seed, so this
script trains every variant with several seeds for longer and writes the curves (held-out loss,
WER and CER every ``--eval-every`` steps, the training loss of every step) to a JSON file that the
lesson plots beside its own short live run:

    python -m tools.lesson09_curves                 # writes lessons/data/09_comparisons.json

Every run uses the reference's fast pieces (the same maths as the graded ones), the lesson's data
(the same seeds) and the same minibatches; only the named difference and the seed change.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import reference as R  # noqa: E402

# The lesson's setup (lessons/09_training.ipynb imports these, so both use the same numbers).
DATA = dict(n_train=1000, n_valid=100, min_words=1, max_words=2, train_seed=1, valid_seed=2)
BASE = dict(n_freq=161, vocab_size=29, n_conv=1, conv_channels=(8,), conv_time_stride=3, n_rnn=3, rnn_hidden=64)
TRAIN = dict(batch_size=16, lr=3e-3, anneal=1.0)
OUT = ROOT / "lessons" / "data" / "09_comparisons.json"


def lesson_data():
    """``(train_set, valid_set)``: the lesson's synthetic speech, held-out sentences by held-out voices."""
    kw = dict(min_words=DATA["min_words"], max_words=DATA["max_words"])
    return (R.generate_synthetic_dataset(DATA["n_train"], seed=DATA["train_seed"], **kw),
            R.generate_synthetic_dataset(DATA["n_valid"], seed=DATA["valid_seed"], **kw))


def wide_hidden(base: dict = BASE) -> int:
    """Units of a 1-layer model with (about) the parameters of ``base``'s recurrent stack."""
    target = R.DeepSpeech2(**base).num_parameters()
    return min(range(32, 512, 2), key=lambda h: abs(R.DeepSpeech2(**{**base, "n_rnn": 1, "rnn_hidden": h})
                                                     .num_parameters() - target))


def variants(base: dict = BASE) -> dict[str, tuple[dict, bool]]:
    """``name -> (model config, sortagrad)``: the baseline and one difference each."""
    no_bn = {**base, "batch_norm": "none"}
    return {"baseline": (base, True),
            "shallow and wide": ({**base, "n_rnn": 1, "rnn_hidden": wide_hidden(base)}, True),
            "no BatchNorm": (no_bn, True),
            "no SortaGrad": (base, False),
            "no BatchNorm, no SortaGrad": (no_bn, False)}


@torch.no_grad()
def held_out_loss(model, batches) -> float:
    """Mean CTC loss per target symbol over the held-out batches, in eval mode (mode restored)."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    for b in batches:
        lp, ol = model(b.features, b.feature_lengths)
        total += float(F.ctc_loss(lp, b.targets, ol, b.target_lengths, reduction="mean", zero_infinity=True)) * len(b)
        n += len(b)
    model.train(was)
    return total / n


def run(config: dict, sortagrad: bool, seed: int, steps: int, eval_every: int, train_set, valid_set) -> dict:
    enc = R.CharEncoder()
    valid_batches = R.training.make_batches(valid_set, enc, 64)
    curve = dict(step=[], valid_loss=[], wer=[], cer=[])

    def record(hist, net):
        curve["step"].append(hist.step[-1])
        curve["valid_loss"].append(held_out_loss(net, valid_batches))
        curve["wer"].append(hist.eval_wer[-1])
        curve["cer"].append(hist.eval_cer[-1])

    torch.manual_seed(seed)
    model = R.DeepSpeech2(**config)
    per_epoch = -(-len(train_set) // TRAIN["batch_size"])
    epochs = -(-steps // per_epoch)
    hist = R.fit(model, train_set, enc, valid_set=valid_set, epochs=epochs, seed=seed, sortagrad=sortagrad,
                 eval_every=eval_every, progress=False, on_eval=record, max_steps=steps, **TRAIN)
    return dict(curve, loss=hist.loss, parameters=model.num_parameters(), seconds=hist.seconds[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from tqdm.auto import tqdm

    train_set, valid_set = lesson_data()
    todo = [(name, cfg, sg, seed) for name, (cfg, sg) in variants().items() for seed in range(args.seeds)]
    results = {name: [] for name in variants()}
    t0 = time.perf_counter()
    for name, cfg, sg, seed in tqdm(todo, desc="runs"):
        results[name].append(dict(seed=seed, **run(cfg, sg, seed, args.steps, args.eval_every, train_set, valid_set)))
    out = dict(command="python -m tools.lesson09_curves " + " ".join(argv if argv is not None else sys.argv[1:]),
               data=DATA, base=BASE, train=TRAIN, steps=args.steps, seeds=args.seeds,
               configs={n: dict(config=c, sortagrad=s) for n, (c, s) in variants().items()},
               runs=results, torch=torch.__version__, threads=args.threads,
               wall_seconds=round(time.perf_counter() - t0, 1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, separators=(",", ":")))
    print(f"wrote {args.out} ({len(todo)} runs of {args.steps} steps in {out['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
