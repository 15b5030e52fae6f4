"""`Store`, the one facade through which every other package talks to SQLite. Its parts live by concern:
storage.projects (projects, examples, metrics, artifacts), storage.pairs (pairs, labels, review), storage.insight
(the Insight tab's queries), storage.jobs (jobs, events, rounds, consistency), storage.audit (the blind audit
samples and their answers), storage.seed (the seed builder: answers to seed prompts, a person's rankings, the seed
pairs), storage.people (review assignments, each person's labels, the rule that decides between people);
storage.base holds the connection."""

from __future__ import annotations

from storage.audit import AuditStore
from storage.base import NotFound, now
from storage.insight import InsightStore
from storage.jobs import RESUMABLE_STATES, JobStore
from storage.pairs import HUMAN_DECIDES, TRUSTED_SOURCES, ReviewFilter
from storage.people import PeopleStore
from storage.projects import ProjectStore, example_hash
from storage.seed import SeedStore

__all__ = [
    "HUMAN_DECIDES",
    "RESUMABLE_STATES",
    "TRUSTED_SOURCES",
    "NotFound",
    "ReviewFilter",
    "Store",
    "example_hash",
    "now",
]


class Store(JobStore, InsightStore, PeopleStore, ProjectStore, AuditStore, SeedStore):
    """One open database. Cheap to create; each process (UI, worker, stage) opens its own."""
