"""SpecAugment-style masking: what it may and may not touch."""
import pytest
import torch

from reference import CharEncoder
from reference.augment import SpecAugment
from reference.data import Batch, Sample, collate_batch


def _batch(lengths=(120, 37, 80, 5), n_freq=161, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    x = torch.randn(len(lengths), 1, n_freq, T, generator=g) + 3.0     # no exact zeros
    for b, L in enumerate(lengths):
        x[b, :, :, L:] = 0.0
    return Batch(x, torch.tensor(lengths), torch.ones(len(lengths), 2, dtype=torch.long),
                 torch.full((len(lengths),), 2), ["ab"] * len(lengths))


def test_masks_are_bands_and_spans_within_the_limits_and_padding_stays_zero():
    batch = _batch()
    aug = SpecAugment(freq_masks=2, freq_width=20, time_masks=3, time_width=0.1)
    for seed in range(20):
        out = aug(batch, torch.Generator().manual_seed(seed))
        assert out.features.shape == batch.features.shape
        changed = out.features != batch.features
        assert torch.equal(out.features[changed], torch.zeros(int(changed.sum())))          # masked means 0
        for b, L in enumerate(batch.feature_lengths.tolist()):
            x = out.features[b, 0]
            assert x[:, L:].eq(0).all()                                                    # padding untouched
            freq_masked = x[:, :L].eq(0).all(1)                                            # whole bands
            time_masked = x[:, :L].eq(0).all(0)                                            # whole spans
            assert int(freq_masked.sum()) <= 2 * 20
            assert int(time_masked.sum()) <= 3 * int(0.1 * L)
            # every zero is explained by a masked band or a masked span
            assert torch.equal(x[:, :L].eq(0), freq_masked[:, None] | time_masked[None, :])
    # the same generator seed gives the same masks; the batch itself is never modified in place
    a = aug(batch, torch.Generator().manual_seed(3)).features
    assert torch.equal(a, aug(batch, torch.Generator().manual_seed(3)).features)
    assert torch.equal(batch.features, _batch().features)


def test_masks_are_actually_drawn():
    batch = _batch(lengths=(200, 200, 200, 200))
    out = SpecAugment(freq_masks=2, freq_width=30, time_masks=2, time_width=0.2)(batch, torch.Generator().manual_seed(0))
    assert (out.features == 0).float().mean() > 0.05


def test_no_masks_is_the_identity():
    batch = _batch()
    assert torch.equal(SpecAugment(0, 0, 0, 0.0)(batch).features, batch.features)


@pytest.mark.parametrize("kwargs", [dict(freq_masks=-1), dict(freq_width=2.5), dict(time_masks=True), dict(time_width=1.5)])
def test_bad_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        SpecAugment(**kwargs)


def test_fit_with_augmentation_resumes_exactly():
    from reference.training import fit
    from reference import DeepSpeech2
    enc = CharEncoder()
    g = torch.Generator().manual_seed(0)
    data = [Sample(torch.randn(4000 + 400 * i, generator=g) * 0.1, "ab" if i % 2 else "ba") for i in range(12)]
    aug = SpecAugment(2, 10, 1, 0.1)

    def model():
        torch.manual_seed(0)
        return DeepSpeech2(n_conv=1, conv_channels=(2,), n_rnn=1, rnn_hidden=8)

    half = model()
    opt = torch.optim.Adam(half.parameters(), lr=1e-3)
    h1 = fit(half, data, enc, epochs=1, batch_size=4, progress=False, augment=aug, optimizer=opt, anneal=1.0)
    full2 = model()                       # constant rate: the LR schedule of 1 + 1 epochs equals that of 2
    hist2 = fit(full2, data, enc, epochs=2, batch_size=4, progress=False, augment=aug, anneal=1.0)
    h2 = fit(half, data, enc, epochs=2, batch_size=4, progress=False, augment=aug, optimizer=opt, anneal=1.0,
             history=h1, start_epoch=1, start_index=0)
    assert h2.loss == hist2.loss
    for p, q in zip(half.parameters(), full2.parameters()):
        torch.testing.assert_close(p, q)


def test_speed_perturb_changes_length_and_pitch_by_the_factor():
    """A 1 s, 1000 Hz tone at speed f lasts 1/f s and sounds at 1000 f Hz (the FFT peak); the original stays first."""
    import math

    from reference import Sample
    from reference.augment import speed_perturb

    t = torch.arange(16000, dtype=torch.float64) / 16000
    tone = Sample((0.5 * torch.sin(2 * math.pi * 1000 * t)).float(), "a tone", 16000, "x")
    out = speed_perturb([tone], (0.9, 1.1))
    assert len(out) == 3 and out[0] is tone and all(s.transcript == "a tone" and s.speaker == "x" for s in out)
    for s, f in zip(out[1:], (0.9, 1.1)):
        assert abs(s.audio.numel() - 16000 / f) <= 2
        spectrum = torch.fft.rfft(s.audio.double() * torch.hann_window(s.audio.numel(), dtype=torch.float64))
        peak_hz = int(spectrum.abs().argmax()) * 16000 / s.audio.numel()
        assert abs(peak_hz - 1000 * f) < 5, (f, peak_hz)
    with pytest.raises(ValueError, match="speed factors must lie in"):
        speed_perturb([tone], (3.0,))
