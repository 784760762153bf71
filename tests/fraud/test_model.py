"""The fraud network's branches: what the sequence encoder reads of a padded history and gives for an empty
one; the GAT layer run in chunks of targets gives what one call gives."""
import pytest
import torch
from torch_geometric.nn import GATv2Conv

from apps.fraud.model import SequenceEncoder, conv_in_target_chunks


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


def _graph(n_nodes: int, n_targets: int, n_edges: int, seed: int):
    """Random edges into the first `n_targets` nodes, sorted by target, with self-loops and repeats among them
    (targets 0 and 3 hear from themselves) and some targets with no edge at all."""
    g = torch.Generator().manual_seed(seed)
    source = torch.randint(0, n_nodes, (n_edges,), generator=g)
    target = torch.randint(0, n_targets - 5, (n_edges,), generator=g)  # the last five targets hear nothing
    source[:2], target[:2] = torch.tensor([0, 3]), torch.tensor([0, 3])
    order = torch.argsort(target, stable=True)
    return (torch.randn(n_nodes, 8, generator=g), torch.stack([source[order], target[order]]),
            torch.rand(n_edges, 6, generator=g))


@pytest.mark.parametrize("edges_per_chunk", [1, 7, 50, 10_000])
def test_a_gat_layer_in_chunks_of_targets_gives_what_one_call_gives(edges_per_chunk):
    torch.manual_seed(0)
    conv = GATv2Conv(8, 4, heads=2, edge_dim=6).eval()
    h, edge_index, edge_attr = _graph(n_nodes=60, n_targets=40, n_edges=300, seed=1)
    with torch.no_grad():
        whole = conv((h, h[:40]), edge_index, edge_attr)
        chunked = conv_in_target_chunks(conv, h, edge_index, edge_attr, 40, edges_per_chunk)
    assert chunked.shape == whole.shape == (40, 8)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)


def test_edges_out_of_target_order_or_a_graph_for_training_go_through_in_one_call():
    torch.manual_seed(0)
    conv = GATv2Conv(8, 4, heads=2, edge_dim=6).eval()
    calls = []
    conv.register_forward_pre_hook(lambda module, args: calls.append(1))
    h, edge_index, edge_attr = _graph(n_nodes=60, n_targets=40, n_edges=300, seed=2)
    with torch.no_grad():
        conv_in_target_chunks(conv, h, edge_index, edge_attr, 40, 7)
    assert len(calls) > 1  # sorted edges, scoring: in chunks
    calls.clear()
    shuffled = torch.randperm(300)
    with torch.no_grad():
        chunked = conv_in_target_chunks(conv, h, edge_index[:, shuffled], edge_attr[shuffled], 40, 7)
        whole = conv((h, h[:40]), edge_index[:, shuffled], edge_attr[shuffled])
    assert len(calls) == 2  # one call each
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
    calls.clear()
    h.requires_grad_(True)
    out = conv_in_target_chunks(conv, h, edge_index, edge_attr, 40, 7)
    assert len(calls) == 1  # training: one call
    out.sum().backward()
    assert h.grad is not None and h.grad[:40].abs().sum() > 0


def test_a_model_saved_before_the_depth_was_a_setting_loads_as_the_two_layer_model_it_is(tmp_path):
    """Bundles written before `model.graph_layers` existed hold two GAT layers (conv1, conv2) and no depth in
    their spec; they load with every weight in place, while a new bundle keeps the depth it was trained with."""
    import numpy as np
    import yaml

    from apps.fraud.features import FraudFeatureConfig, Standardizer
    from apps.fraud.model import FraudInputSizes, FraudLSTMGAT, FraudModelConfig
    from apps.fraud.scorer import FraudScorer

    sizes = FraudInputSizes.from_features()
    std = Standardizer(np.zeros(sizes.row, np.float32), np.ones(sizes.row, np.float32))
    for layers in (1, 2):
        torch.manual_seed(0)
        network = FraudLSTMGAT(FraudModelConfig(hidden=8, graph_layers=layers), sizes)
        folder = FraudScorer(network, FraudFeatureConfig(), std, 0.5).save(tmp_path / f"layers{layers}")
        assert FraudScorer.load(folder).network.cfg.graph_layers == layers
    spec = yaml.safe_load((folder / "spec.yaml").read_text())
    del spec["model"]["graph_layers"]  # as the old bundles wrote it
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    old = FraudScorer.load(folder).network
    assert old.cfg.graph_layers == 2 and old.graph_encoder.conv2 is not None
    for name, value in network.state_dict().items():
        assert torch.equal(old.state_dict()[name], value)
