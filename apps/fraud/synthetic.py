"""Synthetic PaySim-format transactions whose fraud needs account history and the transfer graph.

The file has PaySim's exact columns, order and conventions (`step` is the hour from 1, customers
`C<digits>`, merchants `M<digits>` with balances reported as 0/0, amounts with 2 decimals,
`isFlaggedFraud` = TRANSFER above 200,000). Rows are sorted by step. Patterns in it:

Legitimate behaviour
- Customers transact repeatedly: each has an activity rate (log-normal, so a few are very busy),
  an amount scale and its own preferred mix of types drawn around PaySim's mix. PAYMENT goes to
  merchants; CASH_IN, CASH_OUT and DEBIT go through a cash agent (a `C` account, usually the
  customer's home agent); TRANSFER goes mostly to 1-3 established counterparties (own or family
  accounts), sometimes to a new customer.
- Balances are tracked per account in time order: outgoing types lower the origin balance by the
  amount, CASH_IN raises it (and lowers the agent's, as in PaySim), and a customer destination's
  old/new balances continue its running balance. A legitimate payment larger than the balance is
  scaled down to 10-90 % of it, or becomes a CASH_IN top-up when the account is nearly empty.
- Hard negatives: legitimate TRANSFERs that empty the account to an established counterparty,
  legitimate large CASH_OUTs (60-100 % of the balance), transfers to new counterparties, small
  transfers between friends (same sizes as fraud probes).
- PaySim-style noise: a fraction of would-overdraw legitimate rows are recorded as PaySim records
  them (amount kept, `newbalanceOrig` = 0, so old - amount != new); a fraction of rows to
  customer accounts report destination balances 0/0 although money arrived (more often for fraud,
  so "balance error" features are informative but noisy); a cash agent short of cash is silently
  refilled (its old balance then jumps).

Fraud (about `fraud_rate` of rows, only TRANSFER and CASH_OUT, all rows below have isFraud = 1)
- Account takeover: an active customer's account makes 1-3 small probe TRANSFERs to a mule
  (labelled fraud: the fraudster made them), then within a few hours a TRANSFER of the whole
  balance to that mule, then within a few hours the mule's CASH_OUT of the money received.
- Partial fraud: one TRANSFER of 30-90 % of the victim's balance to a mule, then the mule's CASH_OUT.
- Mule rings: mules belong to rings; rings (Zipf-popular) and their mules are reused over the whole
  period across many victims, so a destination that keeps receiving from emptied, unrelated
  accounts is the graph signal. Mules also have a little legitimate-looking activity.
- Fraud happens at any hour, while legitimate activity follows a daily cycle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from apps.fraud.reader import PAYSIM_COLUMNS, TRANSACTION_TYPES
from common.errors import InputError
from common.io import atomic_path

CASH_IN, CASH_OUT, DEBIT, PAYMENT, TRANSFER = (TRANSACTION_TYPES.index(t) for t in
                                               ("CASH_IN", "CASH_OUT", "DEBIT", "PAYMENT", "TRANSFER"))
FLAG_THRESHOLD = 200_000.0  # PaySim's rule: isFlaggedFraud = TRANSFER with amount above this
OUTPUT_NAME = "transactions.csv"

# How a row's amount is decided when balances are replayed in time order.
_FIXED, _SHARE_OF_BALANCE, _SAME_AS_REF = 0, 1, 2


@dataclass(frozen=True)
class SyntheticScale:
    """Size of a synthetic data set (rows are approximate: a few empty-account rows are dropped)."""

    n_customers: int
    n_merchants: int
    n_agents: int
    n_mules: int
    n_steps: int
    approx_rows: int
    fraud_rate: float = 0.01
    mules_per_ring: int = 6


SCALES: dict[str, SyntheticScale] = {
    "small": SyntheticScale(n_customers=4_000, n_merchants=1_500, n_agents=150, n_mules=36,
                            n_steps=240, approx_rows=50_000),
    "medium": SyntheticScale(n_customers=40_000, n_merchants=10_000, n_agents=800, n_mules=240,
                             n_steps=720, approx_rows=550_000),
    "large": SyntheticScale(n_customers=200_000, n_merchants=40_000, n_agents=3_000, n_mules=1_200,
                            n_steps=743, approx_rows=3_000_000),
}


@dataclass(frozen=True)
class Behaviour:
    """How customers, agents, mules and fraudsters behave; shared by all scales."""

    # Type mix (order of TRANSACTION_TYPES: CASH_IN, CASH_OUT, DEBIT, PAYMENT, TRANSFER), near PaySim's.
    type_mix: tuple[float, ...] = (0.22, 0.35, 0.01, 0.33, 0.09)
    type_concentration: float = 6.0  # Dirichlet concentration of each customer's own mix
    mule_type_mix: tuple[float, ...] = (0.5, 0.0, 0.0, 0.5, 0.0)
    type_amount_median: tuple[float, ...] = (260_000.0, 150_000.0, 5_000.0, 12_000.0, 250_000.0)
    amount_sigma: float = 0.9  # log-normal spread of one customer's amounts
    customer_scale_sigma: float = 0.7  # log-normal spread of customers' amount scales
    activity_sigma: float = 1.0  # log-normal spread of customers' activity rates
    mule_activity_factor: float = 0.3
    small_transfer_share: float = 0.3  # legit transfers that are small (friends, probes look alike)
    small_transfer_median: float = 2_500.0
    initial_balance_median: float = 80_000.0
    initial_balance_sigma: float = 1.2
    zero_balance_share: float = 0.1
    mule_initial_balance_max: float = 2_000.0
    agent_balance_median: float = 20_000_000.0
    agent_refill: float = 5_000_000.0  # cash given to an agent that cannot pay a CASH_IN
    max_partners: int = 3  # established transfer counterparties per customer
    transfer_to_partner: float = 0.75
    home_agent_share: float = 0.7
    merchant_zipf: float = 1.1
    agent_zipf: float = 0.8
    # Relative activity by hour of day (step 1 is hour 0).
    hourly_activity: tuple[float, ...] = (
        0.15, 0.08, 0.05, 0.05, 0.05, 0.08, 0.2, 0.45, 0.8, 1.0, 1.0, 1.0,
        1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.95, 0.85, 0.7, 0.5, 0.3,
    )
    min_spendable: float = 50.0  # below this balance a legit outgoing payment becomes a CASH_IN
    capped_share: tuple[float, float] = (0.1, 0.9)  # an over-balance legit amount becomes this share
    overdraft_noise: float = 0.15  # over-balance legit rows recorded PaySim-style (new balance 0)
    dest_zero_noise_legit: float = 0.05  # rows to a customer account reporting 0/0 destination balances
    dest_zero_noise_fraud: float = 0.3
    takeover_share: float = 0.6  # fraud events that are takeovers; the rest are partial
    probes: tuple[int, int] = (1, 3)
    probe_median: float = 2_000.0
    probe_sigma: float = 1.0
    probe_gap_steps: float = 0.6  # max hours between consecutive takeover transfers
    takeover_delay_steps: float = 2.0  # max hours from the last probe to the emptying transfer
    cashout_delay_steps: float = 4.0  # max hours from a mule receiving money to its cash-out
    partial_share: tuple[float, float] = (0.3, 0.9)
    ring_zipf: float = 0.7
    legit_empty_per_fraud_event: float = 1.2
    big_cashout_per_fraud_event: float = 1.5
    big_cashout_share: tuple[float, float] = (0.6, 1.0)
    big_cashout_full: float = 0.3  # big cash-outs that take the whole balance


DEFAULT_BEHAVIOUR = Behaviour()


def write_synthetic_paysim(out_dir: str | Path, scale: str = "small", seed: int = 0) -> Path:
    """Write `out_dir/transactions.csv` so pipelines can train and be tested without the real data."""
    if scale not in SCALES:
        raise InputError(None, f"unknown scale {scale!r} (choose from: {', '.join(SCALES)})")
    frame = generate_paysim(SCALES[scale], seed)
    target = Path(out_dir) / OUTPUT_NAME
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.2f")
    return target


def generate_paysim(scale: SyntheticScale, seed: int = 0,
                    behaviour: Behaviour = DEFAULT_BEHAVIOUR) -> pd.DataFrame:
    """Generate the transactions as a DataFrame in PaySim column order (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    world = _World.create(scale, behaviour, rng)
    events = _Events()
    _legit_events(world, events, rng)
    _fraud_events(world, events, rng)
    replay = _replay(world, events.sorted())
    return _to_frame(world, replay)


# ---------------------------------------------------------------------------------------------
# the accounts


@dataclass
class _World:
    """Accounts and their fixed traits. Index layout: customers, mules, agents, merchants."""

    scale: SyntheticScale
    behaviour: Behaviour
    names: np.ndarray
    activity: np.ndarray  # per person (customers then mules)
    amount_scale: np.ndarray  # per person
    type_pref: np.ndarray  # (persons, 5)
    partners: np.ndarray  # (customers, max_partners) other customers
    n_partners: np.ndarray
    home_agent: np.ndarray  # per person, account index
    initial_balance: np.ndarray  # per account
    agent_p: np.ndarray
    merchant_p: np.ndarray
    step_p: np.ndarray
    ring_p: np.ndarray = field(default_factory=lambda: np.ones(1))

    @property
    def n_persons(self) -> int:
        return self.scale.n_customers + self.scale.n_mules

    @property
    def first_agent(self) -> int:
        return self.n_persons

    @property
    def first_merchant(self) -> int:
        return self.n_persons + self.scale.n_agents

    @classmethod
    def create(cls, scale: SyntheticScale, b: Behaviour, rng: np.random.Generator) -> _World:
        n_c, n_m, n_a = scale.n_customers, scale.n_mules, scale.n_agents
        n_p = n_c + n_m
        names = np.concatenate([_names("C", n_p + n_a, rng), _names("M", scale.n_merchants, rng)])

        activity = rng.lognormal(0.0, b.activity_sigma, n_p)
        activity[n_c:] *= b.mule_activity_factor
        amount_scale = rng.lognormal(0.0, b.customer_scale_sigma, n_p)
        type_pref = rng.dirichlet(np.asarray(b.type_mix) * b.type_concentration, n_p)
        type_pref[n_c:] = b.mule_type_mix

        n_partners = rng.integers(1, b.max_partners + 1, n_c)
        partners = (np.arange(n_c)[:, None] + rng.integers(1, n_c, (n_c, b.max_partners))) % n_c
        home_agent = n_p + rng.integers(0, n_a, n_p)

        initial = np.zeros(n_p + n_a + scale.n_merchants)
        initial[:n_c] = rng.lognormal(np.log(b.initial_balance_median), b.initial_balance_sigma, n_c)
        initial[:n_c] *= amount_scale[:n_c] * (rng.random(n_c) >= b.zero_balance_share)
        initial[n_c:n_p] = rng.uniform(0.0, b.mule_initial_balance_max, n_m)
        initial[n_p:n_p + n_a] = rng.lognormal(np.log(b.agent_balance_median), 0.5, n_a)
        initial = np.round(initial, 2)

        hourly = np.asarray(b.hourly_activity)
        step_p = hourly[np.arange(scale.n_steps) % 24]
        n_rings = max(1, n_m // scale.mules_per_ring)
        return cls(scale=scale, behaviour=b, names=names, activity=activity, amount_scale=amount_scale,
                   type_pref=type_pref, partners=partners, n_partners=n_partners, home_agent=home_agent,
                   initial_balance=initial, agent_p=_zipf(n_a, b.agent_zipf, rng),
                   merchant_p=_zipf(scale.n_merchants, b.merchant_zipf, rng),
                   step_p=step_p / step_p.sum(), ring_p=_zipf(n_rings, b.ring_zipf, rng))

    def partner_of(self, person: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One established counterparty of each (customer) person."""
        pick = (rng.random(len(person)) * self.n_partners[person]).astype(np.int64)
        return self.partners[person, pick]

    def times(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Continuous times following the daily cycle: step = floor(time), from 1."""
        return 1.0 + rng.choice(self.scale.n_steps, n, p=self.step_p) + rng.random(n)

    def customers_by_activity(self, n: int, rng: np.random.Generator) -> np.ndarray:
        weights = self.activity[: self.scale.n_customers]
        return rng.choice(self.scale.n_customers, n, p=weights / weights.sum())


def _names(prefix: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unique PaySim-like names: a prefix and 9-10 digits (e.g. C1231006815)."""
    numbers = np.unique(rng.integers(100_000_000, 2_147_483_647, int(n * 1.05) + 16))
    while len(numbers) < n:  # practically never: collisions are rare
        numbers = np.unique(np.concatenate([numbers, rng.integers(100_000_000, 2_147_483_647, n)]))
    numbers = rng.permutation(numbers)[:n]
    return np.asarray([f"{prefix}{x}" for x in numbers.tolist()], dtype=object)


def _zipf(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Popularity weights ~ 1/rank^exponent, in random order over the items."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    weights = rng.permutation(weights)
    return weights / weights.sum()


# ---------------------------------------------------------------------------------------------
# events (rows before balances are known)


class _Events:
    """Column blocks of events; `ref` holds indices into the concatenation (-1: none)."""

    FIELDS = ("time", "type", "orig", "dest", "alt_dest", "amount", "mode", "share", "ref",
              "fraud", "noise_orig", "noise_dest")

    def __init__(self) -> None:
        self.blocks: list[dict[str, np.ndarray]] = []
        self.size = 0

    def add(self, n: int, **columns: np.ndarray | float) -> int:
        """Add n events; scalars broadcast; returns the index of the first one."""
        defaults = {"alt_dest": -1, "amount": 0.0, "mode": _FIXED, "share": 1.0, "ref": -1, "fraud": 0,
                    "noise_orig": False, "noise_dest": False}
        block = {}
        for name in self.FIELDS:
            value = columns.get(name, defaults.get(name))
            if value is None:
                raise TypeError(f"event field {name} is required")
            block[name] = np.broadcast_to(np.asarray(value), (n,))
        start = self.size
        self.blocks.append(block)
        self.size += n
        return start

    def sorted(self) -> dict[str, np.ndarray]:
        """All events in time order, with `ref` renumbered to the new positions."""
        cols = {name: np.concatenate([b[name] for b in self.blocks]) for name in self.FIELDS}
        order = np.argsort(cols["time"], kind="stable")
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        out = {name: values[order] for name, values in cols.items()}
        ref = out["ref"]
        out["ref"] = np.where(ref >= 0, position[np.maximum(ref, 0)], -1)
        return out


def _legit_events(world: _World, events: _Events, rng: np.random.Generator) -> None:
    scale, b = world.scale, world.behaviour
    n_fraud_events = _n_fraud_events(scale, b)
    n_empty = round(b.legit_empty_per_fraud_event * n_fraud_events)
    n_big = round(b.big_cashout_per_fraud_event * n_fraud_events)
    n_normal = max(0, scale.approx_rows - _n_fraud_rows(scale, b) - n_empty - n_big)

    # Ordinary activity: counts per person and type, then one row each.
    counts = rng.multinomial(n_normal, world.activity / world.activity.sum())
    per_type = rng.multinomial(counts, world.type_pref)  # (persons, 5)
    flat = per_type.ravel()
    orig = np.repeat(np.repeat(np.arange(world.n_persons), len(TRANSACTION_TYPES)), flat)
    kind = np.repeat(np.tile(np.arange(len(TRANSACTION_TYPES)), world.n_persons), flat)
    n = len(orig)
    median = np.asarray(b.type_amount_median)[kind]
    small = (kind == TRANSFER) & (rng.random(n) < b.small_transfer_share)
    median = np.where(small, b.small_transfer_median, median)
    amount = np.round(median * world.amount_scale[orig] * rng.lognormal(0.0, b.amount_sigma, n), 2)
    dest = _legit_destinations(world, orig, kind, rng)
    events.add(n, time=world.times(n, rng), type=kind, orig=orig, dest=dest,
               alt_dest=world.home_agent[orig], amount=amount,
               share=rng.uniform(*b.capped_share, n),
               noise_orig=rng.random(n) < b.overdraft_noise,
               noise_dest=rng.random(n) < b.dest_zero_noise_legit)

    # Hard negatives: emptying transfers to an established counterparty.
    who = world.customers_by_activity(n_empty, rng)
    events.add(n_empty, time=world.times(n_empty, rng), type=TRANSFER, orig=who,
               dest=world.partner_of(who, rng), mode=_SHARE_OF_BALANCE, share=1.0,
               noise_dest=rng.random(n_empty) < b.dest_zero_noise_legit)

    # Hard negatives: large cash-outs, some of the whole balance.
    who = world.customers_by_activity(n_big, rng)
    share = np.where(rng.random(n_big) < b.big_cashout_full, 1.0, rng.uniform(*b.big_cashout_share, n_big))
    events.add(n_big, time=world.times(n_big, rng), type=CASH_OUT, orig=who, dest=world.home_agent[who],
               mode=_SHARE_OF_BALANCE, share=share,
               noise_dest=rng.random(n_big) < b.dest_zero_noise_legit)


def _legit_destinations(world: _World, orig: np.ndarray, kind: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    scale, b = world.scale, world.behaviour
    n = len(orig)
    dest = np.empty(n, dtype=np.int64)

    pay = kind == PAYMENT
    dest[pay] = world.first_merchant + rng.choice(scale.n_merchants, int(pay.sum()), p=world.merchant_p)

    cash = ~pay & (kind != TRANSFER)
    n_cash = int(cash.sum())
    any_agent = world.first_agent + rng.choice(scale.n_agents, n_cash, p=world.agent_p)
    dest[cash] = np.where(rng.random(n_cash) < b.home_agent_share, world.home_agent[orig[cash]], any_agent)

    transfer = kind == TRANSFER
    sender = orig[transfer]
    n_tr = len(sender)
    stranger = (sender + rng.integers(1, world.n_persons, n_tr)) % world.n_persons
    is_customer = sender < scale.n_customers
    known = is_customer & (rng.random(n_tr) < b.transfer_to_partner)
    partner = np.where(is_customer, world.partner_of(np.minimum(sender, scale.n_customers - 1), rng), 0)
    dest[transfer] = np.where(known, partner, stranger)
    return dest


def _rows_per_event(b: Behaviour) -> float:
    mean_probes = (b.probes[0] + b.probes[1]) / 2
    return b.takeover_share * (mean_probes + 2) + (1 - b.takeover_share) * 2


def _n_fraud_events(scale: SyntheticScale, b: Behaviour) -> int:
    return max(1, round(scale.fraud_rate * scale.approx_rows / _rows_per_event(b)))


def _n_fraud_rows(scale: SyntheticScale, b: Behaviour) -> int:
    return round(_n_fraud_events(scale, b) * _rows_per_event(b))


def _fraud_events(world: _World, events: _Events, rng: np.random.Generator) -> None:
    scale, b = world.scale, world.behaviour
    n_events = _n_fraud_events(scale, b)
    victim = world.customers_by_activity(n_events, rng)
    ring = rng.choice(len(world.ring_p), n_events, p=world.ring_p)
    ring_size = np.minimum(scale.mules_per_ring, scale.n_mules - ring * scale.mules_per_ring)
    mule = scale.n_customers + ring * scale.mules_per_ring + (rng.random(n_events) * ring_size).astype(np.int64)
    takeover = rng.random(n_events) < b.takeover_share
    n_probes = np.where(takeover, rng.integers(b.probes[0], b.probes[1] + 1, n_events), 0)
    span = b.probes[1] * b.probe_gap_steps + b.takeover_delay_steps + b.cashout_delay_steps
    start = 1.0 + rng.random(n_events) * max(1e-9, scale.n_steps - span)  # any hour
    noise = b.dest_zero_noise_fraud

    # Probes: small transfers to the mule, each a little after the previous one.
    event_of_probe = np.repeat(np.arange(n_events), n_probes)
    n_p = len(event_of_probe)
    first_probe = np.cumsum(n_probes) - n_probes
    gaps = rng.uniform(0.01, b.probe_gap_steps, n_p)
    elapsed = np.cumsum(gaps)
    before_event = (elapsed - gaps)[first_probe[event_of_probe]]  # elapsed before the event's 1st probe
    probe_time = start[event_of_probe] + elapsed - before_event
    events.add(n_p, time=probe_time, type=TRANSFER, orig=victim[event_of_probe], dest=mule[event_of_probe],
               amount=np.round(rng.lognormal(np.log(b.probe_median), b.probe_sigma, n_p), 2),
               share=rng.uniform(*b.capped_share, n_p), fraud=1, noise_dest=rng.random(n_p) < noise)
    last_probe = start.copy()
    np.maximum.at(last_probe, event_of_probe, probe_time)

    # The theft: the whole balance (takeover) or part of it (partial), to the mule.
    theft_time = np.where(takeover, last_probe + rng.uniform(0.01, b.takeover_delay_steps, n_events), start)
    share = np.where(takeover, 1.0, rng.uniform(*b.partial_share, n_events))
    first_theft = events.add(n_events, time=theft_time, type=TRANSFER, orig=victim, dest=mule,
                             mode=_SHARE_OF_BALANCE, share=share, fraud=1,
                             noise_dest=rng.random(n_events) < noise)

    # The mule cashes out what it received.
    cash_time = theft_time + rng.uniform(0.01, b.cashout_delay_steps, n_events)
    agent = world.first_agent + rng.choice(scale.n_agents, n_events, p=world.agent_p)
    events.add(n_events, time=cash_time, type=CASH_OUT, orig=mule, dest=agent, mode=_SAME_AS_REF,
               ref=first_theft + np.arange(n_events), fraud=1, noise_dest=rng.random(n_events) < noise)


# ---------------------------------------------------------------------------------------------
# replay balances in time order


def _replay(world: _World, ev: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Walk the events in time order, keeping every account's running balance (sequential by nature)."""
    b = world.behaviour
    n = len(ev["time"])
    balance = world.initial_balance.tolist()
    first_merchant = world.first_merchant
    kinds = ev["type"].tolist()
    origs = ev["orig"].tolist()
    dests = ev["dest"].tolist()
    alt = ev["alt_dest"].tolist()
    fixed = ev["amount"].tolist()
    modes = ev["mode"].tolist()
    shares = ev["share"].tolist()
    refs = ev["ref"].tolist()
    fraud = ev["fraud"].tolist()
    overdraft = ev["noise_orig"].tolist()
    amount = [0.0] * n
    old_o, new_o, old_d, new_d = ([0.0] * n for _ in range(4))
    min_spendable, refill = b.min_spendable, b.agent_refill

    for i in range(n):
        kind, o, d, mode = kinds[i], origs[i], dests[i], modes[i]
        bo = balance[o]
        zero_after = False
        if mode == _FIXED:
            a = fixed[i]
            if kind != CASH_IN and a > bo:
                if fraud[i]:
                    a = math.floor(bo * shares[i] * 100.0) / 100.0
                elif overdraft[i]:
                    zero_after = True  # PaySim-style: the amount goes through, the balance shows 0
                elif bo >= min_spendable:
                    a = math.floor(bo * shares[i] * 100.0) / 100.0
                else:  # nearly empty: the customer tops up at the agent instead
                    kind = CASH_IN
                    d = alt[i]
                    kinds[i], dests[i] = kind, d
        elif mode == _SHARE_OF_BALANCE:
            a = bo if shares[i] >= 1.0 else math.floor(bo * shares[i] * 100.0) / 100.0
        else:
            a = min(amount[refs[i]], bo)
        amount[i] = a
        old_o[i] = bo
        if kind == CASH_IN:
            bd = balance[d]
            if bd < a:
                bd = round(bd + refill + a, 2)
            nb = round(bo + a, 2)
            nd = round(bd - a, 2)
        else:
            nb = 0.0 if zero_after else round(bo - a, 2)
            if d >= first_merchant:
                bd = nd = 0.0
            else:
                bd = balance[d]
                nd = round(bd + a, 2)
        balance[o] = nb
        new_o[i] = nb
        if d < first_merchant:
            balance[d] = nd
        old_d[i] = bd
        new_d[i] = nd

    out = dict(ev)
    out.update(type=np.asarray(kinds, dtype=np.int8), dest=np.asarray(dests, dtype=np.int64),
               amount=np.asarray(amount), old_o=np.asarray(old_o), new_o=np.asarray(new_o),
               old_d=np.asarray(old_d), new_d=np.asarray(new_d))
    return out


def _to_frame(world: _World, r: dict[str, np.ndarray]) -> pd.DataFrame:
    keep = r["amount"] > 0  # a theft or emptying of an already empty account did not happen
    r = {k: v[keep] for k, v in r.items()}
    old_d, new_d = r["old_d"], r["new_d"]
    hide = r["noise_dest"] & (r["dest"] < world.first_merchant)
    old_d = np.where(hide, 0.0, old_d)
    new_d = np.where(hide, 0.0, new_d)
    kind = r["type"]
    frame = pd.DataFrame({
        "step": np.floor(r["time"]).astype(np.int64),
        "type": np.asarray(TRANSACTION_TYPES, dtype=object)[kind],
        "amount": r["amount"],
        "nameOrig": world.names[r["orig"]],
        "oldbalanceOrg": r["old_o"],
        "newbalanceOrig": r["new_o"],
        "nameDest": world.names[r["dest"]],
        "oldbalanceDest": old_d,
        "newbalanceDest": new_d,
        "isFraud": r["fraud"].astype(np.int8),
        "isFlaggedFraud": ((kind == TRANSFER) & (r["amount"] > FLAG_THRESHOLD)).astype(np.int8),
    })
    return frame[list(PAYSIM_COLUMNS)]
