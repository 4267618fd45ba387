"""Numbers that mean what they say (issue 18, item 4): one relative error, and NaN never reported as small."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lessons"))

import yourturn as yt  # noqa: E402
from autograder.checks._support import CheckFailed, check_tensor  # noqa: E402


def test_relative_error_is_the_norm_ratio_of_lesson_01():
    g = torch.Generator().manual_seed(0)
    b = torch.randn(7, 5, generator=g)
    a = b + 0.06 * torch.randn(7, 5, generator=g)
    oracle = np.linalg.norm((a - b).numpy().ravel()) / np.linalg.norm(b.numpy().ravel())
    assert yt.relative_error(a, b) == pytest.approx(float(oracle), rel=1e-6)
    # a uniform 6 % difference reads 0.06, not 1 (CS231n's elementwise max gave 1 near zeros)
    c = torch.tensor([1e-9, 2.0, -3.0])
    assert yt.relative_error(c * 1.06, c) == pytest.approx(0.06, rel=1e-6)


def test_relative_error_edge_values():
    assert yt.relative_error(torch.tensor([-float("inf"), 2.0]), torch.tensor([-float("inf"), 2.0])) == 0.0
    assert yt.relative_error(torch.tensor([-float("inf"), 2.0]), torch.tensor([-5.0, 2.0])) == float("inf")
    assert np.isnan(yt.relative_error(torch.tensor([float("nan"), 2.0]), torch.tensor([1.0, 2.0])))
    assert yt.relative_error(torch.zeros(3), torch.zeros(3)) == 0.0
    assert yt.relative_error(torch.ones(3), torch.zeros(3)) == float("inf")
    assert yt.relative_error(1.5, 2.0) == pytest.approx(0.25)


def test_difference_names_nan():
    msg = yt.difference(torch.tensor([0.0, float("nan"), 1.0]), torch.tensor([0.0, 1.0, 1.0]))
    assert "yours nan" in msg and "1 NaN value" in msg and "= nan" in msg
    assert "e+00" not in msg and " 0.00" not in msg


def test_grader_never_summarises_nan_as_a_small_difference():
    got = torch.tensor([1.0, float("nan"), 3.0, -float("inf")])
    with pytest.raises(CheckFailed) as e:
        check_tensor(got, torch.tensor([1.0, 2.0, 3.0, 4.0]), fn="f", what="x")
    msg = e.value.message
    assert "max |difference| 0" not in msg
    assert "1 NaN in yours" in msg and "1 inf in yours" in msg and "contains NaN" in msg
    with pytest.raises(CheckFailed) as e:   # finite and non-finite differences together: both said
        check_tensor(torch.tensor([1.5, float("nan")]), torch.tensor([1.0, 2.0]), fn="f", what="x")
    assert "1 NaN in yours" in e.value.message and "max |difference| of the others 0.5" in e.value.message
