"""Benchmark: CTC prefix beam search (reference/decoding.py), with and without a language model.

Times ``prefix_beam_search`` (the readable search) and ``prefix_beam_search_fast`` (its fast path,
with pyctcdecode's default pruning) per utterance on realistic, *peaky* log-probabilities: a random
sentence is laid out as a CTC alignment (each character held 1-3 frames, blanks between),
the aligned symbol gets a large logit, every frame gets Gaussian noise, and some frames
get a strong competitor, so that the acoustics alone are sometimes wrong and the LM has
something to fix.  Rows: T = 100, 200, 300 frames; beam widths 8, 16, 32, 64; no LM or a
trigram :class:`reference.lm.NGramLM` (alpha 0.5, beta 1.0).  CER is of the best hypothesis
against the sentence used to build the log-probs.

pyctcdecode is the peer: on the same log-probs and beam widths, with our LM plugged in
through :func:`reference.lm.pyctcdecode_language_model` (so both search for the same DS2
objective; pyctcdecode keeps its own pruning), it prints time per utterance, error rate and
how often the two best transcripts are identical.  With ``--model`` (default: the shipped
capstone model, if present) the same comparison runs on real log-probs: the model's outputs
for held-out eSpeak sentences, decoded with the trigram LM of the training transcripts and
the alpha and beta tuned for that model; the error rate is then WER.  pyctcdecode 0.5.0
declares ``numpy<2`` but works with numpy 2; ``make setup`` installs it without its
dependency pins (see requirements.txt).

    python benchmarks/bench_beam_search.py            # full table (~30 s on one core)
    python benchmarks/bench_beam_search.py --quick    # T=100 only, 1 utterance per row
    python benchmarks/bench_beam_search.py --model ''   # synthetic log-probs only
    python benchmarks/bench_beam_search.py --clock cpu  # CPU time: on a machine shared with busier processes

All three searches are single-threaded Python, so with ``--clock cpu`` the thread's CPU time is the
work done, whatever else the machine runs.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time

import torch

CLOCK = time.perf_counter              # --clock cpu: time.thread_time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from reference.decoding import (DEFAULT_CHAR_CUTOFF, FAST_BEAM_PRUNE_LOGP, FAST_TOKEN_MIN_LOGP,  # noqa: E402
                                prefix_beam_search, prefix_beam_search_fast)
from reference.lm import NGramLM  # noqa: E402
from reference.text import CharEncoder  # noqa: E402

WORDS = {
    "det": ["the", "a", "every", "my", "your"],
    "adj": ["small", "red", "old", "quiet", "happy", "clever"],
    "noun": ["cat", "dog", "bird", "child", "teacher", "car", "house", "tree"],
    "verb": ["sees", "likes", "follows", "hears", "finds", "paints"],
    "adv": ["today", "again", "quickly", "slowly"],
}


def sentence(rng: random.Random) -> str:
    """One sentence of a small grammar (the LM is trained on the same grammar)."""
    w = [rng.choice(WORDS["det"])]
    if rng.random() < 0.5:
        w.append(rng.choice(WORDS["adj"]))
    w += [rng.choice(WORDS["noun"]), rng.choice(WORDS["verb"]), rng.choice(WORDS["det"]), rng.choice(WORDS["noun"])]
    if rng.random() < 0.4:
        w.append(rng.choice(WORDS["adv"]))
    return " ".join(w)


def peaky_log_probs(T: int, encoder: CharEncoder, seed: int) -> tuple[torch.Tensor, str]:
    """``(T, V)`` log-probs whose dominant path spells a random text; returns them and the text."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    path: list[int] = []
    chars: list[str] = []
    while True:
        text = sentence(rng)
        for ch in (" " if chars else "") + text:
            idx = encoder.encode(ch)[0]
            hold = rng.randint(1, 3)
            if len(path) + hold + 1 > T:
                break
            if path and path[-1] == idx:
                path.append(encoder.blank_idx)  # a repeated letter needs a blank between
            path += [idx] * hold
            path += [encoder.blank_idx] * rng.randint(0, 2)
            chars.append(ch)
        else:
            continue
        break
    path += [encoder.blank_idx] * (T - len(path))
    V = encoder.vocab_size
    logits = torch.randn(T, V, generator=g) * 1.5
    logits[torch.arange(T), torch.tensor(path[:T])] += 8.0
    confused = torch.rand(T, generator=g) < 0.1  # a strong competitor on some frames
    logits[confused, torch.randint(1, V, (int(confused.sum()),), generator=g)] += 7.5
    return logits.log_softmax(-1), "".join(chars).strip()


def cer(ref: str, hyp: str) -> float:
    """Character error rate of one pair (Levenshtein distance / len(ref))."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1] / max(len(ref), 1)


def try_pyctcdecode(encoder: CharEncoder, lm=None, alpha=0.5, beta=1.0):
    """A pyctcdecode decoder for ``encoder``'s symbols searching DS2's objective, or None if not installed."""
    try:
        from pyctcdecode import Alphabet, BeamSearchDecoderCTC
    except ImportError:
        print("\npyctcdecode: not installed, comparison skipped (`make setup` installs it; see requirements.txt).")
        return None
    from reference.lm import pyctcdecode_language_model
    labels = [""] + [encoder.decode([i]) for i in range(1, encoder.vocab_size)]  # "" is pyctcdecode's blank
    model = pyctcdecode_language_model(lm, alpha, beta) if lm is not None else None
    return BeamSearchDecoderCTC(Alphabet.build_alphabet(labels), language_model=model)


def compare_with_pyctcdecode(utts, enc, lm, widths, alpha=0.5, beta=1.0, metric=None, title=""):
    """Time and error rate of both decoders on the same log-probs, beam widths and objective."""
    metric = metric or (lambda refs, hyps: sum(cer(r, h) for r, h in zip(refs, hyps)) / len(refs))
    decoders = {use_lm: try_pyctcdecode(enc, lm if use_lm else None, alpha, beta) for use_lm in (False, True)}
    if decoders[False] is None:
        return
    print(f"\n{title}pyctcdecode {pyctcdecode_version()} vs the reference: same log-probs, beam width and objective "
          f"(LM: alpha {alpha}, beta {beta}; no LM: beta 0); pyctcdecode's default pruning "
          f"(beam_prune_logp -10, token_min_logp -5)")
    print(f"(fast: prefix_beam_search_fast, token_min_logp {FAST_TOKEN_MIN_LOGP}, beam_prune_logp {FAST_BEAM_PRUNE_LOGP}; "
          f"same: the two best transcripts equal, fast vs pyctcdecode)")
    print(f"{'beam':>5} {'LM':>4} {'ref ms/utt':>11} {'fast ms/utt':>12} {'pcd ms/utt':>11} {'ref err':>8} {'fast err':>9} "
          f"{'pcd err':>8} {'same':>7}")
    refs = [text for _, text in utts]
    for width in widths:
        for use_lm in (False, True):
            kw = dict(beam_width=width, lm=lm if use_lm else None, alpha=alpha, beta=beta if use_lm else 0.0)
            hyps = {"ref": [], "fast": [], "pcd": []}
            secs = dict.fromkeys(hyps, 0.0)
            for lp, _ in utts:
                for name, decode in (("ref", lambda: prefix_beam_search(lp, enc, **kw)[0][0]),
                                     ("fast", lambda: prefix_beam_search_fast(lp, enc, **kw)[0][0]),
                                     ("pcd", lambda: decoders[use_lm].decode(lp.double().numpy(), beam_width=width))):
                    start = CLOCK()
                    text = decode()
                    secs[name] += CLOCK() - start
                    hyps[name].append(" ".join(text.split()))
            same = sum(a == b for a, b in zip(hyps["fast"], hyps["pcd"]))
            ms = {k: 1000 * v / len(utts) for k, v in secs.items()}
            err = {k: 100 * metric(refs, v) for k, v in hyps.items()}
            print(f"{width:>5} {'yes' if use_lm else 'no':>4} {ms['ref']:>11.1f} {ms['fast']:>12.1f} {ms['pcd']:>11.1f} "
                  f"{err['ref']:>7.2f}% {err['fast']:>8.2f}% {err['pcd']:>7.2f}% {same:>3}/{len(utts)}")


def pyctcdecode_version() -> str:
    from importlib.metadata import version
    return version("pyctcdecode")


def real_speech_utterances(model_path: str, cache: str, n: int):
    """The capstone model's log-probs for the first ``n`` held-out sentences of its eSpeak corpus:
    ``([(log_probs, transcript), ...], checkpoint extra, training transcripts)``."""
    from bench_capstone import posteriors
    from reference.checkpoint import load_model
    from reference.corpus import build_corpus
    model, enc, state = load_model(model_path)
    recipe = state["extra"]["recipe"]
    splits = build_corpus(cache, n_train=recipe["n_train"], n_test=recipe["n_valid"], seed=0, progress=True)
    log_probs, refs, _ = posteriors(model, splits["test_sentences"][:n], enc)
    return list(zip(log_probs, refs)), state["extra"], [s.transcript for s in splits["train"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-utts", type=int, default=3, help="utterances per row (default 3)")
    ap.add_argument("--quick", action="store_true", help="T=100 only, 1 utterance per row")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1; the search is pure Python)")
    ap.add_argument("--model", default="models/espeak-ds2.pt",
                    help="also compare on this capstone model's log-probs of held-out eSpeak sentences ('' to skip)")
    ap.add_argument("--n-real", type=int, default=100, help="held-out sentences for the real-speech comparison")
    ap.add_argument("--cache", default="data_cache", help="eSpeak corpus cache")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="time by the wall clock or by CPU time")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    n_utts = 1 if args.quick else args.n_utts
    lengths = (100,) if args.quick else (100, 200, 300)
    widths = (8, 16, 32, 64)

    enc = CharEncoder("english")
    rng = random.Random(1234)
    t0 = time.perf_counter()
    lm = NGramLM.train((sentence(rng) for _ in range(5000)), order=3)
    print(f"python {platform.python_version()}, torch {torch.__version__}, torch threads {torch.get_num_threads()}, "
          f"cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}, {args.clock} clock")
    print(f"LM: {lm} trained in {time.perf_counter() - t0:.2f} s; alpha 0.5, beta 1.0; "
          f"char_cutoff {DEFAULT_CHAR_CUTOFF} (default); {n_utts} utterance(s) per row\n")

    utts = {T: [peaky_log_probs(T, enc, seed=1000 * T + i) for i in range(n_utts)] for T in lengths}
    warm, _ = peaky_log_probs(100, enc, seed=1)  # warm up (the LM caches its probabilities)
    prefix_beam_search(warm, enc, beam_width=16, lm=lm)
    print(f"{'T':>4} {'beam':>5} {'LM':>4} {'ms/utt':>9} {'CER':>6} {'fast ms/utt':>12} {'fast CER':>9}")
    for T in lengths:
        for width in widths:
            for use_lm in (False, True):
                total, errs = [0.0, 0.0], [0.0, 0.0]
                for lp, text in utts[T]:
                    for i, search in enumerate((prefix_beam_search, prefix_beam_search_fast)):
                        start = CLOCK()
                        best = search(lp, enc, beam_width=width, lm=lm if use_lm else None, alpha=0.5, beta=1.0)[0][0]
                        total[i] += CLOCK() - start
                        errs[i] += cer(text, " ".join(best.split()))
                print(f"{T:>4} {width:>5} {'yes' if use_lm else 'no':>4} {1000 * total[0] / n_utts:>9.1f} "
                      f"{errs[0] / n_utts:>6.3f} {1000 * total[1] / n_utts:>12.1f} {errs[1] / n_utts:>9.3f}")

    compare_with_pyctcdecode([u for T in lengths for u in utts[T]], enc, lm, widths if not args.quick else (16,),
                             title="Synthetic log-probs: ")
    if args.model:
        if not os.path.exists(args.model):
            print(f"\n{args.model} does not exist: real-speech comparison skipped")
            return
        from reference.metrics import word_error_rate
        real, extra, train_text = real_speech_utterances(args.model, args.cache, args.n_real)
        compare_with_pyctcdecode(real, enc, NGramLM.train(train_text, order=3), (16, 32), alpha=extra["alpha"],
                                 beta=extra["beta"], metric=word_error_rate,
                                 title=f"Real speech ({len(real)} held-out eSpeak sentences, {args.model}, WER): ")


if __name__ == "__main__":
    main()
