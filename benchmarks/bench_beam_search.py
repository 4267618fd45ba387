"""Benchmark: CTC prefix beam search (reference/decoding.py), with and without a language model.

Times ``prefix_beam_search`` per utterance on realistic, *peaky* log-probabilities: a random
sentence is laid out as a CTC alignment (each character held 1-3 frames, blanks between),
the aligned symbol gets a large logit, every frame gets Gaussian noise, and some frames
get a strong competitor, so that the acoustics alone are sometimes wrong and the LM has
something to fix.  Rows: T = 100, 200, 300 frames; beam widths 8, 16, 32, 64; no LM or a
trigram :class:`reference.lm.NGramLM` (alpha 0.5, beta 1.0).  CER is of the best hypothesis
against the sentence used to build the log-probs.

If ``pyctcdecode`` is importable it is timed on the same log-probs and beam widths,
*without* LM (its objective differs from DS2's Q in how it applies the LM and the word
bonus and it prunes with its own thresholds, so only the LM-free best paths are compared).
pyctcdecode 0.5.0 pins ``numpy<2``, so in the course environment (numpy 2) it is not
installed and this part is skipped with a message.

    python benchmarks/bench_beam_search.py            # full table (~30 s on one core)
    python benchmarks/bench_beam_search.py --quick    # T=100 only, 1 utterance per row
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from reference.decoding import DEFAULT_CHAR_CUTOFF, prefix_beam_search  # noqa: E402
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


def try_pyctcdecode(encoder: CharEncoder):
    try:
        import pyctcdecode  # noqa: F401
        from pyctcdecode import build_ctcdecoder
    except ImportError:
        print(
            "\npyctcdecode: not installed, comparison skipped.  (pyctcdecode 0.5.0, the latest release, "
            "requires numpy<2.0 and this environment has numpy 2; install it in a separate numpy-1 "
            "environment to run the comparison.)"
        )
        return None
    labels = [""] + [encoder.decode([i]) for i in range(1, encoder.vocab_size)]  # "" is pyctcdecode's blank
    return build_ctcdecoder(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-utts", type=int, default=3, help="utterances per row (default 3)")
    ap.add_argument("--quick", action="store_true", help="T=100 only, 1 utterance per row")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1; the search is pure Python)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n_utts = 1 if args.quick else args.n_utts
    lengths = (100,) if args.quick else (100, 200, 300)
    widths = (8, 16, 32, 64)

    enc = CharEncoder("english")
    rng = random.Random(1234)
    t0 = time.perf_counter()
    lm = NGramLM.train((sentence(rng) for _ in range(5000)), order=3)
    print(f"python {platform.python_version()}, torch {torch.__version__}, torch threads {torch.get_num_threads()}, "
          f"cpu count {os.cpu_count()}")
    print(f"LM: {lm} trained in {time.perf_counter() - t0:.2f} s; alpha 0.5, beta 1.0; "
          f"char_cutoff {DEFAULT_CHAR_CUTOFF} (default); {n_utts} utterance(s) per row\n")

    utts = {T: [peaky_log_probs(T, enc, seed=1000 * T + i) for i in range(n_utts)] for T in lengths}
    warm, _ = peaky_log_probs(100, enc, seed=1)  # warm up (the LM caches its probabilities)
    prefix_beam_search(warm, enc, beam_width=16, lm=lm)
    print(f"{'T':>4} {'beam':>5} {'LM':>4} {'ms/utt':>9} {'CER':>6}")
    for T in lengths:
        for width in widths:
            for use_lm in (False, True):
                total, errs = 0.0, 0.0
                for lp, text in utts[T]:
                    start = time.perf_counter()
                    best = prefix_beam_search(lp, enc, beam_width=width, lm=lm if use_lm else None,
                                              alpha=0.5, beta=1.0)[0][0]
                    total += time.perf_counter() - start
                    errs += cer(text, " ".join(best.split()))
                print(f"{T:>4} {width:>5} {'yes' if use_lm else 'no':>4} {1000 * total / n_utts:>9.1f} "
                      f"{errs / n_utts:>6.3f}")

    decoder = try_pyctcdecode(enc)
    if decoder is None:
        return
    print("\npyctcdecode (no LM; its default pruning: token_min_logp=-5, beam_prune_logp=-10) "
          "vs the reference (no LM, beta=0)")
    print(f"{'T':>4} {'beam':>5} {'ref ms':>8} {'pcd ms':>8} {'same best':>10}")
    for T in lengths:
        for width in widths:
            t_ref = t_pcd = 0.0
            same = 0
            for lp, _ in utts[T]:
                start = time.perf_counter()
                ours = prefix_beam_search(lp, enc, beam_width=width, beta=0.0)[0][0]
                t_ref += time.perf_counter() - start
                start = time.perf_counter()
                theirs = decoder.decode(lp.double().numpy(), beam_width=width)
                t_pcd += time.perf_counter() - start
                same += " ".join(ours.split()) == " ".join(theirs.split())
            print(f"{T:>4} {width:>5} {1000 * t_ref / n_utts:>8.1f} {1000 * t_pcd / n_utts:>8.1f} "
                  f"{same:>4}/{n_utts}")


if __name__ == "__main__":
    main()
