"""docs/checks.md's table of mistake models per graded name is the registry's, counted.

The count of a graded name is the number of distinct mistakes it can name: the distinct messages of
its models in ``autograder/checks/mistakes.py`` (over calls that reach every branch: ``reverse``, epoch 0
and later, an LM, a blank that is not 0, ...) plus the named hints that live in its checks
(``CHECK_LOCAL``: causes told apart by how a submission behaves, not by one value to compare).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from autograder.sandbox import fixtures as FX
from autograder.checks import mistakes as M

ROOT = Path(__file__).resolve().parents[1]
ENC = FX.ToyEncoder()

#: graded name -> (check module, a piece of each named hint that lives in that check, not in mistakes.py)
CHECK_LOCAL = {
    "frame_signal": ("test_ex01_spectrogram.py", ["a frame must fit entirely inside the audio"]),
    "ctc_loss": ("test_ex04_ctc_loss.py", ["torch.logsumexp of values that are ALL -inf", "no gradient flowed",
                                           "yours is a huge finite number", "zero_infinity=True"]),
    "SequenceWiseBatchNorm": ("test_ex07_batchnorm.py", [   # one piece per mistake (padding: forward and buffers)
        "your statistics are per time step", "the padded frames entered your mean/variance",
        "normalise with the BIASED variance", "the padded frames must come out 0",
        "your running statistics were never updated", "running_var uses the UNBIASED variance",
        "you swapped the weights", "do not replace them by the batch's", "use the momentum argument",
        "add 1 to num_batches_tracked", "in eval mode, normalise with running_mean / running_var",
        "do not detach the batch mean/variance", "is it an nn.Parameter?"]),
    "train_step": ("test_ex09_training.py", [
        '"no_train"', '"no_zero_grad"', '"sum"', '"plain_mean"', '"backward_sum"', '"no_clip"', '"clip_after_step"',
        '"clip_400"', '"clip_value"', '"clip_per_param"', '"no_step"', "pass the model's OUTPUT lengths",
        "skip the update"]),
    "evaluate": ("test_ex09_training.py", ["the model ran with gradients enabled", "was = model.training ... model.train(was)"]),
}


def _calls():
    """For each registered name, calls that reach every branch of its mistake models."""
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
    beam_lp = torch.tensor([[0.4, 0.6] + [1e-30] * 27, [0.5, 0.0, 0.5] + [1e-30] * 26]).log()
    return {
        "frame_signal": [((audio, 320, 160), {})],
        "compute_spectrogram": [((audio,), {}), ((audio,), {"n_fft": 256})],
        "ctc_collapse": [(([1, 1, 0, 1],), {}), (([1, 1, 3, 1],), {"blank": 3})],
        "greedy_decode": [((lp, ENC), {})],
        "edit_distance": [(("abc", "abd"), {}), (("", "ab"), {})],
        "word_error_rate": [((["a b"], ["a c"]), {})],
        "char_error_rate": [((["a b"], ["a c"]), {})],
        "extend_with_blanks": [(([1, 2],), {})],
        "ctc_log_alpha": [((lp[:, 0], [1, 2]), {})],
        "ctc_loss": [((lp, torch.tensor([[1, 2], [3, 0]]), torch.tensor([6, 4]), torch.tensor([2, 1])), {})],
        "clipped_relu": [((x,), {})],
        "conv_output_length": [((100, 11, 2, 5), {})],
        "mask_time": [((x.permute(1, 2, 0)[:, None], lengths), {})],
        "gru_cell": [((x[0], torch.randn(2, 4, generator=g), *w), {})],
        "gru_layer": [((x, lengths, *w), {}), ((x, lengths, *w), {"reverse": True})],
        "bidirectional_gru": [((x, lengths, w, w), {})],
        "sortagrad_sampler": [((ds, 0, 0), {}), ((ds, 1, 0), {}), ((ds, 2, 0), {})],
        "sortagrad_batches": [((ds, 2, 0, 0), {}), ((ds, 2, 1, 0), {})],
        "collate_batch": [((ds[:2], ENC), {})],
        "evaluate": [((FX.echo_model("eval"), FX.batches(specs), ENC), {})],
        "prefix_beam_search": [((beam_lp, ENC), {}), ((beam_lp, ENC), {"lm": FX.make_lm("small"), "alpha": 0.5})],
        "row_conv": [((x, torch.randn(2, 3, generator=g), lengths), {})],
    }


def registry_counts(module=M) -> dict[str, int]:
    """graded name -> number of distinct mistake messages of ``module``'s models."""
    out = {}
    for name, calls in _calls().items():
        messages = set()
        for args, kwargs in calls:
            messages |= {msg for _, msg in module.hints(name, *args, **kwargs)}
        out[name] = len(messages)
    return out


def check_local_counts() -> dict[str, int]:
    out = {}
    for name, (module, pieces) in CHECK_LOCAL.items():
        text = (ROOT / "autograder" / "checks" / module).read_text()
        missing = [p for p in pieces if p not in text]
        assert not missing, f"{name}: hints no longer in {module}: {missing}"
        out[name] = len(pieces)
    return out


def _docs_table() -> dict[str, tuple[int, int]]:
    text = (ROOT / "docs" / "checks.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| (\d+) \| (\d+) \|", text, flags=re.M)
    return {name: (int(before), int(after)) for name, before, after in rows}


def test_every_graded_name_is_counted():
    from autograder.spec import EXERCISES

    graded = {n for ex in EXERCISES.values() for n in ex.graded}
    assert set(M.registered()) | set(CHECK_LOCAL) == graded
    assert set(_calls()) == set(M.registered())


def test_docs_table_gives_the_counts():
    """docs/checks.md's "after" column is what the registry and the checks hold now, for every graded name."""
    reg, local = registry_counts(), check_local_counts()
    now = {n: reg.get(n, 0) + local.get(n, 0) for n in set(reg) | set(local)}
    table = _docs_table()
    assert set(table) == set(now), set(table) ^ set(now)
    wrong = {n: (table[n][1], now[n]) for n in now if table[n][1] != now[n]}
    assert not wrong, f"docs/checks.md's count (table, counted): {wrong}"
    assert all(after >= before for before, after in table.values())
    assert min(now.values()) >= 4, now


def test_every_mistake_model_runs_on_its_calls():
    """Every model computes a value on the calls above (none is a dead entry that always raises)."""
    dead = []
    for name, calls in _calls().items():
        ok = {}
        for args, kwargs in calls:
            for candidate, message in M.hints(name, *args, **kwargs):
                try:
                    value = candidate() if callable(candidate) else candidate
                except Exception:  # noqa: BLE001 - may not apply to this call; another call must reach it
                    value = None
                ok[message] = ok.get(message, False) or value is not None
        dead += [(name, m[:60]) for m, fine in ok.items() if not fine]
    assert not dead, dead
