"""The capstone on eSpeak NG speech: WER at a fixed training budget, decoding, ablations, streaming.

Targets (issue 4), <= 5 minutes of training on 2 CPU cores: held-out sentences <= 5 % WER
greedy and <= 3 % with beam search + LM; held-out voices <= 15 % WER.

Every run trains the same way (``reference.train``'s ``espeak`` preset, same corpus, same
budget) and differs in one option: the ablations of DS2's choices, the streaming model,
SpecAugment masking on top of the corpus's noise and speed augmentation, and DS2 section 3.6's
non-overlapping bigram outputs (758 tokens, ``reference.text.BigramEncoder``) with a larger time
stride (4 or 6 spectrogram frames per output frame instead of 3), decoded greedily and with
beam search + LM over bigram tokens (the same word-level LM and objective).  The last 200
training utterances are held back as a dev set to tune the LM weight alpha and word bonus
beta (on a grid that grows while the best pair is on its upper edge); the LM is a
Kneser-Ney trigram of the training transcripts.

    python benchmarks/bench_capstone.py [--seconds 300] [--runs paper,bn-input,...|all] [--threads 2] [--save DIR]
    python benchmarks/bench_capstone.py --runs paper --load DIR     # evaluate saved runs again, no training
    python benchmarks/bench_capstone.py --runs paper --seconds 1200 --eval-every 400   # a longer budget, with its learning curve
    python benchmarks/bench_capstone.py --runs paper,bigram,bigram-s6 --seconds 300 --threads 1 --search fast   # chars vs bigrams
    python benchmarks/bench_capstone.py --runs spec-augment --init models/espeak-ds2.pt --lr 2e-3 --seed 1 --save DIR   # go on from a model

``--init`` starts the run from a checkpoint's weights (same architecture) instead of a fresh model: a
second stage, or members of a model soup (``python -m tools.export_model A OUT --average-with B``),
evaluated with ``--load``; ``--load DIR --record`` also writes what it measured (the results, alpha and
beta, and ``--oov-prefix-logp``, which ``reference.transcribe`` takes as defaults) into the checkpoint.
The beam search is DS2's plain search unless ``--oov-prefix-logp`` (pyctcdecode's -10) asks for the
ranking of spellings that begin no word of the LM (``reference.decoding``).

Every WER comes with a 95 % bootstrap interval over the utterances (``_common.wer_interval``): the 400 clips of
a split cannot tell 3.0 % from 3.6 % with the LM.  ``--fresh N`` also measures on N more new sentences by the
training voices and by the held-out voices (the corpus drawn with another seed, less the sentences the splits
hold), where the interval is narrower:

    python benchmarks/bench_capstone.py --runs spec-augment --load models/espeak-ds2.pt --fresh 2000   # ~1 minute

The 200 held-back clips are too few to choose between such models too: ``--dev-fresh N`` tunes alpha and beta on N
new sentences by the training voices (the corpus of yet another seed, sharing no sentence with any other set)
instead, and the dev WERs (printed either way, greedy even with ``--beam 0``) are what a choice between runs should
read, never the test splits.  ``--fresh-seed S`` draws the fresh sets from another seed: a check on sentences that
no choice has read.

    python benchmarks/bench_capstone.py --runs spec-augment --load CHECKPOINT --fresh 2000 --dev-fresh 2000 --beam 0   # choose (20 s)
    python benchmarks/bench_capstone.py --runs spec-augment --load models/espeak-ds2.pt --fresh 2000 --fresh-seed 12 --dev-fresh 2000

``--runs all`` takes about 45 minutes (7 runs).  Held-out voices are reported per voice too:
two are new speakers of training accents, two are accents no training voice has.
"""
import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

from _common import header, wer_interval

import torch

from reference import DeepSpeech2
from reference.augment import SpecAugment
from reference.decoding import prefix_beam_search, prefix_beam_search_fast
from reference.lm import NGramLM
from reference.metrics import char_error_rate, word_error_rate
from reference.text import make_encoder
from reference.train import PRESETS, load_data, recipe_augment
from reference.checkpoint import load_model, save_checkpoint, write_checkpoint
from reference.data import collate_batch, sortagrad_batches
from reference.training import History, fit

RUNS = {   # name -> (model overrides, fit overrides)
    "paper": ({}, {}),
    "bn-input": ({"batch_norm": "input"}, {}),           # BN on the layer input (a popular port)
    "bn-padding": ({"bn_include_padding": True}, {}),     # padding counted in BN statistics
    "concat": ({"merge": "concat"}, {}),                  # directions concatenated
    "no-sortagrad": ({}, {"sortagrad": False}),
    "streaming": ({"bidirectional": False, "lookahead": 8}, {}),   # forward GRUs + row conv (8 frames x 30 ms)
    "spec-augment": ({}, {"augment": SpecAugment()}),      # + SpecAugment masking (reference/augment.py)
    "bigram": ({"outputs": "bigram", "conv_time_stride": 4}, {}),     # DS2 section 3.6: bigram outputs, 40 ms frames
    "bigram-s6": ({"outputs": "bigram", "conv_time_stride": 6}, {}),  # ... and 60 ms frames (half the paper run's)
}


LM_RUNS = ("paper", "spec-augment", "bigram", "bigram-s6")   # runs also decoded with beam search + LM
ALPHAS, BETAS = [0.3, 0.5, 0.8, 1.2], [1.0, 3.0, 5.0, 7.0]      # the starting grid for alpha and beta


def tune_alpha_beta(posts, refs, enc, beam, lm, alphas=ALPHAS, betas=BETAS, rounds=3):
    """The (alpha, beta) of lowest dev WER on a grid that grows while the best is on its upper edge, and the
    transcripts they gave (the dev figures need no second search)."""
    alphas, betas, scores, hyps = list(alphas), list(betas), {}, {}
    for _ in range(rounds + 1):
        for ab in ((a, b) for a in alphas for b in betas):
            if ab not in scores:
                hyps[ab] = decode(posts, enc, beam, lm, *ab)
                scores[ab] = word_error_rate(refs, hyps[ab])
        alpha, beta = min(scores, key=lambda ab: (scores[ab], ab))
        if alpha < alphas[-1] and beta < betas[-1]:
            break
        if alpha == alphas[-1]:
            alphas.append(round(alphas[-1] * 1.5, 3))
        if beta == betas[-1]:
            betas.append(betas[-1] + 3.0)
    return alpha, beta, hyps[alpha, beta]


@torch.no_grad()
def posteriors(model, samples, enc):
    """Per-utterance log-probabilities ``(T_b, V)``, references and speakers (in batch order)."""
    model.eval()
    out, refs, speakers = [], [], []
    for idx in sortagrad_batches(samples, 64, 0):
        batch = collate_batch([samples[i] for i in idx], enc)
        lp, lengths = model(batch.features, batch.feature_lengths)
        out += [lp[: int(lengths[b]), b] for b in range(lp.shape[1])]
        refs += batch.transcripts
        speakers += [samples[i].speaker for i in idx]
    return out, refs, speakers


def per_speaker_wer(refs, hyps, speakers) -> dict:
    by = defaultdict(lambda: ([], []))
    for r, h, s in zip(refs, hyps, speakers):
        by[s][0].append(r)
        by[s][1].append(h)
    return {s: word_error_rate(*rh) for s, rh in sorted(by.items())}


SEARCHES = {"readable": prefix_beam_search, "fast": prefix_beam_search_fast}
search = prefix_beam_search_fast  # --search: the fast search (pyctcdecode's pruning; what reference.transcribe uses), or the readable one


oov_prefix_logp = None    # --oov-prefix-logp: DS2's plain search unless asked (reference.decoding)


FRESH_SEED = 11   # --fresh: the corpus of another seed (0 draws the splits), so other sentences
DEV_SEED = 13     # --dev-fresh: yet another seed, so a dev set that no measurement shares


def fresh_splits(cache: str, n: int, seen, seed: int = FRESH_SEED, prefix: str = "fresh") -> dict:
    """``--fresh``: n more new sentences by the training voices and by the held-out voices (the corpus of
    ``seed``), less any sentence that ``seen`` already holds (short ones recur)."""
    from reference.corpus import build_corpus

    known = {s.transcript for s in seen}
    splits = build_corpus(cache, n_train=10, n_test=n, seed=seed, progress=True)
    fresh = {f"{prefix}_{name}": [s for s in splits[f"test_{name}"] if s.transcript not in known]
             for name in ("sentences", "voices")}
    print(f"{prefix}: " + ", ".join(f"{len(v)} {k[len(prefix) + 1:]} (of {n})" for k, v in fresh.items()))
    return fresh


def loaded(load: str, run: str) -> Path:
    """``--load``: a folder of ``--save``'s checkpoints (``DIR/<run>.pt``), or one checkpoint file of the run."""
    return Path(load) if load.endswith(".pt") else Path(load) / f"{run}.pt"


def command_line(trained: bool) -> str:
    """This run's command, as a checkpoint records it.  A command that ``trained`` the model is prefixed by
    ``DS2_GRU_KERNEL=1`` when the compiled kernels did (the budgets are seconds: the kernels change how many steps a
    run takes); training has loaded them by then.  Evaluation never uses them, so a measuring command has no prefix
    (and never builds the kernels just to say so)."""
    from reference import _gru_kernel

    kernel = "DS2_GRU_KERNEL=1 " if trained and _gru_kernel.load() is not None else ""
    return f"{kernel}python benchmarks/bench_capstone.py " + " ".join(sys.argv[1:])


def decode(posts, enc, beam=0, lm=None, alpha=0.5, beta=1.0):
    if beam == 0:
        return [enc.ctc_decode(p.argmax(-1)) for p in posts]
    return [search(p, enc, beam_width=beam, lm=lm, alpha=alpha, beta=beta, oov_prefix_logp=oov_prefix_logp)[0][0]
            for p in posts]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--runs", default="paper", help=f"comma-separated, from {','.join(RUNS)} (or 'all')")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--beam", type=int, default=32, help="beam width for the LM runs (0: greedy only)")
    p.add_argument("--search", choices=sorted(SEARCHES), default="fast",
                   help="beam search: prefix_beam_search (tries every token above -20 at every frame: with 758 bigram "
                        "tokens and a model still unsure, seconds per utterance) or prefix_beam_search_fast")
    p.add_argument("--oov-prefix-logp", type=float,
                   help="rank an open word that begins no word of the LM as if the LM gave it this log probability "
                        "(times alpha; reference.decoding, pyctcdecode's -10); default: DS2's plain search")
    p.add_argument("--cache", default="data_cache")
    p.add_argument("--fresh", type=int, default=0, metavar="N",
                   help="also measure on N more new sentences per voice set (the corpus drawn with --fresh-seed, "
                        "less any sentence of the splits): figures with narrower intervals")
    p.add_argument("--fresh-seed", type=int, default=FRESH_SEED, metavar="S",
                   help=f"the corpus seed of --fresh's sentences (default {FRESH_SEED}; another seed, another set: a "
                        f"check on sentences that no choice has read; not 0, which draws the splits, nor {DEV_SEED})")
    p.add_argument("--dev-fresh", type=int, default=0, metavar="N",
                   help="tune alpha and beta on N new sentences by the training voices (the corpus drawn with seed "
                        f"{DEV_SEED}, less the splits' and --fresh's sentences; needs --fresh) instead of the 200 "
                        "held-back clips, "
                        "which are too few to choose between close models; the dev WERs are reported either way")
    p.add_argument("--save", help="write each run's checkpoint to SAVE/<run>.pt")
    p.add_argument("--load", help="evaluate the checkpoints LOAD/<run>.pt written by --save (or LOAD itself, a .pt file of the one "
                        "run named) instead of training")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--record", action="store_true",
                   help="with --load: write the results, alpha and beta into each loaded checkpoint's extra")
    p.add_argument("--init", help="start each run from this checkpoint's weights (its architecture must be the run's)")
    p.add_argument("--lr", type=float, help="the peak learning rate (default: the espeak preset's)")
    p.add_argument("--seed", type=int, default=0, help="the seed of the initial weights, the batch order and the masks")
    p.add_argument("--eval-every", type=int, default=0,
                   help="also measure held-out-sentence WER every N steps and print the learning curve")
    args = p.parse_args()
    if args.dev_fresh and not args.fresh:
        p.error("--dev-fresh needs --fresh: the dev set is drawn to share no sentence with the fresh ones")
    if args.fresh_seed in (0, DEV_SEED):
        p.error(f"--fresh-seed {args.fresh_seed} draws " + ("the splits' sentences" if args.fresh_seed == 0 else
                "--dev-fresh's") + ": give another seed")
    if args.record and not args.load:
        p.error("--record writes into the checkpoints of --load DIR: give --load")
    global search, oov_prefix_logp
    search, oov_prefix_logp = SEARCHES[args.search], args.oov_prefix_logp
    header(f"capstone: eSpeak NG speech, {args.seconds:.0f} s of training per run; beam search: {args.search}", args.threads)
    names = list(RUNS) if args.runs == "all" else args.runs.split(",")
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        p.error(f"unknown runs {unknown}; expected some of {list(RUNS)} or 'all'")
    if args.load and args.load.endswith(".pt") and len(names) != 1:
        p.error(f"--load {args.load} is one checkpoint: name one run with --runs, got {names}")
    recipe = PRESETS["espeak"]
    t0 = time.perf_counter()
    train, valid, extra = load_data(recipe, 0, args.cache, progress=False)
    train, dev = train[:-200], train[-200:]
    voices = extra["test_voices"]
    print(f"corpus: {len(train)} train, {len(dev)} dev, {len(valid)} held-out sentences, "
          f"{len(voices)} held-out voices (loaded in {time.perf_counter() - t0:.1f} s)")
    lm = NGramLM.train([s.transcript for s in train], order=3)
    fresh = fresh_splits(args.cache, args.fresh, train + dev + valid + voices, seed=args.fresh_seed) if args.fresh else {}
    if args.dev_fresh:                                 # a larger dev set, sharing no sentence with any other set
        dev = fresh_splits(args.cache, args.dev_fresh, train + dev + valid + voices + sum(fresh.values(), []),
                           seed=DEV_SEED, prefix="dev")["dev_sentences"]
    results = {}
    for name in names:
        model_kw, fit_kw = RUNS[name]
        enc = make_encoder(model_kw.get("outputs", "chars"))      # chars (29 symbols) or bigrams (758)
        if args.load:
            model, enc, state = load_model(loaded(args.load, name))
            hist = History.from_dict(state["history"])
        else:
            torch.manual_seed(args.seed)
            model = DeepSpeech2(n_freq=161, vocab_size=enc.vocab_size, **{**recipe["model"], **model_kw})
            if args.init:
                start, _, _ = load_model(args.init)
                if start.config.to_dict() != model.config.to_dict():
                    p.error(f"--init {args.init}: its architecture {start.config.to_dict()} is not run {name!r}'s "
                            f"{model.config.to_dict()}")
                model.load_state_dict(start.state_dict())
            fit_args = dict(epochs=recipe["epochs"], batch_size=recipe["batch_size"], lr=args.lr or recipe["lr"],
                            seed=args.seed,
                            seconds=args.seconds, eval_every=args.eval_every or 10**9, progress=False,
                            anneal=recipe["anneal"], augment=recipe_augment(recipe))
            hist = fit(model, train, enc, valid_set=valid, **{**fit_args, **fit_kw})
        row = {"steps": hist.step[-1], "params": model.num_parameters(),
               **({"fresh_n": {k: len(v) for k, v in fresh.items()}} if fresh else {}),
               "steps_per_s": hist.step[-1] / hist.seconds[-1] if hist.seconds and hist.seconds[-1] > 0 else 0.0}
        if args.eval_every:
            print(f"{name:>14}: learning curve (training seconds: held-out sentences greedy WER) " + ", ".join(
                f"{s:.0f} s: {100 * w:.1f} %" for s, w in zip(hist.eval_seconds, hist.eval_wer)), flush=True)
        posts = {"sentences": posteriors(model, valid, enc), "voices": posteriors(model, voices, enc),
                 **{split: posteriors(model, samples, enc) for split, samples in fresh.items()}}
        for split, (lp, refs, speakers) in posts.items():
            hyps = decode(lp, enc)
            row[f"{split}_greedy_wer"], row[f"{split}_greedy_cer"] = word_error_rate(refs, hyps), char_error_rate(refs, hyps)
            row[f"{split}_greedy_wer_95"] = wer_interval(refs, hyps)
            if split == "voices":
                row["per_voice_greedy_wer"] = per_speaker_wer(refs, hyps, speakers)
        dev_posts, dev_refs, _ = posteriors(model, dev, enc)
        row["dev_n"] = len(dev)                         # what a choice between runs reads: dev, never test
        hyps = decode(dev_posts, enc)
        row["dev_greedy_wer"], row["dev_greedy_wer_95"] = word_error_rate(dev_refs, hyps), wer_interval(dev_refs, hyps)
        if args.beam and name in LM_RUNS:
            alpha, beta, hyps = tune_alpha_beta(dev_posts, dev_refs, enc, args.beam, lm)
            row["dev_lm_wer"], row["dev_lm_wer_95"] = word_error_rate(dev_refs, hyps), wer_interval(dev_refs, hyps)
            row["alpha"], row["beta"] = alpha, beta
            for split, (lp, refs, speakers) in posts.items():
                t1 = time.perf_counter()
                hyps = decode(lp, enc, args.beam, lm, alpha, beta)
                row["beam_ms_per_utt"] = 1000 * (time.perf_counter() - t1) / len(lp)
                row[f"{split}_lm_wer"] = word_error_rate(refs, hyps)
                row[f"{split}_lm_wer_95"] = wer_interval(refs, hyps)
                if split == "voices":
                    row["per_voice_lm_wer"] = per_speaker_wer(refs, hyps, speakers)
        results[name] = row
        if args.load and args.record:
            state["extra"] = {**state.get("extra", {}), "results": row, "alpha": row.get("alpha"), "beta": row.get("beta"),
                              "oov_prefix_logp": args.oov_prefix_logp,
                              "measured_by": command_line(trained=False)}
            write_checkpoint(state, loaded(args.load, name))
        if args.save and not args.load:
            save_checkpoint(Path(args.save) / f"{name}.pt", model, enc, step=row["steps"], history=hist.to_dict(),
                            extra={"recipe": {**recipe, "model": {**recipe["model"], **model_kw}, "seconds": args.seconds,
                                              "lr": args.lr or recipe["lr"], "seed": args.seed, "init": args.init,
                                              "threads": args.threads,
                                              **{k: v if isinstance(v, (bool, int, float, str)) else repr(v)
                                                 for k, v in fit_kw.items()}},
                                   "command": command_line(trained=True),
                                   "results": row, "alpha": row.get("alpha"), "beta": row.get("beta")})
        print(f"{name:>14}: " + ", ".join(
            f"{k} (" + ", ".join(f"{s} {w}" if isinstance(w, int) else f"{s} {100 * w:.1f} %" for s, w in v.items()) + ")"
            if isinstance(v, dict) else
            f"{k} [{100 * v[0]:.2f}-{100 * v[1]:.2f}] %" if isinstance(v, (tuple, list)) else
            f"{k} {100 * v:.2f} %" if k.endswith(("wer", "cer")) else f"{k} {v:g}"
            for k, v in row.items()), flush=True)
    print(f"\n{'run':>14} {'steps':>6} {'steps/s':>8} {'sent. WER':>10} {'+LM':>7} {'voices WER':>11} {'+LM':>7} "
          f"{'sent. CER':>10} {'beam ms':>8}")
    for name, r in results.items():
        lm_s = f"{100 * r['sentences_lm_wer']:.2f}" if "sentences_lm_wer" in r else "-"
        lm_v = f"{100 * r['voices_lm_wer']:.2f}" if "voices_lm_wer" in r else "-"
        ms = f"{r['beam_ms_per_utt']:.1f}" if "beam_ms_per_utt" in r else "-"
        print(f"{name:>14} {r['steps']:>6} {r['steps_per_s']:>8.2f} {100 * r['sentences_greedy_wer']:>10.2f} {lm_s:>7} "
              f"{100 * r['voices_greedy_wer']:>11.2f} {lm_v:>7} {100 * r['sentences_greedy_cer']:>10.2f} {ms:>8}")
    for name, r in results.items():                     # 95 % bootstrap intervals over the utterances
        for split in ("dev", "sentences", "voices", "fresh_sentences", "fresh_voices"):
            if f"{split}_greedy_wer_95" in r:
                print(f"{name:>14} {split.replace('_', ' '):>15}: " + ", ".join(
                    f"{how} {100 * r[f'{split}_{how}_wer']:.2f} % [{100 * r[f'{split}_{how}_wer_95'][0]:.2f}-"
                    f"{100 * r[f'{split}_{how}_wer_95'][1]:.2f}]" for how in ("greedy", "lm") if f"{split}_{how}_wer" in r)
                      + (f" ({r['fresh_n'][split]} clips)" if split in r.get("fresh_n", {}) else "")
                      + (f" ({r['dev_n']} clips{', alpha and beta tuned here' if 'alpha' in r else ''})"
                         if split == "dev" else ""))
    print("targets: held-out sentences <= 5 % greedy, <= 3 % with beam + LM; held-out voices <= 15 %")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
