"""Batches for the fraud model: rows of one snapshot window, their account histories and past graph."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torch_geometric.utils import k_hop_subgraph

from apps.fraud.features import MoneyGraph, Standardizer, TransactionTables

HOURS_SCALE = 5.0  # log1p(hours) reaches ~6.6 for a month; keep it near unit scale


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
        self._unique_windows = np.unique(self.windows)

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


class WindowGraph(NamedTuple):
    """The 2-hop past subgraph around a set of accounts, all from one snapshot window."""

    accounts: np.ndarray       # (A,) sorted node ids of the accounts asked for
    node_x: torch.Tensor       # (N, F_node) features of the subgraph's nodes
    edge_index: torch.Tensor   # (2, E) relabelled to 0..N-1
    edge_attr: torch.Tensor    # (E, F_edge)
    position: torch.Tensor     # (A,) where each of `accounts` sits among the N nodes

    def positions_of(self, nodes: np.ndarray) -> torch.Tensor:
        """Subgraph positions of `nodes` (each one of `accounts`)."""
        return self.position[torch.from_numpy(np.searchsorted(self.accounts, nodes))]


class FraudBatches(Dataset):
    """`dataset[rows]` builds one model batch for an array of row indices (use with batch_size=None)."""

    def __init__(self, tables: TransactionTables, standardizer: Standardizer, graph: MoneyGraph | None,
                 labels: np.ndarray | None = None, use_sequence: bool = True):
        self.tables, self.graph, self.use_sequence = tables, graph, use_sequence
        self.row = torch.from_numpy(standardizer(tables.row))
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

    def window_graph(self, rows: np.ndarray) -> WindowGraph:
        """The past graph around every account that `rows` (all of one snapshot window) touch.

        Each account's 2-hop neighbourhood is whole in it, so a GAT run over it gives each of these
        accounts the embedding it would get from the full snapshot; scoring runs the GAT once per window
        on it, instead of once per batch on each batch's overlapping neighbourhoods.
        """
        t = self.tables
        windows = np.unique(t.window[rows])
        if len(windows) != 1:
            raise ValueError("a fraud batch must hold rows of one snapshot window (use WindowBatchSampler)")
        x, edge_index, edge_attr = self.graph.snapshot(int(windows[0]))
        accounts = np.unique(np.concatenate([t.orig[rows], t.dest[rows]]))
        subset, sub_edges, mapping, edge_mask = k_hop_subgraph(
            torch.from_numpy(accounts), 2, edge_index, relabel_nodes=True, num_nodes=x.shape[0], directed=True)
        return WindowGraph(accounts, x[subset], sub_edges, edge_attr[edge_mask], mapping)

    def _sequences(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.tables
        hist = t.history[rows]                      # (B, 2, K)
        valid = hist >= 0
        safe = np.where(valid, hist, 0)
        feats = self.row[torch.from_numpy(safe)]    # (B, 2, K, F)
        hours = np.log1p(np.maximum(t.step[rows][:, None, None] - t.step[safe], 0)) / HOURS_SCALE
        # The account's counterparty in each past event, compared with its counterparty now.
        past_cp = np.where(t.history_role[rows] == 1, t.dest[safe], t.orig[safe])
        now_cp = np.stack([t.dest[rows], t.orig[rows]], 1)[:, :, None]
        extra = np.stack([t.history_role[rows], hours, past_cp == now_cp], -1).astype(np.float32)
        seq = torch.cat([feats, torch.from_numpy(extra)], -1) * torch.from_numpy(valid[..., None])
        return seq, torch.from_numpy(t.history_len[rows])

    def _subgraph(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        graph = self.window_graph(rows)
        position = graph.positions_of(np.concatenate([self.tables.orig[rows], self.tables.dest[rows]]))
        return {"node_x": graph.node_x, "edge_index": graph.edge_index, "edge_attr": graph.edge_attr,
                "orig_pos": position[: len(rows)], "dest_pos": position[len(rows):]}
