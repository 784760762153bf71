"""LSTM over each account's recent transactions + GAT over the past money graph + an MLP head."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch_geometric.nn import GATv2Conv

from apps.fraud.features import (
    CONTEXT_FEATURE_NAMES,
    EDGE_FEATURE_NAMES,
    EVENT_EXTRA_NAMES,
    NODE_FEATURE_NAMES,
    ROW_FEATURE_NAMES,
)
from common.config import Constraints, Interval

# Incoming edges per call of a GAT layer. GATv2 builds several (edges × heads × hidden) float tensors per
# call; a snapshot window's graph at PaySim's size has ~900k edges (220 MB each), so the layer streams them
# through memory. In chunks of targets they stay in cache: 2.1x faster there, 1.5x on medium (measured).
EDGES_PER_CHUNK = 16_384
# GAT layers the Spark parts' past covers (`apps.fraud.parts` carries the edges into accounts one hop away).
MAX_GRAPH_LAYERS = 2


@dataclass
class FraudModelConfig:
    """Architecture (section `model`); `sequence`/`graph` false gives the ablations."""

    CONSTRAINTS: ClassVar[Constraints] = {"hidden": Interval(4), "lstm_layers": Interval(1), "gat_heads": Interval(1),
                                          "graph_layers": Interval(1, MAX_GRAPH_LAYERS),
                                          "dropout": Interval(0, 1, "left")}

    sequence: bool = True
    graph: bool = True
    hidden: int = 16
    lstm_layers: int = 1
    gat_heads: int = 2
    graph_layers: int = 1
    dropout: float = 0.1


@dataclass
class FraudInputSizes:
    """Feature widths the network is built for; stored with the weights."""

    row: int
    context: int
    event: int
    node: int
    edge: int

    @classmethod
    def from_features(cls) -> FraudInputSizes:
        """The widths `apps.fraud.features` produces today."""
        return cls(row=len(ROW_FEATURE_NAMES), context=len(CONTEXT_FEATURE_NAMES),
                   event=len(ROW_FEATURE_NAMES) + len(EVENT_EXTRA_NAMES),
                   node=len(NODE_FEATURE_NAMES), edge=len(EDGE_FEATURE_NAMES))


class SequenceEncoder(nn.Module):
    """Encodes each account's last K events (oldest first, right-padded) with an LSTM.

    The state after the last real event is read out; padding comes after it, so it cannot leak in.
    Empty histories give zeros without running the LSTM: in real PaySim nearly every nameOrig is new.
    (Plain padded batches ran faster on CPU than packed sequences.)
    """

    def __init__(self, n_in: int, hidden: int, layers: int):
        super().__init__()
        self.lstm = nn.LSTM(n_in, hidden, num_layers=layers, batch_first=True)

    def forward(self, seq: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """(S, K, F) sequences and their (S,) lengths → (S, H)."""
        nonempty = torch.nonzero(length > 0).squeeze(1)
        out, _ = self.lstm(seq[nonempty])
        last = out[torch.arange(len(nonempty), device=seq.device), length[nonempty] - 1]
        return last.new_zeros(len(seq), last.shape[1]).index_copy(0, nonempty, last)


class GraphEncoder(nn.Module):
    """One or two GATv2 layers with edge features, each computed only at the nodes the next layer reads.

    `x` is (N, F_node). `layers` holds, per conv layer, (edge_index (2, E_l), edge_attr (E_l, F_edge), n_l):
    layer l computes the first n_l nodes (a prefix of the previous layer's), hearing along its edges, whose
    targets lie in that prefix. Returns (n_last, H). With every layer given the whole graph and n_l = N it
    is the plain full-graph GAT; a message-flow graph (`apps.fraud.dataset.message_flow`) gives its targets
    the same embeddings at a fraction of the cost.
    """

    def __init__(self, n_node: int, n_edge: int, hidden: int, heads: int, dropout: float, n_layers: int):
        super().__init__()
        self.embed = nn.Linear(n_node, hidden)
        # `heads` for every layer but the last, which has one, so embeddings are `hidden` wide at any depth.
        # (conv1/conv2, not a ModuleList: the names of the weights in models saved before depth was a setting.)
        self.conv1 = GATv2Conv(hidden, hidden, heads=heads if n_layers > 1 else 1, edge_dim=n_edge, dropout=dropout)
        self.conv2 = GATv2Conv(hidden * heads, hidden, heads=1, edge_dim=n_edge, dropout=dropout) \
            if n_layers > 1 else None
        self.act = nn.ELU()

    def forward(self, x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor, int]]) -> torch.Tensor:
        h = self.act(self.embed(x))
        convs = [conv for conv in (self.conv1, self.conv2) if conv is not None]
        for conv, (edge_index, edge_attr, n_targets) in zip(convs, layers, strict=True):
            h = self.act(conv_in_target_chunks(conv, h, edge_index, edge_attr, n_targets))
        return h


def conv_in_target_chunks(conv: GATv2Conv, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor,
                          n_targets: int, edges_per_chunk: int | None = None) -> torch.Tensor:
    """`conv((h, h[:n_targets]), edge_index, edge_attr)` → (n_targets, out), run over ranges of targets with
    about `edges_per_chunk` incoming edges each (see EDGES_PER_CHUNK), when scoring (no autograd: training's
    per-batch graphs are small, and it measured no faster chunked) and the edges come sorted by target (as
    message_flow and snapshots build them); else in one call. A target hears all its edges in one chunk, so
    its attention softmax, its self-loop (source i is target i: the chunk's targets lead its sources) and
    its sum are those of one call: the same numbers, bit for bit on medium and at PaySim's size."""
    edges_per_chunk = edges_per_chunk or EDGES_PER_CHUNK
    target = edge_index[1]
    n_edges = target.numel()
    if n_edges <= edges_per_chunk or torch.is_grad_enabled() or bool((target[1:] < target[:-1]).any()):
        return conv((h, h[:n_targets]), edge_index, edge_attr)
    bounds = [*range(0, n_targets, max(1, n_targets * edges_per_chunk // n_edges)), n_targets]
    first_edge = torch.searchsorted(target, torch.tensor(bounds, device=target.device)).tolist()
    outs = []
    for a, b, e0, e1 in zip(bounds[:-1], bounds[1:], first_edge[:-1], first_edge[1:], strict=True):
        source = edge_index[0, e0:e1]
        inside = (source >= a) & (source < b)
        others, position = torch.unique(source[~inside], return_inverse=True)
        local = torch.empty_like(source)
        local[inside] = source[inside] - a
        local[~inside] = position + (b - a)
        outs.append(conv((torch.cat([h[a:b], h[others]]), h[a:b]), torch.stack([local, target[e0:e1] - a]),
                         edge_attr[e0:e1]))
    return torch.cat(outs)


class FraudLSTMGAT(nn.Module):
    """Scores a transaction from its own row, its two accounts' histories and their past graph."""

    def __init__(self, cfg: FraudModelConfig, sizes: FraudInputSizes):
        super().__init__()
        self.cfg, self.sizes = cfg, sizes
        h = cfg.hidden
        self.row_encoder = nn.Sequential(nn.Linear(sizes.row + sizes.context, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        width = h
        if cfg.sequence:
            self.sequence_encoder = SequenceEncoder(sizes.event, h, cfg.lstm_layers)
            width += 2 * h
        if cfg.graph:
            self.graph_encoder = GraphEncoder(sizes.node, sizes.edge, h, cfg.gat_heads, cfg.dropout, cfg.graph_layers)
            width += 2 * h
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(width, h), nn.ReLU(), nn.Linear(h, 2))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 2) logits. The graph comes as a message-flow graph (`node_x`, `edge_index_1`, `edge_attr_1`,
        `edge_index_2`, `edge_attr_2`, `flow_sizes`) with `orig_pos`/`dest_pos` (the batch's accounts among
        its targets), or as `orig_embedding`/`dest_embedding` (B, H) already encoded."""
        parts = [self.row_encoder(torch.cat([batch["row"], batch["context"]], 1))]
        if self.cfg.sequence:
            seq, length = batch["sequence"], batch["sequence_length"]
            b, sides, k, f = seq.shape
            enc = self.sequence_encoder(seq.reshape(b * sides, k, f), length.reshape(-1))
            parts.append(enc.reshape(b, -1))
        if self.cfg.graph and "orig_embedding" in batch:  # computed once for the batch's window (scoring)
            parts += [batch["orig_embedding"], batch["dest_embedding"]]
        elif self.cfg.graph:
            z = self.graph_encoder(batch["node_x"], flow_layers(batch))
            parts += [z[batch["orig_pos"]], z[batch["dest_pos"]]]
        return self.head(torch.cat(parts, 1))


def flow_layers(batch: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """GraphEncoder's `layers` from a batch's message-flow tensors."""
    sizes = batch["flow_sizes"].tolist()
    return [(batch[f"edge_index_{i}"], batch[f"edge_attr_{i}"], sizes[i - 1]) for i in range(1, len(sizes) + 1)]
