"""History, graph and causality of the fraud features: a later row never changes an earlier score."""
import numpy as np
import pandas as pd
import pytest
import torch

from apps.fraud.dataset import FraudBatches
from apps.fraud.features import (
    EDGE_FEATURE_NAMES,
    EVENT_EXTRA_NAMES,
    FraudFeatureConfig,
    MoneyGraph,
    Standardizer,
    build_tables,
)
from apps.fraud.model import FraudInputSizes, FraudLSTMGAT, FraudModelConfig
from apps.fraud.scorer import FraudScorer
from apps.fraud.synthetic import SCALES, generate_paysim

SIZES = FraudInputSizes.from_features()


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    df = generate_paysim(SCALES["small"], seed=3)
    return df[df["step"] <= 60].reset_index(drop=True)


def untrained_scorer(df: pd.DataFrame, cfg: FraudFeatureConfig, graph_layers: int = 2) -> FraudScorer:
    """Two GAT layers unless asked (the shipped model has one): the deeper GAT reaches farther into the past."""
    torch.manual_seed(0)
    network = FraudLSTMGAT(FraudModelConfig(hidden=16, gat_heads=2, graph_layers=graph_layers), SIZES)
    return FraudScorer(network, cfg, Standardizer.fit(build_tables(df, cfg).row), threshold=0.5)


def test_history_lists_each_accounts_previous_rows(transactions):
    df = transactions.head(3000)
    cfg = FraudFeatureConfig(history_length=4)
    tables = build_tables(df, cfg)
    orig, dest = df["nameOrig"].to_numpy(), df["nameDest"].to_numpy()
    for i in np.random.default_rng(0).integers(0, len(df), 150):
        for side, account in ((0, orig[i]), (1, dest[i])):
            earlier = np.flatnonzero((orig[:i] == account) | (dest[:i] == account))[-4:]
            assert [r for r in tables.histories.rows[i, side] if r >= 0] == earlier.tolist()
            assert tables.histories.length[i, side] == len(earlier)


def test_each_history_event_reads_as_the_definition_says(transactions):
    """The batch's event columns, row by row from their definitions: the row's standardised features, the
    account's role, log1p(hours since) / 5, the same counterparty as now; zeros after the last event."""
    df = transactions.head(3000)
    cfg = FraudFeatureConfig(history_length=4)
    tables = build_tables(df, cfg)
    standardizer = Standardizer.fit(tables.row)
    batches = FraudBatches(tables, standardizer, None, use_sequence=True, graph_layers=1)
    orig, dest, step = df["nameOrig"].to_numpy(), df["nameDest"].to_numpy(), df["step"].to_numpy()
    rows = np.random.default_rng(1).integers(0, len(df), 200)
    seq, length = batches._sequences(rows)
    n_row = tables.row.shape[1]
    for b, i in enumerate(rows):
        for side, account, counterparty in ((0, orig[i], dest[i]), (1, dest[i], orig[i])):
            earlier = np.flatnonzero((orig[:i] == account) | (dest[:i] == account))[-4:]
            assert length[b, side] == len(earlier)
            for slot, r in enumerate(earlier):
                as_origin = orig[r] == account
                other = dest[r] if as_origin else orig[r]
                expected = [*standardizer(tables.row[r]), as_origin, np.log1p(step[i] - step[r]) / 5,
                            other == counterparty]
                np.testing.assert_allclose(seq[b, side, slot].numpy(), expected, rtol=1e-6, atol=1e-6)
            assert (seq[b, side, len(earlier):] == 0).all()
            assert seq.shape[-1] == n_row + len(EVENT_EXTRA_NAMES)


def test_graph_snapshot_holds_only_earlier_windows(transactions):
    cfg = FraudFeatureConfig(snapshot_steps=24)
    tables = build_tables(transactions, cfg)
    graph = MoneyGraph(tables, transactions, cfg.max_neighbors)
    x, edge_index, edge_attr = graph.snapshot(2)
    earlier = transactions[transactions["step"] // 24 < 2]
    # Every account's incoming count equals what happened before window 2, and nothing later.
    node_of = dict(zip(pd.concat([transactions["nameOrig"], transactions["nameDest"]]),
                       np.concatenate([tables.orig, tables.dest]), strict=True))
    received = earlier.groupby("nameDest").size()
    for name, count in received.head(50).items():
        assert np.expm1(x[node_of[name], 0].item()) == pytest.approx(count)
    assert (np.bincount(edge_index[1].numpy(), minlength=x.shape[0]) <= cfg.max_neighbors).all()
    assert edge_attr.shape[1] == len(EDGE_FEATURE_NAMES)


def rows(*transactions: tuple[int, str, str, str]) -> pd.DataFrame:
    """A PaySim frame from (step, type, nameOrig, nameDest); amounts and balances do not matter here."""
    df = pd.DataFrame(transactions, columns=["step", "type", "nameOrig", "nameDest"])
    for column in ("amount", "oldbalanceOrg", "newbalanceOrig", "oldbalanceDest", "newbalanceDest"):
        df[column] = 100.0
    return df.sort_values("step", kind="stable").reset_index(drop=True)


def test_an_account_hears_from_its_most_recent_counterparties_once_each_and_not_from_merchants():
    """A busy account's daily payments must not crowd out the one transfer that ties it to a person."""
    df = rows((1, "TRANSFER", "C1", "C2"),                    # window 0: C1 -> C2, long ago
              (30, "CASH_OUT", "C1", "C3"), (31, "CASH_OUT", "C1", "C3"),  # window 1: C1 -> agent C3
              *((30 + d, "PAYMENT", "C1", f"M{d}") for d in range(6)),     # and six merchants
              (60, "CASH_OUT", "C1", "C3"),                   # window 2: C3 again
              (80, "PAYMENT", "C4", "M9"))                    # window 3 reads the graph of windows 0-2
    cfg = FraudFeatureConfig(snapshot_steps=24, max_neighbors=2)
    tables = build_tables(df, cfg)
    node = dict(zip(pd.concat([df["nameOrig"], df["nameDest"]]), np.concatenate([tables.orig, tables.dest]),
                    strict=True))
    _, edge_index, edge_attr = MoneyGraph(tables, df, cfg.max_neighbors).snapshot(3)

    into_c1 = edge_index[1] == node["C1"]
    senders = sorted(edge_index[0, into_c1].tolist())
    assert senders == sorted([node["C2"], node["C3"]])  # one edge each, no merchant
    age = edge_attr[into_c1, EDGE_FEATURE_NAMES.index("log_age")]
    assert sorted(np.expm1(age.numpy()).round().tolist()) == [0.0, 2.0]  # C3's newest window (2), C2's (0)


def test_which_neighbours_an_account_hears_from_does_not_depend_on_later_rows(transactions):
    """Ties within a window are broken by the rows, not by node numbering (which later rows change)."""
    cfg = FraudFeatureConfig(snapshot_steps=12, max_neighbors=2)  # few slots: many ties to break

    def named_edges(df: pd.DataFrame) -> set[tuple[str, str]]:
        tables = build_tables(df, cfg)
        names = np.empty(tables.n_nodes, object)
        names[tables.orig], names[tables.dest] = df["nameOrig"].to_numpy(), df["nameDest"].to_numpy()
        _, edge_index, _ = MoneyGraph(tables, df, cfg.max_neighbors).snapshot(3)
        return set(zip(names[edge_index[0].numpy()], names[edge_index[1].numpy()], strict=True))

    early = transactions[transactions["step"] < 36].reset_index(drop=True)
    assert named_edges(early) == named_edges(transactions)


def chosen_by_definition(graph: MoneyGraph, k: int) -> list[int]:
    """Snapshot k's message edges straight from MoneyGraph's docstring: per target, each non-merchant
    source's newest edge before window k (forward first within a window), the `max_neighbors` newest by
    (window, appearance)."""
    newest: dict[tuple[int, int], int] = {}
    for e in range(len(graph.source)):
        if graph.edge_window[e] >= k or graph.is_merchant[graph.source[e]]:
            continue
        pair = (int(graph.target[e]), int(graph.source[e]))
        if pair not in newest or graph.edge_window[e] > graph.edge_window[newest[pair]]:
            newest[pair] = e
    by_target: dict[int, list[int]] = {}
    for (target, _), e in newest.items():
        by_target.setdefault(target, []).append(e)
    appearance = lambda e: e % graph.n_edges_forward  # noqa: E731 (reversed copies follow the forward edges)
    chosen = []
    for target in sorted(by_target):
        ranked = sorted(by_target[target], key=lambda e: (-graph.edge_window[e], -appearance(e)))
        chosen += ranked[: graph.max_neighbors]
    return chosen


@pytest.mark.parametrize("max_neighbors", [2, 8])
def test_each_snapshot_chooses_the_neighbours_its_definition_names(transactions, max_neighbors):
    """The one-sweep neighbour intervals give, in every snapshot, exactly the edges the definition names."""
    cfg = FraudFeatureConfig(snapshot_steps=12, max_neighbors=max_neighbors)
    df = transactions[transactions["step"] < 50].reset_index(drop=True)
    tables = build_tables(df, cfg)
    graph = MoneyGraph(tables, df, cfg.max_neighbors)
    for k in range(int(tables.window.max()) + 2):
        _, edge_index, _ = graph.snapshot(k)
        expected = chosen_by_definition(graph, k)
        got = list(zip(*edge_index.numpy().tolist(), strict=True))
        assert got == [(graph.source[e], graph.target[e]) for e in expected], f"snapshot {k}"
    assert len(expected) > 100


def test_a_graph_with_no_edge_to_pass_messages_along_has_empty_snapshots():
    df = rows((1, "PAYMENT", "M1", "M2"), (30, "PAYMENT", "M2", "M1"))  # merchants send no messages
    cfg = FraudFeatureConfig(snapshot_steps=24)
    _, edge_index, edge_attr = MoneyGraph(build_tables(df, cfg), df, cfg.max_neighbors).snapshot(2)
    assert edge_index.shape == (2, 0) and edge_attr.shape == (0, len(EDGE_FEATURE_NAMES))


def test_changing_later_rows_never_changes_earlier_scores(transactions):
    cfg = FraudFeatureConfig(snapshot_steps=12)
    scorer = untrained_scorer(transactions, cfg)
    before = scorer.predict_proba(transactions, batch_size=512)

    cut = len(transactions) // 2
    changed = transactions.copy()
    later = changed.index >= cut
    changed.loc[later, "amount"] *= 7.0
    changed.loc[later, "nameDest"] = changed.loc[later, "nameOrig"].iloc[::-1].to_numpy()
    changed.loc[later, "type"] = "TRANSFER"
    after = scorer.predict_proba(changed, batch_size=512)

    assert np.allclose(before[:cut], after[:cut], atol=1e-6)
    assert not np.allclose(before[cut:], after[cut:], atol=1e-3)  # the change itself is visible


def test_scores_do_not_depend_on_batch_size_or_row_order(transactions):
    cfg = FraudFeatureConfig(snapshot_steps=12)
    scorer = untrained_scorer(transactions, cfg)
    reference = scorer.predict_proba(transactions, batch_size=4096)
    assert np.allclose(reference, scorer.predict_proba(transactions, batch_size=97), atol=1e-6)
    # Rows arrive shuffled: scores follow their rows (time order is rebuilt from `step`, ties by file order).
    by_step = transactions.sort_values("step", kind="stable")
    assert np.allclose(scorer.predict_proba(by_step, 4096), reference[by_step.index], atol=1e-6)


@pytest.mark.parametrize("graph_layers", [1, 2])
def test_the_gat_once_per_window_gives_what_the_gat_once_per_batch_gives(transactions, graph_layers):
    """Scoring encodes each snapshot window's graph once (around every account its rows touch); each row's
    accounts keep their whole neighbourhood there, so the scores are those of per-batch encoding."""
    from apps.fraud.scorer import make_batches, predict_rows

    cfg = FraudFeatureConfig()
    scorer = untrained_scorer(transactions, cfg, graph_layers)
    tables = build_tables(transactions, cfg)
    batches = make_batches(tables, transactions, scorer.standardizer, cfg, scorer.network.cfg)
    rows = np.flatnonzero(transactions["step"].to_numpy() > 20)[::3]  # a subset, several windows
    assert len(np.unique(tables.window[rows])) >= 2
    per_window = predict_rows(scorer.network, batches, rows, batch_size=64)
    per_batch = predict_rows(scorer.network, batches, rows, batch_size=64, graph_once_per_window=False)
    np.testing.assert_allclose(per_window, per_batch, atol=1e-6, rtol=0)


@pytest.mark.parametrize("graph_layers", [1, 2])
def test_the_message_flow_graph_gives_the_embeddings_of_the_whole_snapshot(transactions, graph_layers):
    """Training and scoring run the GAT only where its layers need it (targets, then their senders, ...);
    each target still gets the embedding a GAT over the whole snapshot gives it, gradients included."""
    from apps.fraud.dataset import message_flow

    cfg = FraudFeatureConfig()
    encoder = untrained_scorer(transactions, cfg, graph_layers).network.graph_encoder.eval()
    tables = build_tables(transactions, cfg)
    graph = MoneyGraph(tables, transactions, cfg.max_neighbors)
    window = int(tables.window.max())
    x, edge_index, edge_attr = graph.snapshot(window)
    rows = np.flatnonzero(tables.window == window)[:40]
    accounts = np.concatenate([tables.orig[rows], tables.dest[rows]])
    flow = message_flow(graph, window, accounts, graph_layers)
    whole = encoder(x, [(edge_index, edge_attr, len(x))] * graph_layers)
    part = encoder(flow.node_x, flow.layers)
    assert len(flow.node_x) < len(x) / 2  # the point: most of the snapshot is skipped
    assert len(flow.layers) == graph_layers and all(edges.shape[1] > 0 for edges, _, _ in flow.layers)
    np.testing.assert_allclose(part[flow.account_positions].detach(), whole[accounts].detach(), atol=1e-6)
    gradients = []
    for embeddings in (whole[np.unique(accounts)], part):
        encoder.zero_grad()
        embeddings.sum().backward(retain_graph=True)
        gradients.append(torch.cat([p.grad.flatten() for p in encoder.parameters()]))
    np.testing.assert_allclose(gradients[1], gradients[0], rtol=1e-4, atol=1e-5)


def test_flow_totals_carried_from_window_to_window_equal_a_fresh_sum_in_any_order(transactions):
    """Scoring visits windows in time order and carries the totals on; training visits them in random order."""
    cfg = FraudFeatureConfig(snapshot_steps=6)
    tables = build_tables(transactions, cfg)
    graph = MoneyGraph(tables, transactions, cfg.max_neighbors)
    windows = [1, 2, 3, 3, 7, 4, 9, 10, 0, 5]  # forward, repeated, back, forward again, from nothing
    for k in windows:
        carried = graph.flow_totals(k)
        fresh = graph.flow_totals(k, groups=np.ones(graph.n_edges_forward, bool))  # the masked path, summed anew
        np.testing.assert_allclose(carried, fresh, rtol=1e-12, atol=0)
        carried += 1.0  # callers add priors in place: the carried state must not change with it
    assert graph.flow_totals(windows[-1]).sum() == pytest.approx(fresh.sum())


def test_tables_pickle_with_their_histories(transactions):
    """A loader worker under spawn gets the tables pickled: the background histories travel as values."""
    import pickle

    tables = build_tables(transactions.head(500), FraudFeatureConfig())
    copy = pickle.loads(pickle.dumps(tables))
    assert np.array_equal(copy.histories.rows, tables.histories.rows)
    assert np.array_equal(copy.context, tables.context)


def test_neighbour_order_by_one_key_equals_the_three_key_sort():
    """The edges' order for the neighbour sweep: by target, newest window first, latest appearance first."""
    from apps.fraud.features import NeighbourIntervals

    rng = np.random.default_rng(0)
    target, window, appearance = rng.integers(0, 50, 3000), rng.integers(0, 9, 3000), rng.permutation(3000)
    edges = np.flatnonzero(rng.random(3000) < 0.7)
    expected = edges[np.lexsort((-appearance[edges], -window[edges], target[edges]))]
    assert np.array_equal(NeighbourIntervals._by_target_newest_first(target, window, appearance, edges), expected)
