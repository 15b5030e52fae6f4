"""Wall-clock minutes of each stage of a finished run, read from its job's log in the database: where a run's time
went, stage by stage and in total.

    python benchmarks/stage_times.py runs/text_demo.db [--job 1]
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime

from storage import Store

STAGE_EVENT = re.compile(r"^\[round (\d+) (\w+)\] (started|done)$")


def stage_minutes(events: list[dict]) -> list[tuple[int, str, float]]:
    """(round, stage, minutes) for every stage that started and finished, in order."""
    started: dict[tuple[int, str], datetime] = {}
    out = []
    for event in events:
        match = STAGE_EVENT.match(event["message"])
        if not match:
            continue
        key, at = (int(match[1]), match[2]), datetime.fromisoformat(event["at"])
        if match[3] == "started":
            started[key] = at
        elif key in started:
            out.append((*key, (at - started.pop(key)).total_seconds() / 60))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("db")
    p.add_argument("--job", type=int, default=None, help="the run's job id (default: the first run in the database)")
    args = p.parse_args()
    store = Store(args.db)
    job_id = args.job or min(j.id for j in store.jobs() if j.kind == "run")
    events = store.events(job_id, limit=1_000_000)
    rows = stage_minutes(events)
    print("| round | stage | minutes |\n|---|---|---|")
    for round_, stage, minutes in rows:
        print(f"| {round_} | {stage} | {minutes:.1f} |")
    first, last = datetime.fromisoformat(events[0]["at"]), datetime.fromisoformat(events[-1]["at"])
    total = (last - first).total_seconds() / 60
    print(f"\nstages {sum(m for *_, m in rows):.1f} min; first to last event {total:.1f} min")


if __name__ == "__main__":
    main()
