"""Parts of a fraud scoring job that score on their own: a range of steps and only the past it reads.

Scoring is causal, so a range of steps scored with every earlier row as its context gets the same
probabilities as the whole file scored at once; but then the last part reads nearly the whole input
again. A part here carries only the earlier rows its features read, and an `AccountPrior` that counts
what those rows leave out. For a range that starts at row `start` (time order) of window `w`:

- each account's history: the earlier rows that the range's history tables point at;
- the graph: every row of window `w` before `start` (its groups are still open), and the groups behind
  the edges that snapshot `w` chooses into the range's accounts and into every account that can reach
  them in one hop (a 2-layer GAT reads those accounts' incoming edges);
- whole links only: every row between the same two accounts in the same window, whichever way the
  money went, so each edge's attributes and its order of appearance, which breaks ties between
  neighbours (and picks the forward edge of a pair that paid both ways in a window), are those of the
  whole past;
- the prior: per account, events and flow totals of closed windows; per pair of the range, its earlier
  transactions; each as the whole past's count less what the carried rows count.

An edge the part carries that snapshot `w` did not choose ranks below the eight that it did, as in the
whole past; newer edges come from the part's own rows. So every snapshot of the range gives the range's
accounts the same neighbours, and every feature is the one the whole file gives (tested to 1e-6).

A model without the GAT (`model.graph: false`) reads its past through the histories alone: its parts carry
the history rows and the counts, and the driver builds no graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from apps.fraud.features import FLOW_TOTAL_NAMES, AccountPrior, MoneyGraph, TransactionTables, account_codes
from common.arrays import unique_first, unique_sorted


@dataclass(frozen=True)
class RangePast:
    """What a range of rows `start:stop` (time order) needs from before `start`."""

    rows: np.ndarray    # (R,) sorted indices of the earlier rows the part carries
    prior: AccountPrior


def forward_groups(tables: TransactionTables) -> np.ndarray:
    """Each row's (sender, receiver, window) group: forward edge id of MoneyGraph (order of appearance)."""
    frame = pd.DataFrame({"src": tables.orig, "dst": tables.dest, "window": tables.window})
    return frame.groupby(["src", "dst", "window"], sort=False).ngroup().to_numpy()


def links(tables: TransactionTables) -> np.ndarray:
    """Each row's link: the two accounts it joins, in either direction, and its window."""
    frame = pd.DataFrame({"a": np.minimum(tables.orig, tables.dest), "b": np.maximum(tables.orig, tables.dest),
                          "window": tables.window})
    return frame.groupby(["a", "b", "window"], sort=False).ngroup().to_numpy()


class PartPlanner:
    """Cuts a time-ordered job into `RangePast`s, from the tables and graph of the whole of it (`graph` None:
    a model without the GAT, whose parts need no graph rows)."""

    def __init__(self, ordered: pd.DataFrame, tables: TransactionTables, graph: MoneyGraph | None):
        self.tables, self.graph = tables, graph
        if graph is not None:
            group = forward_groups(tables)
            if group.max(initial=-1) + 1 != graph.n_edges_forward:
                raise ValueError("the graph was not built from these tables")
            self.link = links(tables)
            self.link_of_group = np.empty(graph.n_edges_forward, np.int64)
            self.link_of_group[group] = self.link
        _, _, self.names = account_codes(ordered)
        pair = tables.orig * (tables.n_nodes + 1) + tables.dest
        self.pair, _ = pd.factorize(pair)

    def past_of(self, start: int, stop: int) -> RangePast:
        """The earlier rows and the prior that rows `start:stop` (one range of whole steps) need."""
        t, graph = self.tables, self.graph
        history = t.histories.rows[start:stop].ravel()
        history = history[(history >= 0) & (history < start)]
        if graph is None:
            rows = unique_sorted(history)
            return RangePast(rows, self._prior(rows, start, stop, np.zeros((t.n_nodes, len(FLOW_TOTAL_NAMES)))))
        accounts = unique_sorted(np.r_[t.orig[start:stop], t.dest[start:stop]])
        window = int(t.window[start])
        open_rows = np.arange(np.searchsorted(t.window[:start], window), start)  # window `window`, before start
        chosen = graph.chosen_edges(window)
        hearing = np.isin(graph.target[chosen], accounts)
        one_hop = unique_sorted(np.r_[accounts, graph.source[chosen[hearing]], t.orig[open_rows], t.dest[open_rows]])
        needed_edges = chosen[np.isin(graph.target[chosen], one_hop)]
        carried = np.zeros(self.link.max(initial=-1) + 1, bool)
        carried[self.link[history]] = True
        carried[self.link_of_group[needed_edges % graph.n_edges_forward]] = True
        carried[self.link[open_rows]] = True
        rows = np.flatnonzero(carried[self.link[:start]])
        # the flows of closed windows that the carried rows (whole groups) leave out
        flows = graph.flow_totals(window) - graph.flow_totals(window, carried[self.link_of_group])
        return RangePast(rows, self._prior(rows, start, stop, flows))

    def _prior(self, rows: np.ndarray, start: int, stop: int, flows: np.ndarray) -> AccountPrior:
        """`flows`: (n_nodes, 8) flow totals the carried rows leave out."""
        t, n = self.tables, self.tables.n_nodes
        events = (np.bincount(t.orig[:start], minlength=n) + np.bincount(t.dest[:start], minlength=n)
                  - np.bincount(t.orig[rows], minlength=n) - np.bincount(t.dest[rows], minlength=n))
        part_accounts = unique_sorted(np.r_[t.orig[rows], t.dest[rows], t.orig[start:stop], t.dest[start:stop]])
        left_out = part_accounts[(events[part_accounts] != 0) | (flows[part_accounts] != 0).any(1)]
        pairs, first = unique_first(self.pair[start:stop])
        pair_events = (np.bincount(self.pair[:start], minlength=pairs.max(initial=-1) + 1)[pairs]
                       - np.bincount(self.pair[rows], minlength=pairs.max(initial=-1) + 1)[pairs])
        keep = pair_events != 0
        first = first[keep] + start
        return AccountPrior(
            names=self._names(left_out), events=events[left_out].astype(np.int64),
            flows=flows[left_out].astype(np.float64),
            pair_orig=self._names(t.orig[first]), pair_dest=self._names(t.dest[first]),
            pair_events=pair_events[keep].astype(np.int64))

    def _names(self, nodes: np.ndarray) -> np.ndarray:
        return self.names[nodes].to_numpy(str)
