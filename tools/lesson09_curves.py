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

Closer to the paper's regime (longer sentences, SGD with Nesterov momentum as in DS2 section 6) with
other data and optimiser options; ``--jobs 2`` runs two trainings at a time, one thread each:

    python -m tools.lesson09_curves --words 2 8 --optimizer sgd --lr 0.03 --steps 800 --seeds 4 \
        --eval-every 50 --jobs 2 --threads 1 --out lessons/data/09_comparisons_long.json

``--extend FILE --seeds N`` adds the next N seeds to FILE's runs (the shipped long file: 4 + 4).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
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
MOMENTUM = 0.99   # --optimizer sgd: DS2's Nesterov momentum
OUT = ROOT / "lessons" / "data" / "09_comparisons.json"


def lesson_data(data: dict = DATA):
    """``(train_set, valid_set)``: the lesson's synthetic speech, held-out sentences by held-out voices."""
    kw = dict(min_words=data["min_words"], max_words=data["max_words"])
    return (R.generate_synthetic_dataset(data["n_train"], seed=data["train_seed"], **kw),
            R.generate_synthetic_dataset(data["n_valid"], seed=data["valid_seed"], **kw))


def train_durations(train_set) -> dict:
    """Seconds of the shortest, longest and average training utterance (SortaGrad's spread)."""
    seconds = [s.duration for s in train_set]
    return dict(min=round(min(seconds), 3), max=round(max(seconds), 3), mean=round(sum(seconds) / len(seconds), 3))


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


def run(config: dict, sortagrad: bool, seed: int, steps: int, eval_every: int, train_set, valid_set,
        train: dict = TRAIN) -> dict:
    """One training of ``config``: held-out loss, WER and CER every ``eval_every`` steps, the loss of every step.

    ``train``: ``batch_size``, ``lr``, ``anneal`` and optionally ``optimizer`` ("adam", the default, or
    "sgd": SGD with Nesterov momentum ``momentum``, DS2's optimiser)."""
    enc = R.CharEncoder()
    train = dict(train)
    kind, momentum = train.pop("optimizer", "adam"), train.pop("momentum", MOMENTUM)
    valid_batches = R.training.make_batches(valid_set, enc, 64)
    curve = dict(step=[], valid_loss=[], wer=[], cer=[])

    def record(hist, net):
        curve["step"].append(hist.step[-1])
        curve["valid_loss"].append(held_out_loss(net, valid_batches))
        curve["wer"].append(hist.eval_wer[-1])
        curve["cer"].append(hist.eval_cer[-1])

    torch.manual_seed(seed)
    model = R.DeepSpeech2(**config)
    optimizer = None
    if kind == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=train["lr"], momentum=momentum, nesterov=True)
    elif kind != "adam":
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {kind!r}")
    per_epoch = -(-len(train_set) // train["batch_size"])
    epochs = -(-steps // per_epoch)
    hist = R.fit(model, train_set, enc, valid_set=valid_set, epochs=epochs, seed=seed, sortagrad=sortagrad,
                 eval_every=eval_every, progress=False, on_eval=record, max_steps=steps, optimizer=optimizer,
                 **train)
    return dict(curve, loss=hist.loss, parameters=model.num_parameters(), seconds=hist.seconds[-1])


def _job(args: tuple) -> tuple[str, dict]:
    """One run (in a worker process with ``--jobs``): ``(variant name, its result)``."""
    name, cfg, sg, seed, steps, eval_every, data, train, threads = args
    torch.set_num_threads(threads)
    if isinstance(data, str):               # the parent's data, saved once for every worker
        if data not in _LOADED:
            _LOADED[data] = torch.load(data, weights_only=False)
        train_set, valid_set = _LOADED[data]
    else:
        train_set, valid_set = data
    return name, dict(seed=seed, **run(cfg, sg, seed, steps, eval_every, train_set, valid_set, train))


_LOADED: dict = {}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--threads", type=int, default=2, help="torch threads per training")
    p.add_argument("--jobs", type=int, default=1, help="trainings at a time, each in its own process")
    p.add_argument("--words", type=int, nargs=2, metavar=("MIN", "MAX"), default=None,
                   help=f"words per sentence (the lesson's: {DATA['min_words']} {DATA['max_words']})")
    p.add_argument("--n-train", type=int, default=None, help=f"training utterances (the lesson's: {DATA['n_train']})")
    p.add_argument("--n-valid", type=int, default=None, help=f"held-out utterances (the lesson's: {DATA['n_valid']})")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                   help="adam (the lesson's) or sgd: SGD with Nesterov momentum 0.99, DS2's optimiser")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (the lesson's: {TRAIN['lr']})")
    p.add_argument("--variants", nargs="+", default=None, help="a subset of the variants (default: all)")
    p.add_argument("--extend", metavar="FILE",
                   help="add --seeds more seeds to FILE's runs, with FILE's data, optimiser, steps and variants")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    if args.extend:
        return _extend(args, argv)
    data = dict(DATA)
    if args.words:
        data.update(min_words=args.words[0], max_words=args.words[1])
    if args.n_train:
        data.update(n_train=args.n_train)
    if args.n_valid:
        data.update(n_valid=args.n_valid)
    train = dict(TRAIN, lr=args.lr or TRAIN["lr"])
    if args.optimizer != "adam":
        train.update(optimizer=args.optimizer, momentum=MOMENTUM)
    chosen = variants()
    unknown = set(args.variants or ()) - set(chosen)
    if unknown:
        p.error(f"unknown variant(s) {sorted(unknown)}: choose from {list(chosen)}")
    if args.variants:
        chosen = {n: v for n, v in chosen.items() if n in args.variants}
    t0 = time.perf_counter()
    sets = lesson_data(data)
    results = _train_all(chosen, range(args.seeds), args.steps, args.eval_every, sets, train, args)
    out = dict(command=_command(argv), data=data, base=BASE, train=train, steps=args.steps, seeds=args.seeds,
               configs={n: dict(config=c, sortagrad=s) for n, (c, s) in chosen.items()},
               durations=train_durations(sets[0]), runs=results, torch=torch.__version__, threads=args.threads,
               jobs=args.jobs, wall_seconds=round(time.perf_counter() - t0, 1))
    return _write(out, args.out)


def _command(argv) -> str:
    return "python -m tools.lesson09_curves " + " ".join(argv if argv is not None else sys.argv[1:])


def _train_all(chosen: dict, seeds, steps: int, eval_every: int, sets, train: dict, args) -> dict:
    """``variant name -> [one result per seed]``: every (variant, seed) run, ``args.jobs`` at a time."""
    from tqdm.auto import tqdm

    results = {name: [] for name in chosen}
    with tempfile.TemporaryDirectory(prefix="lesson09-curves-") as tmp:
        if args.jobs > 1:
            torch.save(sets, Path(tmp) / "data.pt")
            sets = str(Path(tmp) / "data.pt")
        todo = [(name, cfg, sg, seed, steps, eval_every, sets, train, args.threads)
                for name, (cfg, sg) in chosen.items() for seed in seeds]
        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
                done = list(tqdm(pool.map(_job, todo), total=len(todo), desc="runs"))
        else:
            done = [_job(job) for job in tqdm(todo, desc="runs")]
    for name, result in done:           # in the order of `todo`: variants, then seeds
        results[name].append(result)
    return results


def _extend(args, argv) -> int:
    """``--extend FILE``: the same runs with the next ``--seeds`` seeds, merged into FILE's."""
    old = json.loads(Path(args.extend).read_text())
    chosen = {n: (spec["config"], spec["sortagrad"]) for n, spec in old["configs"].items()}
    eval_every = next(iter(old["runs"].values()))[0]["step"][0]     # the first evaluation's step
    t0 = time.perf_counter()
    sets = lesson_data(old["data"])
    new = _train_all(chosen, range(old["seeds"], old["seeds"] + args.seeds), old["steps"], eval_every, sets,
                     old["train"], args)
    out = dict(old, command=old["command"] + " && " + _command(argv), seeds=old["seeds"] + args.seeds,
               runs={n: old["runs"][n] + new[n] for n in old["runs"]},
               wall_seconds=round(old["wall_seconds"] + time.perf_counter() - t0, 1))
    return _write(out, args.out)


def _write(out: dict, path) -> int:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, separators=(",", ":")))
    runs = sum(len(v) for v in out["runs"].values())
    print(f"wrote {path} ({runs} runs of {out['steps']} steps, {out['wall_seconds']:.0f} s of runs in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
