"""Train Deep Speech 2: ``python -m reference.train [--preset demo] [--seconds 60] [--out runs/demo]``.

Writes ``OUT/checkpoint.pt`` (config + weights + alphabet + optimizer + history) at every
evaluation and at the end, ``OUT/history.json`` and ``OUT/curves.png`` (loss and held-out
WER against training seconds).  ``--resume`` continues from ``OUT/checkpoint.pt``.

On a GPU: ``--device cuda`` (``auto`` picks one when there is one) and ``--amp`` for mixed
precision.  On several GPUs or CPU processes, start it with torchrun; each process trains on its
share of every minibatch (DistributedDataParallel, BatchNorm synchronised), rank 0 alone writes:

    torchrun --standalone --nproc_per_node 8 -m reference.train --preset espeak --device cuda --amp

Presets (``--preset``):

* ``demo`` — synthetic speech (``reference.synthetic``), 1-2 words per utterance, held-out
  utterances from other sentences *and* other speakers; a small DS2 (1 conv, 3 BiGRU x 128).
* ``espeak`` — eSpeak NG speech (``reference.corpus``), 1-6 words, noise and speed
  augmentation, held-out sentences and held-out voices (the capstone; issue 4).

Your recordings (``reference.datasets``): ``--data PATH`` trains on a LibriSpeech folder, a CSV/TSV,
NeMo or deepspeech.pytorch manifest or a Kaldi data folder instead of the preset's data (the preset
still gives the model and recipe); ``--valid-data PATH`` is the held-out set (default: a seeded
10 % of ``--data``); ``--max-seconds S`` skips longer clips.  ``--init CHECKPOINT`` starts from a
checkpoint's config and weights (fine-tuning; a float16 export such as ``models/espeak-ds2.pt``
is loaded as float32)::

    python -m reference.train --init models/espeak-ds2.pt --data data/asterisk/train.jsonl --max-seconds 20
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .devices import DEVICES, Amp
from .model import DeepSpeech2, DeepSpeech2Config
from .text import OUTPUTS, CharEncoder, make_encoder
from .training import History, fit

PRESETS = {
    "demo": dict(data="synthetic", n_train=2000, n_valid=200, min_words=1, max_words=2, seconds=60.0, epochs=100,
                 batch_size=16, lr=3e-3, anneal=0.1, eval_every=50,
                 model=dict(n_conv=1, conv_channels=(16,), conv_time_stride=3, n_rnn=3, rnn_hidden=128)),
    "espeak": dict(data="espeak", n_train=12000, n_valid=400, min_words=1, max_words=6, seconds=300.0, epochs=100,
                   batch_size=32, lr=4e-3, anneal=0.1, eval_every=200,
                   model=dict(n_conv=1, conv_channels=(8,), conv_time_stride=3, n_rnn=3, rnn_hidden=160)),
}


def recipe_augment(recipe: dict):
    """The recipe's feature augmentation, or None: ``recipe['augment']`` holds the arguments of
    :class:`~reference.augment.SpecAugment` (``{}``: its defaults); absent or None: no augmentation."""
    if recipe.get("augment") is None:
        return None
    from .augment import SpecAugment
    return SpecAugment(**recipe["augment"])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reference.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="data and model recipe")
    p.add_argument("--out", default=None, help="output folder (default runs/<preset>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--seconds", type=float, help="training-time budget (evaluation excluded; 0: none)")
    p.add_argument("--epochs", type=int, help="maximum epochs")
    p.add_argument("--steps", type=int, help="stop after this many training steps (the same run on every machine)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--anneal", type=float, help="final learning rate as a fraction of --lr (linear decay over the budget)")
    p.add_argument("--eval-every", type=int, help="steps between held-out evaluations")
    p.add_argument("--n-train", type=int, help="training utterances")
    p.add_argument("--n-valid", type=int, help="held-out utterances")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    p.add_argument("--target-wer", type=float, help="stop once held-out WER is at or below this")
    p.add_argument("--no-sortagrad", action="store_true", help="shuffle epoch 0 too (ablation)")
    p.add_argument("--spec-augment", action="store_true",
                   help="mask frequency bands and time spans of each training batch (reference.augment.SpecAugment)")
    p.add_argument("--cache", default="data_cache", help="folder for the eSpeak corpus cache")
    d = p.add_argument_group("your recordings and fine-tuning (reference.datasets)")
    d.add_argument("--data", help="'synthetic', 'espeak', or a LibriSpeech folder, CSV/TSV or NeMo (.jsonl) "
                                  "manifest or Kaldi data folder, instead of the preset's data")
    d.add_argument("--valid-data", help="held-out recordings, any --data layout; none: a seeded 10 %% of --data")
    d.add_argument("--max-seconds", type=float, help="skip recordings longer than this")
    d.add_argument("--speed-perturb", type=float, nargs="+", metavar="F",
                   help="add a copy of every training recording at each of these speeds (e.g. 0.9 1.1)")
    d.add_argument("--init", help="start from this checkpoint's config and weights (fine-tuning); "
                                  "the model options below may not be given with it")
    m = p.add_argument_group("model (overrides the preset)")
    m.add_argument("--outputs", choices=OUTPUTS, help="output tokens: chars (29: letters, space, apostrophe; the "
                   "preset's) or bigram (758: DS2 section 3.6's non-overlapping bigrams; pair it with a larger "
                   "--conv-time-stride, e.g. 4 or 6)")
    m.add_argument("--n-conv", type=int)
    m.add_argument("--conv-channels", type=int, nargs="+")
    m.add_argument("--conv-time-stride", type=int, help="time stride of the first conv (frames per output step)")
    m.add_argument("--n-rnn", type=int)
    m.add_argument("--rnn-hidden", type=int)
    m.add_argument("--rnn-type", choices=["gru", "ds2gru", "rnn"])
    m.add_argument("--unidirectional", action="store_true", help="forward-only recurrences (streaming)")
    m.add_argument("--lookahead", type=int, help="row-convolution future frames (unidirectional only)")
    m.add_argument("--batch-norm", choices=["wx", "input", "none"])
    m.add_argument("--bn-include-padding", action="store_true", help="count padding in BN statistics (ablation)")
    m.add_argument("--merge", choices=["sum", "concat"])
    g = p.add_argument_group("devices and scale (docs/scaling.md)")
    g.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICES)} or cuda:N; auto: a GPU if there is one. "
                   "Under torchrun each rank takes GPU LOCAL_RANK (NCCL), or the CPU (gloo)")
    g.add_argument("--amp", action="store_true", help="mixed precision: bfloat16 where the device has it, else float16 "
                   "with loss scaling; the CTC loss stays in float32")
    g.add_argument("--workers", type=int, default=0, help="DataLoader worker processes building the training "
                   "minibatches (0: collate them all once, in memory)")
    g.add_argument("--feature-cache", default=None, help="folder of spectrograms cached on disk (loaded by the "
                   "DataLoader; for corpora too big for memory)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def load_data(recipe: dict, seed: int, cache: str, progress: bool = True, config=None):
    """``(train, valid, extra_tests)`` for a recipe.

    ``recipe['data']`` other than ``synthetic`` / ``espeak`` is a path: :func:`load_recordings`
    (``config``, the model's :class:`~reference.model.DeepSpeech2Config`, skips clips too short for it).
    """
    if recipe["data"] not in ("synthetic", "espeak"):
        return load_recordings(recipe, seed, progress, config)
    if recipe["data"] == "synthetic":
        from .synthetic import generate_synthetic_dataset
        kw = dict(min_words=recipe["min_words"], max_words=recipe["max_words"])
        train = generate_synthetic_dataset(recipe["n_train"], seed=seed * 2 + 1, **kw)
        valid = generate_synthetic_dataset(recipe["n_valid"], seed=seed * 2 + 2, **kw)   # other sentences, other speakers
        return train, valid, {}
    from .corpus import build_corpus
    splits = build_corpus(cache, n_train=recipe["n_train"], n_test=recipe["n_valid"], seed=seed, progress=progress)
    return splits["train"], splits["test_sentences"], {k: v for k, v in splits.items() if k not in ("train", "test_sentences")}


def load_recordings(recipe: dict, seed: int, progress: bool = True, config=None):
    """``(train, valid, {})`` from ``recipe['data']`` and ``recipe.get('valid_data')`` (paths in a
    :mod:`reference.datasets` layout), clips longer than ``recipe.get('max_seconds')`` or too short
    for ``config`` skipped; without ``valid_data``, a seeded 10 % of the clips (at least one) is held out."""
    from .datasets import load_dataset, model_output_frames

    kw = dict(max_seconds=recipe.get("max_seconds"), progress=progress,
              output_frames=model_output_frames(config) if config is not None else None)
    data = load_dataset(recipe["data"], **kw)
    say = print if distributed.is_main() else (lambda *a, **k: None)      # rank 0 alone logs
    say(f"data: {data.report.summary()}")
    if recipe.get("valid_data"):
        valid = load_dataset(recipe["valid_data"], **kw)
        say(f"held-out: {valid.report.summary()}")
        train = list(data)
    else:
        if len(data) < 2:
            raise ValueError(f"{recipe['data']} has {len(data)} usable clip(s): too few to hold some out; "
                             "give --valid-data")
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
        n_valid = max(1, round(0.1 * len(data)))
        valid, train = [data[i] for i in sorted(order[:n_valid])], [data[i] for i in sorted(order[n_valid:])]
    if not train or not valid:
        raise ValueError(f"no usable clips left to {'train on' if not train else 'hold out'} (see the summary above)")
    return train, valid, {}


def plot_history(hist: History, path: Path, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(hist.seconds, hist.loss, lw=0.8)
    a.set(xlabel="training seconds", ylabel="CTC loss (per symbol)", yscale="log", title="training loss")
    b.plot(hist.eval_seconds, [100 * w for w in hist.eval_wer], "o-", label="WER")
    b.plot(hist.eval_seconds, [100 * c for c in hist.eval_cer], "s--", label="CER")
    b.set(xlabel="training seconds", ylabel="%", title="held-out error", ylim=(0, 100))
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


_MODEL_OPTIONS = ("outputs", "n_conv", "conv_channels", "conv_time_stride", "n_rnn", "rnn_hidden", "rnn_type", "unidirectional",
                  "lookahead", "batch_norm", "bn_include_padding", "merge")


def model_config(args, recipe: dict, ckpt_path: Path, encoder: CharEncoder):
    """``(checkpoint state or None, DeepSpeech2Config)``: from ``OUT/checkpoint.pt`` (``--resume``),
    from ``--init`` (which also records its config as ``recipe['model']``), else from the recipe.
    ``encoder`` is the recipe's (its ``vocab_size`` sizes a new model); a checkpoint's config names its own."""
    if args.resume and args.init:
        raise ValueError("--resume continues OUT/checkpoint.pt, --init starts a new run from a checkpoint: give one")
    if not (args.resume or args.init):
        return None, DeepSpeech2Config(n_freq=161, vocab_size=encoder.vocab_size, **recipe["model"])
    given = [f"--{k.replace('_', '-')}" for k in _MODEL_OPTIONS if getattr(args, k) not in (None, False)]
    if args.init and given:
        raise ValueError(f"--init takes the model from {args.init}; drop {' '.join(given)}")
    source = ckpt_path if args.resume else args.init
    state = load_checkpoint(source)
    config = DeepSpeech2Config.from_dict(state["config"])
    if args.resume and args.outputs and args.outputs != config.outputs:
        raise ValueError(f"--outputs {args.outputs}: {source} has {config.outputs} outputs; drop --outputs to resume it")
    encoder = make_encoder(config.outputs, encoder.language)     # the checkpoint's outputs say which encoder
    if list(state["alphabet"]) != list(encoder.symbols):
        raise ValueError(f"{source}: its alphabet is not the {encoder.language} {config.outputs} one")
    if args.init:
        recipe["model"] = {k: v for k, v in config.to_dict().items() if k not in ("n_freq", "vocab_size", "extra")}
    return state, config


def limit_heap_fragmentation() -> bool:
    """Ask glibc to give every allocation of 64 KiB or more its own mapping, returned to the system on free.

    Minibatches of varying length (SortaGrad grows them through epoch 0) leave glibc's heap full of
    freed blocks of the wrong sizes when its mmap threshold adapts upwards: on ``data/voices`` the
    training process grew from 6.9 to 16.6 GB in 1,500 steps and was killed for memory; with the
    threshold fixed at 64 KiB and two malloc arenas (and no loader worker) it stayed at 6.3 GB.  A
    no-op (False) where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 64 * 1024)) and bool(libc.mallopt(-8, 2))   # M_MMAP_THRESHOLD, M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    command = "python -m reference.train " + " ".join(sys.argv[1:] if argv is None else argv)
    limit_heap_fragmentation()
    try:
        device = distributed.init_from_env(args.device)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return _train(args, device, command)
    finally:
        distributed.cleanup()


def _train(args, device, command: str) -> int:
    main_rank = distributed.is_main()            # rank 0 alone logs, shows progress and writes files
    say = print if main_rank else (lambda *a, **k: None)
    recipe = dict(PRESETS[args.preset])
    recipe["model"] = dict(recipe["model"])
    for key in ("seconds", "epochs", "batch_size", "lr", "anneal", "eval_every", "n_train", "n_valid"):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    for key in ("outputs", "n_conv", "conv_time_stride", "n_rnn", "rnn_hidden", "rnn_type", "lookahead", "batch_norm", "merge"):
        if getattr(args, key) is not None:
            recipe["model"][key] = getattr(args, key)
    if args.conv_channels:
        recipe["model"]["conv_channels"] = tuple(args.conv_channels)
    if args.unidirectional:
        recipe["model"]["bidirectional"] = False
    if args.bn_include_padding:
        recipe["model"]["bn_include_padding"] = True
    if args.spec_augment:
        recipe["augment"] = recipe.get("augment") or {}
    for key in ("data", "valid_data", "max_seconds", "init", "speed_perturb", "steps"):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.workers < 0:
        print(f"error: --workers must be >= 0, got {args.workers}", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/{args.preset}")
    ckpt_path = out / "checkpoint.pt"
    encoder = make_encoder(recipe["model"].get("outputs", "chars"), "english")

    try:
        state, config = model_config(args, recipe, ckpt_path, encoder)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    encoder = make_encoder(config.outputs, "english")      # --resume / --init: the checkpoint's outputs
    t0 = time.perf_counter()
    if not main_rank:
        distributed.barrier()                    # rank 0 builds any corpus cache first, the others then read it
    try:
        train, valid, extra = load_data(recipe, args.seed, args.cache, progress=not args.quiet and main_rank,
                                        config=config)
        error = None
    except Exception as err:  # the corpus explains itself (e.g. eSpeak missing); no traceback
        error = err
    if main_rank:
        distributed.barrier()
    if error is not None:
        print(f"error: could not load the {recipe['data']} data: {error}", file=sys.stderr)
        return 2
    if recipe.get("speed_perturb"):
        from .augment import speed_perturb
        n = len(train)
        train = speed_perturb(train, recipe["speed_perturb"])
        say(f"speed perturbation x{recipe['speed_perturb']}: {n} -> {len(train)} training clips")
    say(f"data: {len(train)} train / {len(valid)} held-out utterances ({recipe['data']}) in {time.perf_counter() - t0:.1f} s")

    torch.manual_seed(args.seed)
    history, start = None, (0, 0)
    model = DeepSpeech2(config=config)
    if args.resume:
        model.load_state_dict(state["state_dict"])
        history = History.from_dict(state["history"])
        start = history.position
        say(f"resuming from {ckpt_path} at step {state['step']} (epoch {start[0]}, minibatch {start[1]})")
    elif args.init:
        model.load_state_dict(state["state_dict"])          # float16 weights are copied into float32 parameters
        say(f"fine-tuning from {args.init} (step {state.get('step', 0)} of its own training)")
    model.to(device)                             # before the optimizer state is loaded onto the parameters
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    if args.resume and state.get("optimizer"):
        optimizer.load_state_dict(state["optimizer"])
        for g in optimizer.param_groups:      # fit anneals from the recipe's rate, by elapsed progress
            g["lr"] = recipe["lr"]
    amp = Amp(device) if args.amp else None
    say(f"model: {model.num_parameters():,} parameters, config {json.dumps(asdict(config))}")
    say(f"device: {device}{f', {amp}' if amp else ''}; processes: {distributed.world_size()}; "
        f"threads: {torch.get_num_threads()}")

    run_info = {"recipe": recipe, "command": command}
    if args.resume or args.init:    # where the weights came from: the commands before this one, oldest first
        earlier = state.get("extra") or {}
        run_info["lineage"] = list(earlier.get("lineage", []))
        if args.init and earlier.get("command"):
            run_info["lineage"].append(earlier["command"])

    def checkpoint(hist, m):
        save_checkpoint(ckpt_path, m, encoder, optimizer, epoch=hist.position[0],
                        step=hist.step[-1] if hist.step else 0, history=hist.to_dict(), extra=run_info)

    hist = fit(model, train, encoder, valid_set=valid, epochs=recipe["epochs"], batch_size=recipe["batch_size"],
               seconds=recipe["seconds"], eval_every=recipe["eval_every"], seed=args.seed, optimizer=optimizer,
               sortagrad=not args.no_sortagrad, progress=not args.quiet, on_eval=checkpoint,
               target_wer=args.target_wer, history=history, start_epoch=start[0], start_index=start[1],
               anneal=recipe["anneal"], augment=recipe_augment(recipe), max_steps=recipe.get("steps"),
               device=device, amp=amp, workers=args.workers, feature_cache=args.feature_cache)
    if not main_rank:
        return 0
    checkpoint(hist, model)
    (out / "history.json").write_text(json.dumps(hist.to_dict()))
    plot_history(hist, out / "curves.png", f"{args.preset}: {model.num_parameters():,} parameters")
    print(f"trained {hist.step[-1] if hist.step else 0} steps in {hist.seconds[-1] if hist.seconds else 0:.1f} s "
          f"({hist.skipped} skipped); held-out WER {100 * hist.eval_wer[-1]:.2f} %, CER {100 * hist.eval_cer[-1]:.2f} %")
    if extra:
        from .training import make_batches, transcribe_batches
        from .metrics import word_error_rate
        for name, split in extra.items():
            refs, hyps = transcribe_batches(model, make_batches(split, encoder, 64), encoder)
            print(f"  {name}: WER {100 * word_error_rate(refs, hyps):.2f} % on {len(split)} utterances")
    print(f"wrote {ckpt_path}, {out / 'history.json'}, {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
