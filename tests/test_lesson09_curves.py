"""tools/lesson09_curves.py: the data behind lesson 09's comparisons (the runs are the lesson's numbers)."""
from __future__ import annotations

import json

import pytest
import torch

from tools import lesson09_curves as curves

TINY = ["--steps", "4", "--eval-every", "2", "--seeds", "2", "--n-train", "24", "--n-valid", "8", "--words", "1", "3",
        "--threads", "1", "--variants", "baseline", "no SortaGrad", "--optimizer", "sgd", "--lr", "0.01"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The same tiny comparison written by one process and by two."""
    tmp, got = tmp_path_factory.mktemp("curves"), []
    for jobs in ("1", "2"):
        assert curves.main([*TINY, "--jobs", jobs, "--out", str(tmp / f"{jobs}.json")]) == 0
        got.append(json.loads((tmp / f"{jobs}.json").read_text()))
    return got


def test_writes_every_variant_and_seed_with_the_command_that_made_it(written):
    d = written[0]
    assert d["command"].startswith("python -m tools.lesson09_curves --steps 4")
    assert (d["data"]["min_words"], d["data"]["max_words"], d["data"]["n_train"], d["data"]["n_valid"]) == (1, 3, 24, 8)
    assert d["train"]["optimizer"] == "sgd" and d["train"]["lr"] == 0.01 and d["train"]["momentum"] == 0.99
    assert list(d["runs"]) == ["baseline", "no SortaGrad"]
    assert 0 < d["durations"]["min"] <= d["durations"]["mean"] <= d["durations"]["max"]
    assert d["configs"]["no SortaGrad"]["sortagrad"] is False and d["configs"]["baseline"]["sortagrad"] is True
    for runs in d["runs"].values():
        assert [r["seed"] for r in runs] == [0, 1]
        for r in runs:
            assert r["step"] == [2, 4] and len(r["loss"]) == 4
            assert all(v > 0 for v in r["valid_loss"]) and all(0 <= w for w in r["wer"])


def test_two_processes_give_the_numbers_of_one(written):
    one, two = written
    assert one["jobs"] == 1 and two["jobs"] == 2
    for name in one["runs"]:
        for a, b in zip(one["runs"][name], two["runs"][name]):
            assert a["seed"] == b["seed"]
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-5)


def test_sgd_is_nesterov_momentum_and_unknown_names_are_refused(tmp_path, monkeypatch):
    made = []
    real = torch.optim.SGD

    def spy(*a, **k):
        made.append(k)
        return real(*a, **k)

    monkeypatch.setattr(torch.optim, "SGD", spy)
    train_set, valid_set = curves.lesson_data(dict(curves.DATA, n_train=8, n_valid=4))
    curves.run(curves.BASE, True, 0, 1, 1, train_set, valid_set, dict(curves.TRAIN, optimizer="sgd", lr=0.02))
    assert made == [dict(lr=0.02, momentum=0.99, nesterov=True)]
    with pytest.raises(ValueError, match="optimizer must be"):
        curves.run(curves.BASE, True, 0, 1, 1, train_set, valid_set, dict(curves.TRAIN, optimizer="rmsprop"))
    with pytest.raises(SystemExit):
        curves.main([*TINY, "--variants", "no such variant", "--out", str(tmp_path / "x.json")])


def test_extend_adds_the_next_seeds_and_keeps_the_first(written, tmp_path):
    src = tmp_path / "one.json"
    src.write_text(json.dumps(written[0]))
    assert curves.main(["--extend", str(src), "--seeds", "1", "--threads", "1", "--out", str(tmp_path / "more.json")]) == 0
    more = json.loads((tmp_path / "more.json").read_text())
    assert more["seeds"] == 3 and more["data"] == written[0]["data"] and more["train"] == written[0]["train"]
    assert " && python -m tools.lesson09_curves --extend" in more["command"]
    for name, runs in more["runs"].items():
        assert [r["seed"] for r in runs] == [0, 1, 2]
        assert runs[:2] == written[0]["runs"][name] and runs[2]["step"] == [2, 4]
