"""The checks' comparison: an infinite expected value is matched only by the same infinity.

(``rtol * inf`` is ``inf``, so a plain ``|got - expected| <= atol + rtol * |expected|`` accepted any
finite number where the answer is infinite: ``-1e30`` for an unreachable CTC state, 0 for an
impossible target.)
"""
from __future__ import annotations

import pytest
import torch

from autograder.checks._support import CheckFailed, check_tensor

INF = float("inf")


@pytest.mark.parametrize("got", [[-1e30, 0.5], [-3.4e38, 0.5], [INF, 0.5], [float("nan"), 0.5]])
def test_a_finite_or_other_value_where_minus_inf_is_expected_fails(got):
    with pytest.raises(CheckFailed) as e:
        check_tensor(torch.tensor(got), torch.tensor([-INF, 0.5]), fn="f", what="x", rtol=1e-4, atol=1e-4)
    assert "index 0" in e.value.message


@pytest.mark.parametrize("got", [[0.0, 11.0], [1e30, 11.0]])
def test_a_finite_loss_where_inf_is_expected_fails_and_says_so(got):
    with pytest.raises(CheckFailed) as e:
        check_tensor(torch.tensor(got), torch.tensor([INF, 11.0]), fn="ctc_loss", what="x", rtol=1e-4, atol=1e-4)
    assert "finite in yours where the expected value is infinite" in e.value.message


def test_the_same_infinities_and_close_values_pass():
    check_tensor(torch.tensor([-INF, INF, 1.00001]), torch.tensor([-INF, INF, 1.0]), fn="f", what="x",
                 rtol=1e-4, atol=1e-4)
