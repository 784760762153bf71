"""Synthetic PaySim-format transactions: ordinary customers, mules, rings and the thefts they run.

The file has PaySim's exact columns, order and conventions (`step` is the hour from 1, customers
`C<digits>`, merchants `M<digits>` with balances reported as 0/0, amounts with 2 decimals,
`isFlaggedFraud` = TRANSFER above 200,000), and about PaySim's share of types. Rows are sorted by
step. This module says which behaviours it simulates; it knows nothing of the models fitted to it.

Legitimate behaviour
- Customers transact repeatedly: each has an activity rate (log-normal, so a few are very busy),
  an amount scale and its own preferred mix of types drawn around PaySim's mix. PAYMENT goes to
  merchants; CASH_IN, CASH_OUT and DEBIT go through a cash agent (a `C` account, usually the
  customer's home agent); TRANSFER goes mostly to 1-3 established counterparties (own or family
  accounts), sometimes to a new customer. Activity follows a daily cycle.
- Balances are tracked per account in time order: outgoing types lower the origin balance by the
  amount, CASH_IN raises it (and lowers the agent's, as in PaySim), and a customer destination's
  old/new balances continue its running balance. A legitimate payment larger than the balance is
  scaled down to 10-90 % of it, or becomes a CASH_IN top-up when the account is nearly empty.
- Unusual but honest: TRANSFERs that empty the account to an established counterparty, large
  CASH_OUTs (60-100 % of the balance), transfers to new counterparties, small transfers between friends.
- Household pooling: a customer sends an ordinary transfer to one of its counterparties, who passes
  most of it (90-97 %) on to one of its own counterparties within a few hours. Receiving money and
  sending it on soon after is something many honest accounts do.
- PaySim-style recording noise: a fraction of would-overdraw legitimate rows are recorded as PaySim
  records them (amount kept, `newbalanceOrig` = 0, so old - amount != new); a fraction of rows to
  customer accounts, fraud or not alike, report destination balances 0/0 although money arrived; a
  cash agent short of cash is silently refilled (its old balance then jumps).

Mules and rings
- Mules are recruited from ordinary, busy accounts: their balances, type mix and everyday activity
  are a customer's. They belong to rings of `mules_per_ring` accounts, one of which is the ring's
  collector; rings are Zipf-popular and reused over the whole period across many victims.
- Recruitment: some days (1-10) before a ring first uses a mule, the collector sends it a small
  deposit (a TRANSFER with isFraud = 0: no money is stolen by it).

Fraud (about `fraud_rate` of rows, only TRANSFER and CASH_OUT, all with isFraud = 1)
- Account takeover (at any hour): a customer's account makes 1-3 probe TRANSFERs to a mule (made by
  the fraudster, so fraud), then within a few hours a TRANSFER of the whole balance to that mule,
  then within a few hours the mule's CASH_OUT of the money received.
- Partial fraud (daily cycle): one TRANSFER of 30-90 % of the victim's balance to a mule, then the
  mule's CASH_OUT.
- Ring laundering (daily cycle): a compromised account sends one TRANSFER of the size it usually
  sends (never more than its balance) to a mule of a ring; within a few hours the mule passes
  90-97 % of it on to its ring's collector, who cashes it out within a few hours more. The victim
  behaves as usual, and the mule as a pooling household does; the collector receives from many
  mules, each of which received from several unrelated senders.
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
_FIXED, _SHARE_OF_BALANCE, _SHARE_OF_REF = 0, 1, 2  # _SHARE_OF_REF: of the amount of row `ref`


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
    mules_per_ring: int = 10  # a collector and its mules


SCALES: dict[str, SyntheticScale] = {
    "small": SyntheticScale(n_customers=4_000, n_merchants=1_500, n_agents=150, n_mules=80,
                            n_steps=240, approx_rows=50_000),
    "medium": SyntheticScale(n_customers=40_000, n_merchants=10_000, n_agents=800, n_mules=800,
                             n_steps=720, approx_rows=550_000),
    # PaySim's own size: 6.36 M rows over 743 hours.
    "large": SyntheticScale(n_customers=480_000, n_merchants=100_000, n_agents=8_000, n_mules=8_000,
                            n_steps=743, approx_rows=6_300_000),
}
SCALES["full"] = SCALES["large"]  # the contract's `--scale full`: the real dataset's size, which large already is


@dataclass(frozen=True)
class Behaviour:
    """How customers, agents, mules and fraudsters behave; shared by all scales."""

    # Type mix (order of TRANSACTION_TYPES: CASH_IN, CASH_OUT, DEBIT, PAYMENT, TRANSFER), near PaySim's.
    type_mix: tuple[float, ...] = (0.22, 0.35, 0.01, 0.33, 0.09)
    type_concentration: float = 6.0  # Dirichlet concentration of each customer's own mix
    type_amount_median: tuple[float, ...] = (260_000.0, 150_000.0, 5_000.0, 12_000.0, 250_000.0)
    amount_sigma: float = 0.9  # log-normal spread of one customer's amounts
    customer_scale_sigma: float = 0.7  # log-normal spread of customers' amount scales
    activity_sigma: float = 1.0  # log-normal spread of customers' activity rates
    mule_activity_factor: float = 3.0  # mules are recruited from busy accounts
    small_transfer_share: float = 0.3  # legit transfers that are small (between friends)
    small_transfer_median: float = 2_500.0
    initial_balance_median: float = 80_000.0
    initial_balance_sigma: float = 1.2
    zero_balance_share: float = 0.1
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
    dest_zero_noise_fraud: float = 0.05
    takeover_share: float = 0.35  # fraud events that are takeovers
    ring_share: float = 0.4  # fraud events that are ring laundering; the rest are partial
    probes: tuple[int, int] = (1, 3)
    probe_median: float = 20_000.0
    probe_sigma: float = 1.0
    probe_gap_steps: float = 0.6  # max hours between consecutive takeover transfers
    takeover_delay_steps: float = 2.0  # max hours from the last probe to the emptying transfer
    cashout_delay_steps: float = 4.0  # max hours from a mule receiving money to its cash-out
    partial_share: tuple[float, float] = (0.3, 0.9)
    ring_zipf: float = 0.7
    legit_empty_per_fraud_event: float = 3.0
    big_cashout_per_fraud_event: float = 1.5
    big_cashout_share: tuple[float, float] = (0.6, 1.0)
    big_cashout_full: float = 0.3  # big cash-outs that take the whole balance
    pooling_per_fraud_event: float = 3.0  # legitimate pass-on chains per fraud event
    pass_on_delay_steps: float = 6.0  # max hours from receiving money to passing it on (pooling, mules)
    pass_on_share: tuple[float, float] = (0.9, 0.97)  # of the money received that is passed on
    recruitment_median: float = 1_000.0  # a ring's deposit to a new mule (not a theft: isFraud 0)
    recruitment_lead_steps: tuple[float, float] = (24.0, 240.0)  # hours between it and the mule's first use


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

        n_partners = rng.integers(1, b.max_partners + 1, n_c)
        partners = (np.arange(n_c)[:, None] + rng.integers(1, n_c, (n_c, b.max_partners))) % n_c
        home_agent = n_p + rng.integers(0, n_a, n_p)

        initial = np.zeros(n_p + n_a + scale.n_merchants)
        initial[:n_p] = rng.lognormal(np.log(b.initial_balance_median), b.initial_balance_sigma, n_p)
        initial[:n_p] *= amount_scale * (rng.random(n_p) >= b.zero_balance_share)
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

    def ring_of_event(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The ring each of n fraud events uses (Zipf-popular rings are reused the most)."""
        return rng.choice(len(self.ring_p), n, p=self.ring_p)

    def collector(self, ring: np.ndarray) -> np.ndarray:
        """Each ring's collector: its first member."""
        return self.scale.n_customers + ring * self.scale.mules_per_ring

    def ring_mule(self, ring: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A mule of each ring other than its collector."""
        size = np.minimum(self.scale.mules_per_ring, self.scale.n_mules - ring * self.scale.mules_per_ring)
        return self.collector(ring) + 1 + (rng.random(len(ring)) * (size - 1)).astype(np.int64)

    def cash_agent(self, person: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The agent each person deals cash with: usually its home agent, else a Zipf-popular one."""
        n = len(person)
        any_agent = self.first_agent + rng.choice(self.scale.n_agents, n, p=self.agent_p)
        return np.where(rng.random(n) < self.behaviour.home_agent_share, self.home_agent[person], any_agent)

    def usual_transfer(self, person: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A transfer amount of the size each person usually sends."""
        b = self.behaviour
        median = b.type_amount_median[TRANSFER] * self.amount_scale[person]
        return np.round(median * rng.lognormal(0.0, b.amount_sigma, len(person)), 2)

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
        """Add n events; scalars broadcast; returns the index of the first one. Legit `_FIXED` rows need
        `alt_dest` (the agent where a nearly empty account tops up instead)."""
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
    n_pool = round(b.pooling_per_fraud_event * n_fraud_events)
    n_normal = max(0, scale.approx_rows - _n_fraud_rows(scale, b) - n_empty - n_big - 2 * n_pool)

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

    # Household pooling: an ordinary transfer to a counterparty, passed on to one of its own.
    who = world.customers_by_activity(n_pool, rng)
    middle = world.partner_of(who, rng)
    sent_at = np.minimum(world.times(n_pool, rng), 1.0 + scale.n_steps - b.pass_on_delay_steps)
    first = events.add(n_pool, time=sent_at, type=TRANSFER, orig=who, dest=middle, alt_dest=world.home_agent[who],
                       amount=world.usual_transfer(who, rng), share=rng.uniform(*b.capped_share, n_pool),
                       noise_dest=rng.random(n_pool) < b.dest_zero_noise_legit)
    events.add(n_pool, time=sent_at + rng.uniform(0.01, b.pass_on_delay_steps, n_pool), type=TRANSFER,
               orig=middle, dest=world.partner_of(middle, rng), mode=_SHARE_OF_REF, ref=first + np.arange(n_pool),
               share=rng.uniform(*b.pass_on_share, n_pool),
               noise_dest=rng.random(n_pool) < b.dest_zero_noise_legit)


def _legit_destinations(world: _World, orig: np.ndarray, kind: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    scale, b = world.scale, world.behaviour
    n = len(orig)
    dest = np.empty(n, dtype=np.int64)

    pay = kind == PAYMENT
    dest[pay] = world.first_merchant + rng.choice(scale.n_merchants, int(pay.sum()), p=world.merchant_p)

    cash = ~pay & (kind != TRANSFER)
    dest[cash] = world.cash_agent(orig[cash], rng)

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
    partial = 1.0 - b.takeover_share - b.ring_share
    return b.takeover_share * (mean_probes + 2) + partial * 2 + b.ring_share * 3


def _n_fraud_events(scale: SyntheticScale, b: Behaviour) -> int:
    return max(1, round(scale.fraud_rate * scale.approx_rows / _rows_per_event(b)))


def _n_fraud_rows(scale: SyntheticScale, b: Behaviour) -> int:
    return round(_n_fraud_events(scale, b) * _rows_per_event(b))


def _fraud_events(world: _World, events: _Events, rng: np.random.Generator) -> None:
    scale, b = world.scale, world.behaviour
    n_all = _n_fraud_events(scale, b)
    pattern = rng.random(n_all)
    ring_mules, ring_times = _ring_laundering(world, events, int((pattern < b.ring_share).sum()), rng)
    n_events = int((pattern >= b.ring_share).sum())
    victim = world.customers_by_activity(n_events, rng)
    mule = world.ring_mule(world.ring_of_event(n_events, rng), rng)
    takeover = rng.random(n_events) < b.takeover_share / max(1e-9, 1.0 - b.ring_share)
    n_probes = np.where(takeover, rng.integers(b.probes[0], b.probes[1] + 1, n_events), 0)
    span = b.probes[1] * b.probe_gap_steps + b.takeover_delay_steps + b.cashout_delay_steps
    latest = 1.0 + max(1e-9, scale.n_steps - span)
    start = np.where(takeover, 1.0 + rng.random(n_events) * (latest - 1.0),  # takeovers: any hour
                     np.minimum(world.times(n_events, rng), latest))  # partial fraud: the daily cycle
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
    events.add(n_events, time=cash_time, type=CASH_OUT, orig=mule, dest=world.cash_agent(mule, rng),
               mode=_SHARE_OF_REF, ref=first_theft + np.arange(n_events), fraud=1,
               noise_dest=rng.random(n_events) < noise)
    _recruitment(world, events, np.r_[ring_mules, mule], np.r_[ring_times, start], rng)


def _recruitment(world: _World, events: _Events, mule: np.ndarray, used_at: np.ndarray,
                 rng: np.random.Generator) -> None:
    """Each mule gets a small deposit from its ring's collector some days before the ring first uses it."""
    b = world.behaviour
    first_use = np.full(world.n_persons, np.inf)
    np.minimum.at(first_use, mule, used_at)
    recruits = np.flatnonzero(np.isfinite(first_use))
    n = len(recruits)
    ring = (recruits - world.scale.n_customers) // world.scale.mules_per_ring
    lead = rng.uniform(*b.recruitment_lead_steps, n)
    collector = world.collector(ring)
    events.add(n, time=np.maximum(1.0, first_use[recruits] - lead), type=TRANSFER, orig=collector,
               dest=recruits, alt_dest=world.home_agent[collector],
               amount=np.round(rng.lognormal(np.log(b.recruitment_median), 0.5, n), 2),
               share=rng.uniform(*b.capped_share, n), noise_dest=rng.random(n) < b.dest_zero_noise_legit)


def _ring_laundering(world: _World, events: _Events, n: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Victim -> mule (an ordinary-sized transfer), mule -> its ring's collector, collector's cash-out.

    Returns each event's mule and the time it received the money."""
    scale, b = world.scale, world.behaviour
    victim = world.customers_by_activity(n, rng)
    ring = world.ring_of_event(n, rng)
    mule = world.ring_mule(ring, rng)
    latest = 1.0 + scale.n_steps - b.pass_on_delay_steps - b.cashout_delay_steps
    sent_at = np.minimum(world.times(n, rng), latest)  # the daily cycle, ending inside the period
    noise = b.dest_zero_noise_fraud
    theft = events.add(n, time=sent_at, type=TRANSFER, orig=victim, dest=mule,
                       amount=world.usual_transfer(victim, rng), share=rng.uniform(*b.capped_share, n),
                       fraud=1, noise_dest=rng.random(n) < noise)
    passed_at = sent_at + rng.uniform(0.01, b.pass_on_delay_steps, n)
    collector = world.collector(ring)
    passed = events.add(n, time=passed_at, type=TRANSFER, orig=mule, dest=collector,
                        mode=_SHARE_OF_REF, ref=theft + np.arange(n), share=rng.uniform(*b.pass_on_share, n),
                        fraud=1, noise_dest=rng.random(n) < noise)
    events.add(n, time=passed_at + rng.uniform(0.01, b.cashout_delay_steps, n), type=CASH_OUT,
               orig=collector, dest=world.cash_agent(collector, rng), mode=_SHARE_OF_REF,
               ref=passed + np.arange(n), fraud=1, noise_dest=rng.random(n) < noise)
    return mule, sent_at


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
            a = min(math.floor(amount[refs[i]] * shares[i] * 100.0) / 100.0, bo)
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
