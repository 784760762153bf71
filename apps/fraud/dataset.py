"""Batches for the fraud model: rows of one snapshot window, their account histories and past graph."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from apps.fraud.features import EVENT_EXTRA_NAMES, MoneyGraph, Standardizer, TransactionTables
from common.arrays import unique_sorted


class WindowBatchSampler(Sampler[np.ndarray]):
    """Yields arrays of row indices, each from a single snapshot window, so a batch shares one graph.

    Windows are visited in random order (or time order when not shuffling), each window's batches
    back to back; under torchrun every rank takes every world_size-th batch.
    """

    def __init__(self, rows: np.ndarray, windows: np.ndarray, batch_size: int, shuffle: bool,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        self.rows = np.asarray(rows)
        self.windows = np.asarray(windows)[self.rows]
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self._unique_windows = unique_sorted(self.windows)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed + self.epoch)
        windows = rng.permutation(self._unique_windows) if self.shuffle else self._unique_windows
        batches = []
        for w in windows:
            rows = self.rows[self.windows == w]
            if self.shuffle:
                rows = rng.permutation(rows)
            batches.extend(rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size))
        if self.world_size > 1:
            batches = batches + batches[: (-len(batches)) % self.world_size]
            batches = batches[self.rank :: self.world_size]
        return batches

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


class MessageFlow(NamedTuple):
    """An L-layer GNN's computation around some accounts of one snapshot window (PyG's NeighborLoader
    layout, with every neighbour kept): local node ids put the targets first, then the nodes each earlier
    layer computes, then the inputs only the first layer reads."""

    node_x: torch.Tensor  # (N, F_node) input features in local order
    layers: list[tuple[torch.Tensor, torch.Tensor, int]]  # per conv: local edge_index (2, E_l), edge_attr, n_l
    account_positions: torch.Tensor  # (len(accounts),) the GNN output row of each account asked for, in order
    # (the outputs are the distinct accounts asked for, sorted: local ids 0..A-1)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The flow as FraudLSTMGAT reads it from a batch (see `apps.fraud.model.flow_layers`)."""
        out = {"node_x": self.node_x, "flow_sizes": torch.tensor([n for _, _, n in self.layers])}
        for i, (edge_index, edge_attr, _) in enumerate(self.layers, 1):
            out[f"edge_index_{i}"], out[f"edge_attr_{i}"] = edge_index, edge_attr
        return out


def _incoming(pointer: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Ids of the edges into `nodes`, from a CSR pointer over edges sorted by target."""
    starts, counts = pointer[nodes], pointer[nodes + 1] - pointer[nodes]
    return np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())


def message_flow(graph: MoneyGraph, window: int, accounts: np.ndarray, n_layers: int) -> MessageFlow:
    """Only what an `n_layers` GNN needs to embed `accounts` in snapshot `window`: the last layer runs at
    them over their incoming edges, the one before at them and their senders, and so on; every other node
    is skipped. Each target's embedding is what a GNN run over the whole snapshot gives it (to float
    rounding)."""
    snapshot = graph.chosen_snapshot(window)
    source, target = graph.source, graph.target
    nodes = unique_sorted(accounts)
    # Local ids in the graph's scratch array (all -1 between calls): measured 2x faster than relabelling by
    # searchsorted, and only the flow's own entries are written, however many accounts the graph holds.
    local = graph.relabel_scratch
    local[nodes] = np.arange(len(nodes))
    try:
        hops = []
        for _ in range(n_layers):  # from the last layer back to the first
            edges = snapshot.edges[_incoming(snapshot.pointer, nodes)]
            hops.append((edges, len(nodes)))
            new = unique_sorted(source[edges])
            new = new[local[new] < 0]
            local[new] = np.arange(len(nodes), len(nodes) + len(new))
            nodes = np.concatenate([nodes, new])
        layers = [(torch.from_numpy(np.stack([local[source[e]], local[target[e]]])),
                   torch.from_numpy(graph.edge_attr(window, e)), n) for e, n in reversed(hops)]
        positions = torch.from_numpy(local[accounts])  # the targets are the sorted accounts: ids 0..A-1
    finally:
        local[nodes] = -1
    return MessageFlow(torch.from_numpy(snapshot.x[nodes]), layers, positions)


class FraudBatches(Dataset):
    """`dataset[rows]` builds one model batch for an array of row indices (use with batch_size=None)."""

    def __init__(self, tables: TransactionTables, standardizer: Standardizer, graph: MoneyGraph | None,
                 labels: np.ndarray | None = None, *, use_sequence: bool, graph_layers: int):
        self.tables, self.graph, self.use_sequence = tables, graph, use_sequence
        tables.pending.result()  # histories ready before a loader worker may fork (a fork has no thread)
        self.graph_layers = graph_layers
        row = np.zeros((len(tables.row) + 1, tables.row.shape[1]), np.float32)
        standardizer(tables.row, out=row[:-1])
        self._row_or_zero = row  # standardised rows, then a row of zeros: what history index -1 reads
        self.row = torch.from_numpy(row[:-1])
        self.labels = None if labels is None else torch.from_numpy(np.array(labels, np.int64))

    def __len__(self) -> int:
        return len(self.tables.step)

    def __getitem__(self, rows: np.ndarray) -> dict[str, object]:
        batch = self.without_graph(rows)
        if self.graph is not None:
            batch.update(self._subgraph(np.asarray(rows)))
        return batch

    def without_graph(self, rows: np.ndarray) -> dict[str, object]:
        """The batch's row, context and history inputs; the graph inputs come separately."""
        rows = np.asarray(rows)
        t = self.tables
        batch: dict[str, object] = {"row": self.row[rows], "context": torch.from_numpy(t.context[rows])}
        if self.labels is not None:
            batch["label"] = self.labels[rows]
        if self.use_sequence:
            batch["sequence"], batch["sequence_length"] = self._sequences(rows)
        return batch

    def window_graph(self, rows: np.ndarray) -> MessageFlow:
        """The message-flow graph around every account that `rows` (all of one snapshot window) touch;
        scoring runs the GAT once per window on it instead of once per batch. Its `account_positions` are
        those of the rows' senders, then of their receivers."""
        t = self.tables
        windows = unique_sorted(t.window[rows])
        if len(windows) != 1:
            raise ValueError("a fraud batch must hold rows of one snapshot window (use WindowBatchSampler)")
        return message_flow(self.graph, int(windows[0]), np.concatenate([t.orig[rows], t.dest[rows]]),
                            self.graph_layers)

    def _sequences(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 2, K, F_row + 3) events, oldest first, zeros after the last; and (B, 2) lengths. Written into
        one array (measured: the stack-and-concatenate version took 1.4x as long)."""
        h = self.tables.histories
        hist = h.rows[rows]  # (B, 2, K), -1 after the last event: the zero row at the end of `row_or_zero`
        n_row = self.row.shape[1]
        seq = np.empty((*hist.shape, n_row + len(EVENT_EXTRA_NAMES)), np.float32)
        np.take(self._row_or_zero, hist, axis=0, out=seq[..., :n_row], mode="wrap")
        seq[..., n_row] = h.role[rows]
        seq[..., n_row + 1] = h.hours[rows]
        seq[..., n_row + 2] = h.same[rows]
        return torch.from_numpy(seq), torch.from_numpy(h.length[rows])

    def _subgraph(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        flow = self.window_graph(rows)
        position = flow.account_positions
        return {**flow.tensors(), "orig_pos": position[: len(rows)], "dest_pos": position[len(rows):]}
