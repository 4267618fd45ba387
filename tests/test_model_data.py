"""The model (batch invariance, derived sizes), SortaGrad, collation and the synthetic speech."""
import pytest
import torch

from reference import (CharEncoder, DeepSpeech2, DeepSpeech2Config, Sample, collate_batch, compute_spectrogram,
                       generate_synthetic_audio, generate_synthetic_dataset, sortagrad_batches, sortagrad_sampler)
from reference.layers import conv_output_length


@pytest.mark.parametrize("kw", [
    dict(n_conv=1, n_rnn=2, rnn_hidden=16),
    dict(n_conv=2, n_rnn=1, rnn_hidden=8, rnn_type="rnn"),
    dict(n_conv=3, n_rnn=1, rnn_hidden=8, conv_channels=(4, 4, 4)),
    dict(n_conv=1, n_rnn=2, rnn_hidden=8, bidirectional=False, lookahead=3, fc_hidden=12),
    dict(n_conv=1, n_rnn=1, rnn_hidden=8, merge="concat", batch_norm="input"),
])
def test_eval_outputs_do_not_depend_on_batch_mates(kw):
    torch.manual_seed(0)
    model = DeepSpeech2(n_freq=161, vocab_size=29, **kw)
    lengths = torch.tensor([60, 23, 41])
    feats = torch.randn(3, 1, 161, 60)
    model.train()
    model(feats, lengths)                                   # move the running statistics off their init
    model.eval()
    with torch.no_grad():
        lp, out_len = model(feats * 1.0, lengths)
        assert lp.shape == (int(out_len.max()), 3, 29)
        for b in range(3):
            L = int(lengths[b])
            alone, alone_len = model(feats[b : b + 1, :, :, :L], lengths[b : b + 1])
            assert int(alone_len) == int(out_len[b])
            torch.testing.assert_close(lp[: int(out_len[b]), b], alone[:, 0], rtol=1e-4, atol=1e-5)
            noisy = feats.clone()
            noisy[b, :, :, L:] = 100.0                      # garbage in the padding changes nothing
            torch.testing.assert_close(model(noisy, lengths)[0][: int(out_len[b]), b], lp[: int(out_len[b]), b])


def test_output_lengths_come_from_the_layers():
    model = DeepSpeech2(n_freq=161, n_conv=2, n_rnn=1, rnn_hidden=8)
    lengths = torch.tensor([100, 57])
    expected = lengths
    for conv in model.convs:
        c = conv.conv
        expected = conv_output_length(expected, c.kernel_size[1], c.stride[1], c.padding[1])
    assert model.output_lengths(lengths).tolist() == expected.tolist()
    lp, out = model(torch.randn(2, 1, 161, 100), lengths)
    assert lp.shape[0] == int(out.max()) and out.tolist() == expected.tolist()
    assert torch.allclose(lp.exp().sum(-1), torch.ones(()), atol=1e-5)


def test_paper_config_and_bad_input():
    cfg = DeepSpeech2Config()
    assert cfg.n_freq == 161 and cfg.vocab_size == 29 and cfg.rnn_type == "gru" and cfg.merge == "sum"
    assert DeepSpeech2Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown DeepSpeech2Config fields"):
        DeepSpeech2Config.from_dict({"hidden": 3})
    with pytest.raises(ValueError, match="unidirectional"):
        DeepSpeech2Config(lookahead=2)
    with pytest.raises(ValueError, match="conv_time_stride must be an int >= 1"):
        DeepSpeech2Config(conv_time_stride=-1)
    model = DeepSpeech2(n_freq=161, n_rnn=1, rnn_hidden=8)
    with pytest.raises(ValueError, match=r"features must be \(B, 1, 161, T\)"):
        model(torch.randn(2, 1, 129, 30), torch.tensor([30, 30]))
    with pytest.raises(ValueError, match="feature_lengths"):
        model(torch.randn(2, 1, 161, 30), torch.tensor([31, 30]))
    with pytest.raises(ValueError, match="4 dimensions"):
        model(torch.randn(161, 30), torch.tensor([30]))


class _S:  # a minimal sample: anything with .audio, .transcript, .sample_rate
    def __init__(self, n, text="ab"):
        self.audio, self.transcript, self.sample_rate = torch.zeros(n), text, 16000


def test_sortagrad_sampler_and_batches():
    data = [_S(n) for n in [500, 300, 300, 900, 100, 700, 300]]
    assert sortagrad_sampler(data, 0) == [4, 1, 2, 6, 0, 5, 3]
    state = torch.get_rng_state()
    e1, e1_again, e2 = sortagrad_sampler(data, 1, seed=3), sortagrad_sampler(data, 1, seed=3), sortagrad_sampler(data, 2, seed=3)
    assert torch.equal(state, torch.get_rng_state()), "the global RNG must not be touched"
    assert e1 == e1_again and sorted(e1) == list(range(7)) and e1 != e2
    b0 = sortagrad_batches(data, 3, 0)
    assert b0 == [[4, 1, 2], [6, 0, 5], [3]]
    b1 = sortagrad_batches(data, 3, 1, seed=5)
    assert sorted(map(tuple, b1)) == sorted(map(tuple, b0)), "later epochs reorder the same minibatches"
    assert any(sortagrad_batches(data, 3, e, seed=5) != b0 for e in range(1, 6)), "later epochs are not sorted"
    with pytest.raises(ValueError, match="batch_size"):
        sortagrad_batches(data, 0, 0)


def test_collate_batch():
    enc = CharEncoder()
    samples = [Sample(torch.randn(3200) * 0.1, "hi there"), Sample(torch.randn(1600) * 0.1, "a")]
    batch = collate_batch(samples, enc)
    assert batch.features.shape == (2, 1, 161, 19) and batch.feature_lengths.tolist() == [19, 9]
    assert batch.targets.shape == (2, 8) and batch.target_lengths.tolist() == [8, 1]
    assert batch.targets[1].tolist() == [1] + [0] * 7 and batch.features[1, :, :, 9:].eq(0).all()
    torch.testing.assert_close(batch.features[0, 0], compute_spectrogram(samples[0].audio))
    assert collate_batch(samples, enc, n_fft=256).features.shape[2] == 129
    with pytest.raises(ValueError, match=r"sample 0 .*'!'"):
        collate_batch([Sample(torch.randn(800), "hi!")], enc)
    with pytest.raises(ValueError, match="at least one sample"):
        collate_batch([], enc)


def test_synthetic_speech_is_deterministic_and_speaker_dependent():
    a, b = generate_synthetic_audio("cat", seed=1), generate_synthetic_audio("cat", seed=1)
    assert torch.equal(a, b) and a.dtype == torch.float32 and a.dim() == 1 and a.abs().max() <= 1
    assert not torch.equal(a, generate_synthetic_audio("cat", seed=2))
    assert generate_synthetic_audio("cats and dogs").numel() > a.numel()
    d1, d2 = generate_synthetic_dataset(6, seed=4), generate_synthetic_dataset(6, seed=4)
    assert [s.transcript for s in d1] == [s.transcript for s in d2]
    assert all(torch.equal(x.audio, y.audio) for x, y in zip(d1, d2))
    assert all(1 <= len(s.transcript.split()) <= 2 and s.sample_rate == 16000 for s in d1)
    with pytest.raises(ValueError, match="cannot synthesize"):
        generate_synthetic_audio("c4t")


def test_synthetic_letters_are_not_one_tone_each():
    """A letter's spectrum changes with the speaker (pitch, vocal tract): not one fixed tone per letter."""
    from reference.synthetic import SyntheticSpeaker
    lo = compute_spectrogram(generate_synthetic_audio("aaaa", speaker=SyntheticSpeaker(f0=100, tract=0.92)))
    hi = compute_spectrogram(generate_synthetic_audio("aaaa", speaker=SyntheticSpeaker(f0=220, tract=1.08)))
    corr = torch.corrcoef(torch.stack([lo.mean(1), hi.mean(1)]))[0, 1]
    assert corr < 0.98
