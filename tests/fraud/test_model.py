"""The fraud network's sequence branch: what it reads of a padded history, and what an empty one gives."""
import torch

from apps.fraud.model import SequenceEncoder


def test_the_sequence_encoder_reads_the_state_after_the_last_real_event_and_zeros_for_no_history():
    torch.manual_seed(0)
    encoder = SequenceEncoder(n_in=5, hidden=8, layers=1)
    seq, length = torch.randn(6, 4, 5), torch.tensor([0, 1, 4, 0, 2, 3])
    out = encoder(seq, length)

    states, _ = encoder.lstm(seq)  # every sequence through the LSTM, padding included
    for i, n in enumerate(length.tolist()):
        expected = states[i, n - 1] if n else torch.zeros(8)
        assert torch.allclose(out[i], expected, atol=1e-6)
    seq[1, 1:] = 99.0  # padding after the last real event changes nothing
    assert torch.allclose(encoder(seq, length)[1], out[1])
    assert not encoder(seq, torch.zeros(6, dtype=torch.long)).any()  # a batch with no history at all
