"""The studio under load (issue 24): 8 concurrent gradio_client sessions read review pages and write labels
through the studio's API while a worker trains a round on the same database. Reports p50/p95 latency of the
review page and of a label write, and labels lost (every label written must be the pair's label at the end,
with one audit event each).

Run: python benchmarks/load.py [--sessions 8] [--writes 30]"""
from __future__ import annotations

import sys
import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/x.py` from anywhere

from benchmarks.harness import (enqueue, finished, free_port, mini_world, run_config, start, start_worker, stop,
                                wait_for, wait_listening)
from storage import Store


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def session(url: str, project: str, own: list[int], writes: int, k: int, out: dict, lock: threading.Lock) -> None:
    """One person: read a page of the queue, label one of their pairs, again and again."""
    from gradio_client import Client
    client = Client(url, verbose=False)
    pages, labels, written, errors = [], [], {}, []
    for n in range(writes):
        try:
            t = time.perf_counter()
            client.predict(project, n % 3, 20, api_name="/review_page")
            pages.append(time.perf_counter() - t)
            pair_id, label = own[n % len(own)], "ab"[(n + k) % 2]
            t = time.perf_counter()
            client.predict(pair_id, label, api_name="/set_label")
            labels.append(time.perf_counter() - t)
            written[pair_id] = label
        except Exception as e:  # counted, not hidden: a failed write is a lost label
            errors.append(f"{type(e).__name__}: {str(e)[:120]}")
    with lock:
        out["pages"] += pages
        out["labels"] += labels
        out["expected"].update(written)
        out["writes"] += len(labels)
        out["errors"] += errors


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--writes", type=int, default=30, help="page reads and label writes per session")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="spa-load-"))
    started = time.monotonic()
    world = mini_world(tmp / "world")
    db, port = tmp / "load.db", free_port()
    job_id = enqueue(db, run_config(world, tmp / "run", rounds=1, prompts_per_round=[40], round_epochs=30,
                                    batch_size=4, train={"micro_batch_size": 4}))
    worker = start_worker(db, tmp / "worker.log")
    studio = start(["--db", str(db), "--port", str(port), "--no-worker"], tmp / "studio.log")
    try:
        wait_listening(port)
        wait_for(db, job_id, lambda job: finished(job) or (job.stage == "train" and job.round == 1
                                                           and job.progress_done > 0), procs=[worker])
        store = Store(db)
        ids = [pair.id for pair in store.pairs(job_id, 1)]
        store.close()
        lock = threading.Lock()
        url = f"http://127.0.0.1:{port}/"
        alone = {"pages": [], "labels": [], "expected": {}, "writes": 0, "errors": []}  # the baseline: one session
        session(url, "bench", ids[:1], 10, 0, alone, lock)
        out = {"pages": [], "labels": [], "expected": dict(alone["expected"]), "writes": 0, "errors": []}
        threads = [threading.Thread(target=session, args=(url, "bench", ids[k::args.sessions] or ids[:1], args.writes,
                                                          k, out, lock)) for k in range(args.sessions)]
        load_before = os.getloadavg()
        load_from = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        load_s = time.monotonic() - load_from
        still_training = Store(db).job(job_id).stage == "train"
        job = wait_for(db, job_id, finished, procs=[worker], timeout=900)
    finally:
        stop(studio)
        stop(worker)
    store = Store(db)
    events = len([e for e in store.label_events() if e.actor == "api"]) - alone["writes"]
    lost = sum(store.pair(i).label != label or store.pair(i).label_source != "human"
               for i, label in out["expected"].items())
    store.close()
    attempted = args.sessions * args.writes
    lost += attempted - events
    ms = {k: [v * 1000 for v in out[k]] for k in ("pages", "labels")}
    print(f"`python benchmarks/load.py --sessions {args.sessions} --writes {args.writes}`, "
          f"{(time.monotonic() - started) / 60:.1f} min; {args.sessions} sessions for {load_s:.0f} s while round 1 "
          f"trained ({'still training at the end' if still_training else 'training ended during the load'}); "
          f"job {job.status}\n")
    base = {k: [v * 1000 for v in alone[k]] for k in ("pages", "labels")}
    print(f"load average {load_before[0]:.1f} when the sessions started ({os.cpu_count()} cores)\n")
    print("| request | n | p50 ms | p95 ms | max ms | one session alone: p50 ms | p50 ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, key in (("review page (20 pairs)", "pages"), ("label write", "labels")):
        v = ms[key]
        print(f"| {name} | {len(v)} | {statistics.median(v):.0f} | {percentile(v, 0.95):.0f} | {max(v):.0f} | "
              f"{statistics.median(base[key]):.0f} | {statistics.median(v) / statistics.median(base[key]):.1f}× |")
    print(f"\nlabels written {attempted}, audit events {events}, labels lost = {lost}"
          + (f"; errors: {out['errors'][:3]}" if out["errors"] else ""))
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
