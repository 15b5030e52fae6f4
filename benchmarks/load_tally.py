"""What benchmarks/load.py's and soak.py's people did and what the database says after: the call timings per kind,
the labels each person kept, the accounts the studio is started with, and the check that no label was lost and no
undo crossed people. Apart from load.py so that its Chromium phase (load_browser.py) and the soak share them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from storage import Store

UNDO_EVERY = 5  # every 5th label is undone by its person right after it is written


KINDS = ("page", "label", "undo")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def accounts(n: int) -> list[tuple[str, str]]:
    """n people's names and passwords (what `--auth NAME:PASSWORD` takes, once per person)."""
    return [(f"person{k}", f"load-pass-{k}") for k in range(n)]


def auth_args(people: list[tuple[str, str]]) -> list[str]:
    return [arg for name, password in people for arg in ("--auth", f"{name}:{password}")]


@dataclass
class Tally:
    """What one person (or all of them) did: call times in ms by kind, the labels in force, what went wrong."""

    ms: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    labels: int = 0
    undos: int = 0
    kept: list[tuple[int, str]] = field(default_factory=list)  # (pair, label) written and not undone, in order
    crossed: int = 0  # undos that reverted something other than this person's last label
    errors: list[str] = field(default_factory=list)
    cpu_s: float = 0.0

    def add(self, other: Tally) -> None:
        for k in KINDS:
            self.ms[k] += other.ms[k]
        self.labels += other.labels
        self.undos += other.undos
        self.kept += other.kept
        self.crossed += other.crossed
        self.errors += other.errors
        self.cpu_s += other.cpu_s


def timed(tally: Tally, kind: str, call):
    t = time.perf_counter()
    out = call()
    tally.ms[kind].append(1000 * (time.perf_counter() - t))
    return out


def signed_in(url: str, name: str, password: str, tally: Tally):
    """A gradio_client signed in as `name`, or None with the reason in `tally.errors` (after 3 tries)."""
    from gradio_client import Client

    for attempt in range(3):
        try:
            return Client(url, auth=(name, password), verbose=False)
        except Exception as e:
            error = f"{name}: signing in: {type(e).__name__}: {str(e)[:200]}"
            time.sleep(2)
    tally.errors.append(error)
    return None


@dataclass
class Check:
    """What the database says after a phase."""

    events: int  # label events written by the phase's people
    lost: int  # labels kept by a person that are not the pair's label now (or whose audit event is missing)
    crossed: int  # undo events whose actor differs from the reverted event's


def check(db: Path, before: dict[int, tuple[str, str]], first_event: int, tally: Tally, calls: int) -> Check:
    """The pairs' labels against what each person kept (their pairs are their own: the last kept label of a pair
    is its label; a pair with none is as it was before the phase) and the audit events against the calls."""
    store = Store(db)
    try:
        events = [e for e in store.label_events() if e.id > first_event]
        by_id = {e.id: e for e in store.label_events()}
        expected = dict(before)
        for pair_id, label in tally.kept:
            expected[pair_id] = (label, "human")
        lost = sum((p.label, p.label_source) != expected[i] for i in before if (p := store.pair(i)))
    finally:
        store.close()
    crossed = sum(e.undoes is not None and by_id[e.undoes].actor != e.actor for e in events)
    return Check(len(events), lost + abs(calls - len(events)), crossed)


def pair_states(db: Path, ids: list[int]) -> tuple[dict[int, tuple[str, str]], int]:
    store = Store(db)
    try:
        states = {i: (p.label, p.label_source) for i in ids if (p := store.pair(i))}
        events = store.label_events()
        return states, events[-1].id if events else 0
    finally:
        store.close()


@dataclass
class Phase:
    name: str
    people: int
    seconds: float
    load: tuple[float, float, float]
    tally: Tally
    check: Check
    studio_cpu_s: float
    calls: int
    training: str = ""  # whether round 1 trained during the phase: throughout, until ..., no
