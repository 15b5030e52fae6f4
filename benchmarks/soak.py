"""The soak (issue 38): many short demo-world runs (30 by default) through one worker, back to back, while named
people (8 by default), each a gradio_client process signed in with an account of their own, read review pages and
label the runs' pairs as they appear. A stage process that dies of a signal (the SIGSEGV issue 38 saw once at the
start of seed DPO) is retried once by the worker, which logs it; this script counts those.

Reports: runs done and failed, stage processes started, stage crashes by signal, retries, runs failed by a second
crash, Python stacks dumped by a crash (faulthandler, in the worker's log), labels written, their audit events,
labels lost (a person's last label of a pair that is not its label at the end: must be 0), per-call latency, the
studio's CPU per call, the machine's load average over the soak and the stage server's thread count (both sampled
every 10 s). JE_ARROW_MALLOC_CONF=background_thread:true in the environment runs the soak with the server's old
second thread (pyarrow's jemalloc), for a comparison.

Run: python benchmarks/soak.py [--runs 30] [--people 8] [--pause 1]"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

from benchmarks.harness import (
    descendants,
    enqueue,
    finished,
    free_port,
    mini_world,
    run_config,
    start,
    start_worker,
    stop,
    wait_listening,
)
from benchmarks.load_tally import Tally, accounts, auth_args, percentile, signed_in, timed
from storage import Store

PROJECT = "bench"
UNSET = "(unset: the stage server sets background_thread:false)"
CRASHED = re.compile(r"stage \w+ crashed with (\w+)")


def pairs_of(db: Path, people: int, k: int) -> list[int]:
    """The project's pairs that are person k's to label (pair id modulo the number of people): no two people share
    a pair, so each pair's last label is known."""
    store = Store(db)
    try:
        return [
            p.id for job in store.jobs(store.project(PROJECT).id) for p in store.pairs(job.id) if p.id % people == k
        ]
    finally:
        store.close()


def labeller(results, url: str, db: Path, name: str, password: str, people: int, k: int, pause: float, done) -> None:
    """One person until `done` is set: a page of the queue, then a label on one of their pairs, `pause` seconds
    (a person reads the pair), round and round."""
    tally = Tally()
    client = signed_in(url, name, password, tally)
    cpu, n = time.process_time(), 0
    while client is not None and not done.wait(pause):
        own = pairs_of(db, people, k)
        if not own:
            time.sleep(1.0)
            continue
        pair_id, label = own[n % len(own)], "ab"[(n // len(own) + k) % 2]
        n += 1
        try:
            timed(tally, "page", lambda: client.predict(PROJECT, 0, 20, api_name="/review_page"))
            timed(tally, "label", lambda: client.predict(pair_id, label, api_name="/set_label"))
            tally.labels += 1
            tally.kept.append((pair_id, label))
        except Exception as e:  # counted, not hidden: a failed write is a lost label
            tally.errors.append(f"{name}: {type(e).__name__}: {str(e)[:120]}")
    tally.cpu_s = time.process_time() - cpu
    results.put(tally)


def server_threads(worker_pid: int) -> int | None:
    """The threads of the worker's stage server (its fork server) now; None while it does not run."""
    for proc in descendants(worker_pid):
        try:
            if "forkserver" in " ".join(proc.cmdline()):
                return proc.num_threads()
        except psutil.NoSuchProcess:
            pass
    return None


def soak_config(world, tmp: Path, n: int) -> str:
    """A short run: seed DPO, one round of 8 prompts, evaluation on 4 prompts; seed n."""
    return run_config(world, tmp / f"run-{n}", rounds=1, prompts_per_round=[8], seed=n, eval={"max_prompts": 4})


def tally_runs(db: Path, jobs: list[int]) -> dict:
    store = Store(db)
    try:
        statuses = Counter(store.job(j).status for j in jobs)
        messages = [e["message"] for j in jobs for e in store.events(j, limit=100_000)]
        failed_by_crash = sum("after one retry" in (store.job(j).error or "") for j in jobs)
    finally:
        store.close()
    return {
        "statuses": statuses,
        "stages": sum(m.endswith("] started") for m in messages),
        "crashes": Counter(m.group(1) for m in map(CRASHED.search, messages) if m),
        "retries": sum("retrying once" in m for m in messages),
        "failed_by_crash": failed_by_crash,
    }


def labels_check(db: Path, tally: Tally, names: list[str]) -> tuple[int, int]:
    """(audit events by the people, labels lost)."""
    expected = dict(tally.kept)  # each pair is one person's: their last label
    store = Store(db)
    try:
        events = sum(e.actor in names for e in store.label_events())
        lost = sum(
            (store.pair(i).label, store.pair(i).label_source) != (label, "human") for i, label in expected.items()
        )
    finally:
        store.close()
    return events, lost + abs(tally.labels - events)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--people", type=int, default=8)
    p.add_argument("--pause", type=float, default=1.0, help="seconds each person waits between pairs")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="spa-soak-"))
    started = time.monotonic()
    world = mini_world(tmp / "world")
    db, port = tmp / "soak.db", free_port()
    jobs = [enqueue(db, soak_config(world, tmp, n)) for n in range(args.runs)]
    people = accounts(args.people)
    studio = start(["--db", str(db), "--port", str(port), "--no-worker", *auth_args(people)], tmp / "studio.log")
    worker = None
    ctx = multiprocessing.get_context("spawn")
    results, done = ctx.Queue(), ctx.Event()
    procs, loads, threads = [], [], set()
    try:
        wait_listening(port)
        url = f"http://127.0.0.1:{port}/"
        procs = [
            ctx.Process(target=labeller, args=(results, url, db, name, pw, args.people, k, args.pause, done))
            for k, (name, pw) in enumerate(people)
        ]
        for proc in procs:
            proc.start()
        studio_process = psutil.Process(studio.pid)
        cpu = sum(studio_process.cpu_times()[:2])
        worker = start_worker(db, tmp / "worker.log")
        store = Store(db)
        while not all(finished(store.job(j)) for j in jobs):
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}; see {tmp / 'worker.log'}")
            loads.append(os.getloadavg()[0])
            threads.add(server_threads(worker.pid))
            time.sleep(10)
        store.close()
        done.set()
        tally = Tally()
        for _ in procs:
            tally.add(results.get(timeout=600))
        studio_cpu = sum(studio_process.cpu_times()[:2]) - cpu
    finally:
        done.set()
        for proc in procs:
            proc.join(60)
        stop(studio)
        if worker is not None:
            stop(worker)
    runs = tally_runs(db, jobs)
    events, lost = labels_check(db, tally, [name for name, _ in people])
    dumps = (tmp / "worker.log").read_text(errors="replace").count("Fatal Python error")
    calls = sum(len(v) for v in tally.ms.values())
    print(
        f"`python benchmarks/soak.py --runs {args.runs} --people {args.people} --pause {args.pause:g}`, "
        f"{(time.monotonic() - started) / 60:.1f} min, {os.cpu_count()} cores; load average (1 min) over the soak: "
        f"mean {statistics.mean(loads or [0]):.1f}, max {max(loads or [0]):.1f}; the stage server's threads "
        f"(sampled with the load): {sorted(t for t in threads if t is not None) or 'never seen'}; "
        f"JE_ARROW_MALLOC_CONF={os.environ.get('JE_ARROW_MALLOC_CONF', UNSET)}\n"
    )
    print(
        "| runs | done | failed | stage processes | crashes (by signal) | retries | failed by a 2nd crash "
        "| crash stacks dumped | labels written | audit events | labels lost |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    crashes = ", ".join(f"{n} {sig}" for sig, n in runs["crashes"].items()) or "0"
    print(
        f"| {args.runs} | {runs['statuses']['done']} | {runs['statuses']['failed']} | {runs['stages']} | {crashes} "
        f"| {runs['retries']} | {runs['failed_by_crash']} | {dumps} | {tally.labels} | {events} | {lost} |"
    )
    print("\n| call | n | p50 ms | p95 ms | max ms |\n|---|---|---|---|---|")
    for kind in ("page", "label"):
        v = tally.ms[kind]
        if v:
            print(f"| {kind} | {len(v)} | {statistics.median(v):.0f} | {percentile(v, 0.95):.0f} | {max(v):.0f} |")
    print(
        f"\nstudio CPU {1000 * studio_cpu / max(calls, 1):.0f} ms per call ({studio_cpu:.0f} s over {calls} calls); "
        f"clients' CPU {tally.cpu_s:.0f} s; other statuses: {dict(runs['statuses'])}"
        + (f"; errors: {tally.errors[:3]}" if tally.errors else "")
    )
    return 0 if lost == 0 and not tally.errors and runs["statuses"]["done"] == args.runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
