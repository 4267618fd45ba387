"""pyctcdecode as an independent peer of the reference's prefix beam search.

With :func:`reference.lm.pyctcdecode_language_model` both decoders maximise the same DS2
objective ``Q = log p_ctc + alpha log p_lm + beta word_count``; their searches differ
(pyctcdecode prunes by its own thresholds and keeps one score per beam).  The oracle is
``Q`` itself, computed exactly: ``log p_ctc`` from ``torch.nn.functional.ctc_loss`` over all
alignments, the LM terms from the LM.  Where the two disagree, the reference's answer must
score at least as high: a better hypothesis found by the peer would be a search error of ours.
"""
import random
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pyctcdecode = pytest.importorskip("pyctcdecode")

from reference.decoding import prefix_beam_search  # noqa: E402
from reference.lm import NGramLM, pyctcdecode_language_model  # noqa: E402
from reference.text import CharEncoder  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_beam_search import sentence  # noqa: E402

ENC = CharEncoder()
LABELS = [""] + [ENC.decode([i]) for i in range(1, ENC.vocab_size)]     # "" is pyctcdecode's blank


def peaky(seed):
    """Log-probs whose dominant path spells one whole sentence (no word cut off at the end),
    with noise and strong competitors on 15 % of the frames: ``(T, V)``."""
    rng, g = random.Random(seed), torch.Generator().manual_seed(seed)
    path = []
    for ch in sentence(rng):
        idx = ENC.encode(ch)[0]
        if path and path[-1] == idx:
            path.append(ENC.blank_idx)
        path += [idx] * rng.randint(1, 2) + [ENC.blank_idx] * rng.randint(0, 1)
    path += [ENC.blank_idx] * 3
    logits = torch.randn(len(path), ENC.vocab_size, generator=g) * 1.5
    logits[torch.arange(len(path)), torch.tensor(path)] += 8.0
    confused = torch.rand(len(path), generator=g) < 0.15
    logits[confused, torch.randint(1, ENC.vocab_size, (int(confused.sum()),), generator=g)] += 7.5
    return logits.log_softmax(-1)


def q_score(lp, text, lm, alpha, beta):
    words = text.split()
    target = torch.tensor(ENC.encode(" ".join(words)))
    log_p_ctc = -F.ctc_loss(lp[:, None].double(), target[None], torch.tensor([lp.shape[0]]), torch.tensor([len(target)]),
                            reduction="sum", zero_infinity=False)
    return float(log_p_ctc) + (alpha * lm.sentence_logprob(words) if lm is not None else 0.0) + beta * len(words)


def _decoder(lm=None, alpha=0.5, beta=1.0):
    from pyctcdecode import Alphabet, BeamSearchDecoderCTC
    model = pyctcdecode_language_model(lm, alpha, beta) if lm is not None else None
    return BeamSearchDecoderCTC(Alphabet.build_alphabet(LABELS), language_model=model)


@pytest.fixture(scope="module")
def lm():
    rng = random.Random(7)
    return NGramLM.train([sentence(rng) for _ in range(3000)], order=3)


@pytest.mark.parametrize("use_lm", [False, True])
def test_reference_never_loses_to_pyctcdecode_on_the_shared_objective(lm, use_lm):
    alpha, beta = (0.5, 1.0) if use_lm else (0.0, 0.0)
    decoder = _decoder(lm if use_lm else None, alpha, beta)
    agree = 0
    for seed in range(25):
        lp = peaky(seed)
        ours = " ".join(prefix_beam_search(lp, ENC, beam_width=32, lm=lm if use_lm else None, alpha=alpha, beta=beta)[0][0].split())
        theirs = " ".join(decoder.decode(lp.double().numpy(), beam_width=32, beam_prune_logp=-1e4, token_min_logp=-1e4).split())
        q_ours, q_theirs = (q_score(lp, t, lm if use_lm else None, alpha, beta) for t in (ours, theirs))
        assert q_ours >= q_theirs - 1e-6, (seed, ours, q_ours, theirs, q_theirs)
        agree += ours == theirs
    assert agree >= 20, agree          # and mostly they find the very same transcript
