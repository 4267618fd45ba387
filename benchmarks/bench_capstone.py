"""The capstone on eSpeak NG speech: WER at a fixed training budget, decoding, ablations, streaming.

Targets (issue 4), <= 5 minutes of training on 2 CPU cores: held-out sentences <= 5 % WER
greedy and <= 3 % with beam search + LM; held-out voices <= 15 % WER.

Every run trains the same way (``reference.train``'s ``espeak`` preset, same corpus, same
budget) and differs in one model option.  The last 200 training utterances are held back
as a dev set to tune the LM weight alpha and word bonus beta; the LM is a Kneser-Ney
trigram of the training transcripts.

    python benchmarks/bench_capstone.py [--seconds 300] [--runs paper,bn-input,...] [--threads 2]
"""
import argparse
import json
import time

from _common import header

import torch

from reference import CharEncoder, DeepSpeech2
from reference.decoding import prefix_beam_search
from reference.lm import NGramLM
from reference.metrics import char_error_rate, word_error_rate
from reference.train import PRESETS, load_data
from reference.training import fit, make_batches

RUNS = {   # name -> (model overrides, fit overrides)
    "paper": ({}, {}),
    "bn-input": ({"batch_norm": "input"}, {}),           # BN on the layer input (a popular port)
    "bn-padding": ({"bn_include_padding": True}, {}),     # padding counted in BN statistics
    "concat": ({"merge": "concat"}, {}),                  # directions concatenated
    "no-sortagrad": ({}, {"sortagrad": False}),
    "streaming": ({"bidirectional": False, "lookahead": 8}, {}),   # forward GRUs + row conv (8 frames x 30 ms)
    "stride2-lr1e-3": ({"conv_time_stride": 2, "rnn_hidden": 192}, {"lr": 1e-3}),   # the first recipe, for comparison
}


@torch.no_grad()
def posteriors(model, samples, enc):
    """Per-utterance log-probabilities ``(T_b, V)`` and references."""
    model.eval()
    out, refs = [], []
    for batch in make_batches(samples, enc, 64):
        lp, lengths = model(batch.features, batch.feature_lengths)
        out += [lp[: int(lengths[b]), b] for b in range(lp.shape[1])]
        refs += batch.transcripts
    return out, refs


def decode(posts, enc, beam=0, lm=None, alpha=0.5, beta=1.0):
    if beam == 0:
        return [enc.ctc_decode(p.argmax(-1)) for p in posts]
    return [prefix_beam_search(p, enc, beam_width=beam, lm=lm, alpha=alpha, beta=beta)[0][0] for p in posts]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--runs", default="paper", help=f"comma-separated, from {','.join(RUNS)} (or 'all')")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--beam", type=int, default=32, help="beam width for the LM runs (0: greedy only)")
    p.add_argument("--cache", default="data_cache")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    header(f"capstone: eSpeak NG speech, {args.seconds:.0f} s of training per run", args.threads)
    recipe = PRESETS["espeak"]
    enc = CharEncoder()
    t0 = time.perf_counter()
    train, valid, extra = load_data(recipe, 0, args.cache, progress=False)
    train, dev = train[:-200], train[-200:]
    print(f"corpus: {len(train)} train, {len(dev)} dev, {len(valid)} held-out sentences, "
          f"{len(extra.get('test_voices', []))} held-out voices (loaded in {time.perf_counter() - t0:.1f} s)")
    lm = NGramLM.train([s.transcript for s in train], order=3)
    names = list(RUNS) if args.runs == "all" else args.runs.split(",")
    results = {}
    for name in names:
        model_kw, fit_kw = RUNS[name]
        torch.manual_seed(0)
        model = DeepSpeech2(n_freq=161, vocab_size=29, **{**recipe["model"], **model_kw})
        fit_args = dict(epochs=recipe["epochs"], batch_size=recipe["batch_size"], lr=recipe["lr"],
                        seconds=args.seconds, eval_every=10**9, progress=False)
        hist = fit(model, train, enc, valid_set=valid, **{**fit_args, **fit_kw})
        row = {"steps": hist.step[-1], "params": model.num_parameters()}
        for split, samples in (("sentences", valid), ("voices", extra["test_voices"])):
            posts, refs = posteriors(model, samples, enc)
            hyps = decode(posts, enc)
            row[f"{split}_greedy_wer"], row[f"{split}_greedy_cer"] = word_error_rate(refs, hyps), char_error_rate(refs, hyps)
        if args.beam and name in ("paper", "streaming"):
            dev_posts, dev_refs = posteriors(model, dev, enc)
            grid = [(a, b) for a in (0.0, 0.3, 0.6, 1.0) for b in (0.0, 1.0, 2.0)]
            scores = {ab: word_error_rate(dev_refs, decode(dev_posts, enc, args.beam, lm, *ab)) for ab in grid}
            alpha, beta = min(scores, key=scores.get)
            row["alpha"], row["beta"] = alpha, beta
            for split, samples in (("sentences", valid), ("voices", extra["test_voices"])):
                posts, refs = posteriors(model, samples, enc)
                t1 = time.perf_counter()
                hyps = decode(posts, enc, args.beam, lm, alpha, beta)
                row[f"{split}_lm_wer"] = word_error_rate(refs, hyps)
                row["beam_ms_per_utt"] = 1000 * (time.perf_counter() - t1) / len(posts)
        results[name] = row
        print(f"{name:>13}: {row['steps']} steps, " + ", ".join(
            f"{k} {100 * v:.2f} %" if k.endswith(("wer", "cer")) else f"{k} {v:g}" for k, v in row.items()
            if k not in ("steps",)), flush=True)
    print(f"\n{'run':>13} {'steps':>6} {'sent. WER':>10} {'+LM':>7} {'voices WER':>11} {'+LM':>7} {'sent. CER':>10}")
    for name, r in results.items():
        lm_s = f"{100 * r['sentences_lm_wer']:.2f}" if "sentences_lm_wer" in r else "-"
        lm_v = f"{100 * r['voices_lm_wer']:.2f}" if "voices_lm_wer" in r else "-"
        print(f"{name:>13} {r['steps']:>6} {100 * r['sentences_greedy_wer']:>10.2f} {lm_s:>7} "
              f"{100 * r['voices_greedy_wer']:>11.2f} {lm_v:>7} {100 * r['sentences_greedy_cer']:>10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
