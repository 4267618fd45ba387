"""The walkthrough notebook's calls, unchanged but for the import line, run and give the documented shapes."""
import torch

from reference import (CharEncoder, ClippedReLU, DeepSpeech2, collate_batch, compute_spectrogram,
                       generate_synthetic_audio, generate_synthetic_dataset, greedy_decode, sortagrad_sampler,
                       train_step, word_error_rate)


def test_walkthrough_calls():
    audio = generate_synthetic_audio('cat', sample_rate=16000)
    assert audio.dim() == 1 and audio.dtype == torch.float32
    spec = compute_spectrogram(audio, sample_rate=16000, n_fft=256)
    assert spec.shape[0] == 129 and spec.dim() == 2
    encoder = CharEncoder('english')
    assert encoder.vocab_size == 29 and encoder.blank_idx == 0
    assert encoder.decode(encoder.encode('cat')) == 'cat'
    assert encoder.ctc_decode([0, 0, 8, 8, 0, 5, 5, 5, 0, 12, 12, 0]) == 'hel'
    model = DeepSpeech2(n_freq=129, vocab_size=29, n_conv=1, n_rnn=2, rnn_hidden=128, rnn_type='gru')
    train_data = generate_synthetic_dataset(8, min_words=1, max_words=2)
    assert all(hasattr(s, 'audio') and hasattr(s, 'transcript') for s in train_data)
    batch = collate_batch(train_data[:4], encoder, n_fft=256)
    assert batch.features.shape[:3] == (4, 1, 129)
    assert batch.feature_lengths.shape == (4,) and batch.target_lengths.shape == (4,)
    log_probs, out_lens = model(batch.features, batch.feature_lengths)
    assert log_probs.shape[1:] == (4, 29) and log_probs.shape[0] == int(out_lens.max())
    hyps = greedy_decode(log_probs, encoder, out_lens)
    assert len(hyps) == 4 and all(isinstance(h, str) for h in hyps)
    order = sortagrad_sampler(train_data, 0)
    assert sorted(order) == list(range(8))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = train_step(model, batch, optimizer)
    assert isinstance(loss, float) and loss > 0
    wer = word_error_rate([s.transcript for s in train_data[:4]], hyps)
    assert 0.0 <= wer
    assert ClippedReLU()(torch.tensor([30.0, -1.0])).tolist() == [20.0, 0.0]
