"""The static scan names torch's private bindings, the one route to the library kernels the worker
cannot replace at run time (``torch._C._VariableFunctions`` is read-only)."""
from __future__ import annotations

import pytest

from autograder.grading.scan import scan_source
from autograder.spec import EXERCISES

ROUTES = {
    "attribute": "torch._C._VariableFunctions.ctc_loss(lp, t, il, tl, 0, 1, False)",
    "getattr": "getattr(getattr(torch, '_C'), '_VariableFunctions').ctc_loss",
    "vf": "torch._VF.gru",
    "bound_self": "torch.zeros.__self__.ctc_loss(lp, t, il, tl)",
    "from_import": None,
}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_private_binding_routes_are_findings(route):
    if ROUTES[route] is None:
        src = "import torch\nfrom torch._C import _VariableFunctions as V\n"
    else:
        src = f"import torch\ndef ctc_loss(lp, t, il, tl):\n    return {ROUTES[route]}\n"
    found = scan_source(src, EXERCISES["ex04"])
    assert any("private bindings" in f.what or "reads .ctc_loss" in f.what or "gru" in f.what for f in found), found


def test_ordinary_torch_code_is_not_a_finding():
    src = "import torch\nimport torch.nn.functional as F\ndef f(x):\n    return F.log_softmax(torch.zeros(3), -1)\n"
    for ex in EXERCISES.values():
        assert scan_source(src, ex) == [], ex.id
