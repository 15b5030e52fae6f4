from storage.db import SCHEMA_VERSION, connect, migrate, schema_version
from storage.records import (
    Artifact,
    Example,
    Job,
    LabelEvent,
    Metric,
    Pair,
    Project,
    Round,
    SeedAnswer,
    SeedProgress,
    SeedRanking,
)
from storage.store import NotFound, ReviewFilter, Store

__all__ = [
    "SCHEMA_VERSION",
    "connect",
    "migrate",
    "schema_version",
    "Artifact",
    "Example",
    "Job",
    "LabelEvent",
    "Metric",
    "NotFound",
    "Pair",
    "Project",
    "Round",
    "ReviewFilter",
    "SeedAnswer",
    "SeedProgress",
    "SeedRanking",
    "Store",
]
