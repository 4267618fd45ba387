"""Weight averaging of checkpoints (a model soup): reference.checkpoint.average_checkpoints and
``python -m tools.export_model SRC DST --average-with MORE``.  The oracle is torch's own mean over the
stacked tensors of the sources."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reference import DeepSpeech2
from reference.checkpoint import (average_checkpoints, export_checkpoint, load_checkpoint, load_model, save_checkpoint,
                                 soup_runs)
from reference.text import CharEncoder

ROOT = Path(__file__).resolve().parents[1]


def trained_tiny(seed, tmp_path, hidden=16):
    """A tiny DS2 whose BatchNorm statistics have moved (one training-mode forward), saved with a command."""
    torch.manual_seed(seed)
    model = DeepSpeech2(n_freq=161, n_conv=1, conv_channels=(4,), n_rnn=2, rnn_hidden=hidden)
    model.train()
    with torch.no_grad():
        model(torch.randn(3, 1, 161, 40), torch.tensor([40, 33, 25]))
    return save_checkpoint(tmp_path / f"m{seed}-{hidden}.pt", model, CharEncoder(),
                           extra={"command": f"python -m reference.train --seed {seed}"})


def test_the_average_is_the_mean_of_every_float_tensor(tmp_path):
    paths = [trained_tiny(seed, tmp_path) for seed in (0, 1, 2)]
    sources = [load_checkpoint(p)["state_dict"] for p in paths]
    soup = average_checkpoints(paths)
    assert soup["optimizer"] is None
    assert soup["extra"]["averaged"] == [f"python -m reference.train --seed {s}" for s in (0, 1, 2)]
    n_float = 0
    for name, tensor in soup["state_dict"].items():
        if sources[0][name].is_floating_point():
            expected = torch.stack([s[name] for s in sources]).mean(0)
            torch.testing.assert_close(tensor, expected, rtol=1e-6, atol=1e-7)
            n_float += 1
        else:
            assert torch.equal(tensor, sources[0][name])
    assert any("running_var" in name for name in soup["state_dict"]) and n_float > 10


def test_a_soup_of_a_soup_keeps_the_whole_lineage(tmp_path):
    """A soup averaged again with further runs (``make espeak-model``'s second round) lists the first soup's sources
    as one nested entry, not the first soup's own first command as if it had been a single run."""
    first = export_checkpoint(trained_tiny(0, tmp_path), tmp_path / "soup.pt", half=False,
                              average_with=[trained_tiny(1, tmp_path)])
    again = average_checkpoints([first, trained_tiny(2, tmp_path), trained_tiny(3, tmp_path)])
    assert again["extra"]["averaged"] == [["python -m reference.train --seed 0", "python -m reference.train --seed 1"],
                                          "python -m reference.train --seed 2", "python -m reference.train --seed 3"]
    assert soup_runs(again["extra"]["averaged"]) == [f"python -m reference.train --seed {k}" for k in range(4)]


def test_the_soup_of_one_model_with_itself_is_that_model(tmp_path):
    path = trained_tiny(0, tmp_path)
    soup = export_checkpoint(path, tmp_path / "soup.pt", half=False, average_with=[path])
    a, _, _ = load_model(path)
    b, _, state = load_model(soup)
    x, n = torch.randn(2, 1, 161, 50), torch.tensor([50, 37])
    with torch.no_grad():
        torch.testing.assert_close(b(x, n)[0], a(x, n)[0])
    assert len(state["extra"]["averaged"]) == 2


def test_a_checkpoint_from_before_a_config_field_existed_averages_with_a_new_one(tmp_path):
    paths = [trained_tiny(seed, tmp_path) for seed in (0, 1)]
    old = load_checkpoint(paths[1])
    del old["config"]["outputs"]                      # written before DeepSpeech2Config.outputs existed
    torch.save(old, tmp_path / "old.pt")
    soup = average_checkpoints([paths[0], tmp_path / "old.pt"])
    assert soup["config"]["outputs"] == "chars"


def test_models_of_other_shapes_or_too_few_are_refused(tmp_path):
    small, wide = trained_tiny(0, tmp_path), trained_tiny(1, tmp_path, hidden=24)
    with pytest.raises(ValueError, match="another config .* only models of one architecture"):
        average_checkpoints([small, wide])
    with pytest.raises(ValueError, match="at least two checkpoints, got 1"):
        average_checkpoints([small])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        average_checkpoints([small, tmp_path / "missing.pt"])


def test_export_model_cli_writes_a_half_precision_soup(tmp_path):
    paths = [trained_tiny(seed, tmp_path) for seed in (0, 1, 2)]
    out = tmp_path / "models" / "soup.pt"
    run = subprocess.run([sys.executable, "-m", "tools.export_model", str(paths[0]), str(out),
                          "--average-with", str(paths[1]), str(paths[2])], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "the mean of 3 checkpoints" in run.stdout
    state = load_checkpoint(out)
    assert all(t.dtype == torch.float16 for t in state["state_dict"].values() if t.is_floating_point())
    expected = average_checkpoints(paths)["state_dict"]
    for name, tensor in state["state_dict"].items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor.float(), expected[name], rtol=1e-3, atol=1e-3)
    wide = trained_tiny(3, tmp_path, hidden=24)
    bad = subprocess.run([sys.executable, "-m", "tools.export_model", str(paths[0]), str(tmp_path / "x.pt"),
                          "--average-with", str(wide)], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "another config" in bad.stderr
    assert not (tmp_path / "x.pt").exists()
