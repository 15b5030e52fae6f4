"""How fast the Review tab pages through a large queue.

Fills a fresh database with 100,000 judged pairs (through Store.add_pairs, as the worker writes them), then
times `app.actions.review_page` — the function the Review tab's callback and the `review_page` API endpoint
call, end to end: opening the database, the filtered and ordered query, and building the displayed rows —
for the default order, several filters and a deep page. Prints the median per case; the target is < 300 ms.

    python benchmarks/review_page.py [--pairs 100000] [--repeat 7] [--db PATH (kept, reused if filled)]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from app.actions import ReviewQuery, review_page
from storage import Job, Pair, Store

PROJECT = "bench"
TARGET_MS = 300.0
WORDS = (
    "sort",
    "list",
    "numbers",
    "reverse",
    "count",
    "letters",
    "sum",
    "digits",
    "explain",
    "answer",
    "short",
    "story",
    "cat",
    "dog",
    "river",
    "mountain",
    "blue",
    "green",
    "fast",
    "slow",
)


def fill(db: str, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    store = Store(db)
    try:
        project = store.ensure_project(PROJECT)
        job_id = store.enqueue(Job(project_id=project.id, kind="run", config_yaml=""))
        batch: list[Pair] = []
        for i in range(n):
            conf = 0.5 + rng.random() * 0.5
            words = " ".join(rng.choice(WORDS) for _ in range(12))
            label = rng.choice("ab")
            batch.append(
                Pair(
                    job_id=job_id,
                    round=1 + i * 3 // n,
                    project_id=project.id,
                    prompt=[{"role": "user", "content": f"task {i}: {words}"}],
                    response_a=" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))),
                    response_b=" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))),
                    tokens_a=rng.randint(5, 40),
                    tokens_b=rng.randint(5, 40),
                    logp_policy_a=-rng.random() * 50,
                    logp_policy_b=-rng.random() * 50,
                    logp_init_a=-rng.random() * 50,
                    logp_init_b=-rng.random() * 50,
                    reward_a=rng.gauss(0, 1),
                    reward_b=rng.gauss(0, 1),
                    margin=rng.random() * 3,
                    confidence=conf,
                    judge_label=label,
                    label=label,
                    label_source="human" if rng.random() < 0.02 else "self",
                    ext_margin=rng.gauss(0, 1),
                    noisy=rng.random() < 0.1,
                    gold_a=rng.random(),
                    gold_b=rng.random(),
                )
            )
            if len(batch) == 5000:
                store.add_pairs(batch)
                batch = []
        if batch:
            store.add_pairs(batch)
    finally:
        store.close()


CASES = [
    ("default order (flagged, then least confident), first page", ReviewQuery(), 0, 20),
    ("default order, page size 50", ReviewQuery(), 0, 50),
    ("deep page (pairs 90,001-90,020)", ReviewQuery(), 4500, 20),
    ("round 2 only", ReviewQuery(round=2), 0, 20),
    ("flagged only", ReviewQuery(flagged=True), 0, 20),
    ("source self, confidence 0.6-0.7", ReviewQuery(source="self", min_confidence=0.6, max_confidence=0.7), 0, 20),
    ("text search 'river mountain'", ReviewQuery(search="river mountain"), 0, 20),
    ("newest first, page 100", ReviewQuery(order="newest"), 100, 20),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--db", default=None, help="database to fill (and keep); default a temporary one")
    args = parser.parse_args(argv)

    tmp = None
    if args.db is None:
        tmp = tempfile.TemporaryDirectory(prefix="spa-review-bench-")
        db = str(Path(tmp.name) / "bench.db")
    else:
        db = args.db
    store = Store(db)
    project = store.project(PROJECT)
    have = sum(store.label_source_counts(project.id).values()) if project else 0
    store.close()
    if have != args.pairs:
        if have:
            print(f"{db} holds {have} pairs, not {args.pairs}: use a new --db", file=sys.stderr)
            return 2
        started = time.perf_counter()
        fill(db, args.pairs)
        print(f"filled {db} with {args.pairs:,} pairs in {time.perf_counter() - started:.1f}s")

    worst = 0.0
    print(f"{'case':58} {'median ms':>10} {'min ms':>8} {'total':>8} rows")
    for name, query, page, size in CASES:
        review_page(db, PROJECT, query, page, size)  # warm the page cache
        times, result = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = review_page(db, PROJECT, query, page, size)
            times.append((time.perf_counter() - t0) * 1000)
        median = statistics.median(times)
        worst = max(worst, median)
        print(f"{name:58} {median:10.1f} {min(times):8.1f} {result.total:8,} {len(result.rows)}")
    verdict = "OK" if worst < TARGET_MS else "SLOWER THAN TARGET"
    print(f"slowest median {worst:.1f} ms (target < {TARGET_MS:.0f} ms): {verdict}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
