"""The grader's oracles are the true answer (no worker: these run in the grader's process only).

* ex10's exact ranking (``autograder.checks.mistakes.ranked_texts``) equals brute force over every path of
  the full 29-symbol alphabet, and every ex10 check's beam width keeps all of its candidate texts,
  so any correct prefix beam search must return the exact best texts and scores;
* the mistake models' "right" settings reproduce torch's own ops (so a hint never names a correct
  answer), and every registered graded name has at least three mistake models.
"""
from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import reference as R
from autograder.sandbox import fixtures as FX
from autograder.checks import mistakes as M

with warnings.catch_warnings():  # the check module's pytest marks are registered by the grader's own config
    warnings.simplefilter("ignore")
    from autograder.checks import test_ex10_beam_search as C10

ENC = FX.ToyEncoder()


def _brute_force(lp, lm, alpha, beta):
    """Every path over all 29 symbols, probabilities summed per collapsed text; Q of each text."""
    rows = lp.double().tolist()
    acc = {}
    for path in itertools.product(range(29), repeat=len(rows)):
        s = sum(rows[t][c] for t, c in enumerate(path))
        ids = [c for k, c in enumerate(path) if c != 0 and (k == 0 or path[k - 1] != c)]
        text = ENC.decode(ids)
        acc[text] = s if text not in acc else max(acc[text], s) + math.log1p(math.exp(-abs(acc[text] - s)))
    out = []
    for text, lpc in acc.items():
        words = text.split()
        q = lpc + beta * len(words)
        if lm is not None:
            q += alpha * (sum(lm.score(tuple(words[:i]), w) for i, w in enumerate(words)) + lm.end_score(tuple(words)))
        out.append((text, q))
    return sorted(out, key=lambda r: (-r[1], r[0]))


@pytest.mark.parametrize("lm_name,alpha,beta", [(None, 0.5, 1.0), ("flat", 1.0, 0.5)])
def test_exact_ranking_equals_brute_force(lm_name, alpha, beta):
    lp = C10._from_probs([{1: 0.5, 27: 0.3, 0: 0.2}, {0: 0.6, 1: 0.4}, {2: 0.5, 27: 0.2, 0: 0.3}])
    lm = FX.make_lm(lm_name) if lm_name else None
    exact = C10.exact(lp, lm, alpha, beta)
    brute = _brute_force(lp, lm, alpha, beta)
    k = min(8, len(exact))
    assert [t for t, _ in exact[:k]] == [t for t, _ in brute[:k]]
    for (_, a), (_, b) in zip(exact[:k], brute[:k]):
        assert a == pytest.approx(b, abs=1e-5)


def _cases():
    for seed, T, symbols, beta, bw in C10.NO_LM_CASES:
        yield C10._posteriogram(seed, T, symbols), None, 0.5, beta, bw, 3
    yield C10._from_probs([{1: 0.9, 0: 0.1}, {0: 0.9, 1: 0.1}, {1: 0.9, 0: 0.1}]), None, 0.5, 0.0, 16, 2
    yield C10._from_probs([{1: 0.45, 0: 0.55}, {1: 0.45, 0: 0.55}]), None, 0.5, 0.0, 8, 2
    for alpha, beta in [(0.5, 1.0), (1.5, 0.5)]:
        yield C10._spelling(), FX.make_lm("small"), alpha, beta, 256, 4


@pytest.mark.parametrize("case", list(range(8)))
def test_every_ex10_check_is_exact_at_its_beam_width(case):
    lp, lm, alpha, beta, bw, k = list(_cases())[case]
    exact = C10.exact(lp, lm, alpha, beta, bw)          # asserts that the beam holds every candidate
    gaps = [exact[i][1] - exact[i + 1][1] for i in range(min(k, len(exact) - 1))]
    assert all(g > 1e-3 for g in gaps), gaps             # no near-ties among the compared texts
    ref = R.prefix_beam_search(lp, ENC, beam_width=bw, lm=lm, alpha=alpha, beta=beta, char_cutoff=None)
    assert [t for t, _ in ref[:k]] == [t for t, _ in exact[:k]]
    for (_, a), (_, b) in zip(ref[:k], exact[:k]):
        assert a == pytest.approx(b, abs=1e-4)


def test_the_issue_example_is_ranked_by_exact_search():
    """' cat' (Q = -13.637) outranks 'the at' (-14.228); a beam of 24 misses it, the check's 256 does not."""
    lp, lm = C10._spelling(), FX.make_lm("small")
    exact = C10.exact(lp, lm, 1.5, 0.5, 256)
    assert [t for t, _ in exact[:4]] == ["the cat", "the cab", " cat", "the at"]
    assert exact[2][1] == pytest.approx(-13.637, abs=1e-3) and exact[3][1] == pytest.approx(-14.228, abs=1e-3)
    narrow = R.prefix_beam_search(lp, ENC, beam_width=24, lm=lm, alpha=1.5, beta=0.5, char_cutoff=None)
    assert " cat" not in [t for t, _ in narrow[:3]]


def test_mistake_models_right_settings_match_torch():
    g = torch.Generator().manual_seed(0)
    audio = (torch.rand(3000, generator=g) * 2 - 1) * 0.5
    assert torch.allclose(M.spectrogram_variant(audio), R.compute_spectrogram(audio), atol=1e-4)
    lp = torch.randn(12, 3, 29, generator=g).log_softmax(-1)
    targets, il, tl = torch.tensor([[1, 2, 2], [3, 0, 0], [4, 5, 0]]), torch.tensor([12, 9, 6]), torch.tensor([3, 1, 2])
    for red in ("none", "sum", "mean"):
        assert torch.allclose(M.ctc_loss_variant(lp, targets, il, tl, 0, red), F.ctc_loss(lp, targets, il, tl,
                                                                                        reduction=red), atol=1e-5)
    w = [torch.randn(12, 3, generator=g), torch.randn(12, 4, generator=g), torch.randn(12, generator=g),
         torch.randn(12, generator=g)]
    x, h = torch.randn(2, 3, generator=g), torch.randn(2, 4, generator=g)
    cell = torch.nn.GRUCell(3, 4)
    with torch.no_grad():
        for p, v in zip((cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), w):
            p.copy_(v)
    assert torch.allclose(M.gru_cell_variant(x, h, *w), cell(x, h), atol=1e-6)
    for m, _ in M._CELL_MISTAKES:
        assert not torch.allclose(M.gru_cell_variant(x, h, *w, mistake=m), cell(x, h), atol=1e-4), m


def _samples():
    g = torch.Generator().manual_seed(1)
    audio = (torch.rand(1000, generator=g) * 2 - 1) * 0.5
    lp = torch.randn(6, 2, 29, generator=g).log_softmax(-1)
    x = torch.randn(5, 2, 3, generator=g)
    lengths = torch.tensor([5, 3])
    w = (torch.randn(12, 3, generator=g), torch.randn(12, 4, generator=g), torch.randn(12, generator=g),
         torch.randn(12, generator=g))
    ds = FX.make_dataset(1, 6)
    specs = [{"features": torch.randn(1, 1, 29, 5, generator=g), "feature_lengths": torch.tensor([5]),
              "targets": torch.tensor([[1]]), "target_lengths": torch.tensor([1]), "transcripts": ["a"]}]
    return {
        "frame_signal": (audio, 320, 160), "compute_spectrogram": (audio,), "ctc_collapse": ([1, 1, 0, 1],),
        "greedy_decode": (lp, ENC), "edit_distance": ("abc", "abd"), "word_error_rate": (["a b"], ["a c"]),
        "char_error_rate": (["a b"], ["a c"]), "extend_with_blanks": ([1, 2],), "ctc_log_alpha": (lp[:, 0], [1, 2]),
        "ctc_loss": (lp, torch.tensor([[1, 2], [3, 0]]), torch.tensor([6, 4]), torch.tensor([2, 1])),
        "clipped_relu": (x,), "conv_output_length": (100, 11, 2, 5), "mask_time": (x.permute(1, 2, 0)[:, None], lengths),
        "gru_cell": (x[0], torch.randn(2, 4, generator=g), *w), "gru_layer": (x, lengths, *w),
        "bidirectional_gru": (x, lengths, w, w), "sortagrad_sampler": (ds, 1, 0), "sortagrad_batches": (ds, 2, 1, 0),
        "collate_batch": (ds[:2], ENC), "evaluate": (FX.echo_model("eval"), FX.batches(specs), ENC),
        "prefix_beam_search": (C10._from_probs([{1: 0.6, 0: 0.4}, {2: 0.5, 0: 0.5}]), ENC),
        "row_conv": (x, torch.randn(2, 3, generator=g), lengths),
    }


def test_every_graded_function_has_three_mistake_models():
    from autograder.spec import EXERCISES

    kept_in_checks = {"SequenceWiseBatchNorm", "train_step"}  # class / stateful step: models stay in their checks
    samples = _samples()
    for ex in EXERCISES.values():
        for name in ex.graded:
            if name in kept_in_checks:
                continue
            models = M.hints(name, *samples[name])
            assert len(models) >= 3, (name, len(models))
            values = []
            for candidate, message in models:
                assert isinstance(message, str) and message, name
                values.append(candidate() if callable(candidate) else candidate)
