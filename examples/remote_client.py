"""A team's script against a running studio, over its named API (gradio_client), from any machine that reaches it:

    python examples/remote_client.py --url http://studio:7860/ --user alice:PW1 --user bob:PW2

It creates a project, uploads the demo world's seed pairs and pool prompts (`handle_file`: the files travel with
the call), queues a short run that pauses at its review gate, labels pairs of the first round as each person (each
signed in with their own account), approves the review, waits for the run to finish, and downloads the grown
dataset, which it reads back with `datasets.load_dataset` and whose provenance (label sources, and who labelled
what) it prints. docs/operations.md ("A remote script") describes it.

The files come from the demo world on this machine (`--world`; built there when missing: `--mini` builds the
two-minute-shorter test size). The model is named as the studio's machine sees it: `demo:model` (the studio's own
demo world) by default."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

CORE = ("prompt", "chosen", "rejected")  # every other column of the export is provenance


def run_config(project: str, model: str, prompts: int) -> str:
    """One short SPA round with a review gate: seed DPO, then `prompts` prompts generated, judged and paused."""
    return f"""project: {project}
model: {model}
rounds: 1
prompts_per_round: [{prompts}]
review_gate: true
learning_rate: 5.0e-4
epochs: 1
round_epochs: 1
batch_size: 8
lora: {{r: 4, alpha: 8, dropout: 0.0}}
generation: {{max_new_tokens: 8, batch_size: 16}}
judge: {{batch_size: 16}}
train: {{micro_batch_size: 8}}
eval: {{max_prompts: 4}}
seed: 1
"""


def connect(url: str, users: list[str]) -> list[tuple[str, object]]:
    """One client per person (NAME:PASSWORD), each signed in as itself; one anonymous client without users."""
    from gradio_client import Client

    if not users:
        return [("api", Client(url, verbose=False))]
    people = []
    for user in users:
        name, sep, password = user.partition(":")
        if not sep or not name or not password:
            sys.exit(f"--user must be NAME:PASSWORD, got {user!r}")
        people.append((name, Client(url, auth=(name, password), verbose=False)))
    return people


def demo_files(folder: Path | None, mini: bool):
    """The demo world's seed and pool files on this machine, built first when they are not there yet."""
    from engine.worlds.demo_world import WorldSize, build_demo_world, default_demo_dir

    root = folder or default_demo_dir()
    print(f"demo world: {root}")
    return build_demo_world(root, size=WorldSize.mini() if mini else None, progress=lambda *a: None)


def upload(client, path: Path, project: str, role: str) -> dict:
    from gradio_client import handle_file

    report = client.predict(handle_file(str(path)), project, role, api_name="/import_file")
    if not report["ok"]:
        sys.exit(f"{path.name} was refused as {role}: {json.dumps(report['issues'][:5])}")
    print(f"uploaded {path.name} as {role}: {report['added']} added, {report['already_present']} already there")
    return report


def wait(client, job_id: int, states: tuple[str, ...], timeout: float) -> dict:
    """Poll the job until it reaches one of `states`; a failed or stopped job, or the timeout, ends the script."""
    deadline = time.monotonic() + timeout
    while True:
        status = client.predict(job_id, api_name="/job_status")
        if status["status"] in states:
            return status
        if status["status"] in ("failed", "stopped", "interrupted") or time.monotonic() > deadline:
            tail = client.predict(job_id, 20, api_name="/job_log")["text"]
            sys.exit(f"job {job_id} is {status['status']} ({status['error'] or 'no error'}):\n{tail}")
        time.sleep(1.0)


def gold_label(pair: dict) -> str:
    """What a careful person answers: the answer the demo world's gold reward prefers (its tasks have a right
    answer); where gold cannot tell the two apart, they keep the self-judge's choice."""
    from engine.worlds.demo_task import gold_score_messages

    a, b = (gold_score_messages(pair["prompt"], pair[key]) for key in ("response_a", "response_b"))
    return "a" if a > b else "b" if b > a else "keep"


def label_as_people(people: list[tuple[str, object]], project: str, per_person: int) -> dict[str, list[int]]:
    """Each person labels their own `per_person` pairs of round 1, least confident first, as gold says."""
    ids = people[0][1].predict(project, 0, per_person * len(people), round=1, api_name="/review_page")["pair_ids"]
    labelled: dict[str, list[int]] = {}
    for i, (name, client) in enumerate(people):
        for pair_id in ids[i * per_person : (i + 1) * per_person]:
            label = gold_label(client.predict(pair_id, api_name="/get_pair"))
            client.predict(pair_id, label, api_name="/set_label")
            labelled.setdefault(name, []).append(pair_id)
        print(f"{name} labelled pairs {labelled.get(name, [])}")
    return labelled


def show_provenance(data_file: Path) -> dict:
    from datasets import load_dataset

    rows = load_dataset("json", data_files=str(data_file), split="train")
    provenance = [c for c in rows.column_names if c not in CORE]
    print(f"{data_file}: {len(rows)} preference pairs; provenance columns: {', '.join(provenance)}")
    summary = {"rows": len(rows), "columns": rows.column_names}
    for column in provenance:
        values = Counter(json.dumps(v) if isinstance(v, (list, dict)) else str(v) for v in rows[column])
        if len(values) <= 12:
            summary[column] = dict(values)
            print(f"  {column}: {dict(values)}")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:7860/", help="the studio (default: %(default)s)")
    p.add_argument("--user", action="append", default=[], help="NAME:PASSWORD of one person; give it once a person")
    p.add_argument("--project", default="remote-demo", help="the project to create (default: %(default)s)")
    p.add_argument("--model", default="demo:model", help="the model as the studio's machine names it")
    p.add_argument("--world", type=Path, default=None, help="the demo world's folder here (default: its cache)")
    p.add_argument("--mini", action="store_true", help="build the small test world where none is")
    p.add_argument("--prompts", type=int, default=16, help="prompts of the one round (default: %(default)s)")
    p.add_argument("--per-person", type=int, default=3, help="pairs each person labels (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("remote-export"), help="where the download is kept")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for each step of the run")
    args = p.parse_args(argv)

    people = connect(args.url, args.user)
    first = people[0][1]
    for name, client in people:
        print(f"signed in as {name}; the studio has projects {client.predict(api_name='/list_projects')}")
    world = demo_files(args.world, args.mini)

    first.predict(args.project, args.model, api_name="/create_project")
    upload(first, world.seed_file, args.project, "seed")
    upload(first, world.pool_file, args.project, "pool")
    pool = first.predict(args.project, "pool", 0, 2, api_name="/imported_rows")
    print(f"pool: {pool['total']} prompts, the first {[r['prompt'][-1]['content'] for r in pool['rows']]}")

    job_id = first.predict(args.project, run_config(args.project, args.model, args.prompts), api_name="/queue_run")[
        "job_id"
    ]
    print(f"queued run {job_id}")
    status = wait(first, job_id, ("paused", "done"), args.timeout)
    print(f"run {job_id} is {status['status']} at round {status['round']}")
    if status["status"] == "paused":
        labelled = label_as_people(people, args.project, args.per_person)
        first.predict(job_id, api_name="/approve_review")
        wait(first, job_id, ("done",), args.timeout)
    else:
        labelled = {}
    print(first.predict(job_id, 5, api_name="/job_log")["text"])

    download = first.predict(args.project, "jsonl", api_name="/export_dataset")
    args.out.mkdir(parents=True, exist_ok=True)
    data_file = Path(shutil.copyfile(download["file"], args.out / "train.jsonl"))
    shutil.copyfile(download["card"], args.out / "README.md")
    print(f"exported on the studio to {download['out']}; downloaded to {data_file}")
    summary = show_provenance(data_file) | {"job_id": job_id, "labelled": labelled}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
