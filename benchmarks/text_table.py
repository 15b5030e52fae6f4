"""The paper's table on the text world (SmolLM2-135M-Instruct, IFEval gold), on held-out prompts with greedy
decoding: does SPA with 20 seed labels reach DPO on gold labels of all its prompts?

    python benchmarks/text_table.py                       # configs/text_demo.yaml's sizes, seed 42
    python benchmarks/text_table.py --prompts 48 --rounds 1 --eval-prompts 24 --rows spa dpo100 noref
    python benchmarks/text_table.py --spa-from runs/text_demo.db --rows dpo100 human random noref
    python benchmarks/text_table.py --rows anchor --eval-prompts 48 --keep-runs runs/table   # then text_judge.py

--spa-from reads the first three rows off a finished `python launch.py run configs/text_demo.yaml --db DB` (the
same stages, run by the worker) instead of running the SPA row again; its queued config must equal this table's
config but for where files go.

Every row runs the real stages (engine.runtime.stages, in this process) from one config, changing only what the row is
about; all rows share the seed pairs, the pool prompts, the generation budget and the eval prompts.
"SmolLM2 as is" and "DPO on the seed" are read off the SPA row's run (π_init's and π_0's evaluations), which trains
exactly that seed round. Rows:
- dpo100: DPO on 100% gold labels: one round over all of SPA's prompts from π_0, pairs labelled by gold, plain DPO
  (no refinement), the paper's DPO-on-all-labels at the same prompts and sampling budget;
- spa: SPA as specified (implicit judge against π_init, refinement on);
- noref: SPA with the judge without reference (the authors' ablation);
- noref_bo4: the same judge picking the best and the worst of 4 samples (the demo world's best variant, with 8);
- human / random / disagree / confident: SPA + ~1% of the pool (--human-share) in human labels (gold standing in for
  the person), each round, on the first pairs of one of the review tab's orders (flagged then least confident; the
  two judges disagree first; most confident first), or on random pairs;
- spa_bvw: SPA as specified from a different seed of the same size: 20 pairs of the best and the worst (by gold) of
  4 SmolLM2 samples of the world's seed prompts, instead of two samples whose gold differs (the lead of
  benchmarks/text_judge.py: π_0 seeded this way judged 0.603 against gold, the world's seed 0.500). It trains its
  own seed round, so it reports its π_0 beside it;
- seed_builder: SPA as specified from the seed the studio's seed builder makes of the world's first 20 seed prompts
  (benchmarks/seed_builder.py): 4 answers each from the seed-answers job, the best and the worst by gold as the
  person's ranking, "all equal" prompts giving no pair (so it may have fewer than 20 pairs, never more prompts);
  its own seed round, its π_0 beside it;
- auto: SPA with judge.kind auto: the judge-check stage before the seed round picks the judge variant, later rounds
  the blind audit's answers (gold standing in for the person; those labels train, as a person's would); the row's
  name says which variant each round used;
- anchor: the §4b anchor's recipe, a check on the trainer rather than a row of the paper: no seed round (π_0 =
  SmolLM2), one round over 160 pool prompts × 4 samples, gold picks best vs worst, plain DPO at lr 2e-4 for 2
  epochs. It starts from SmolLM2 even with --spa-from, and reports SmolLM2 on the same eval prompts beside it.
Writes benchmarks/results/text_table.md and .json (also after every row, so a stopped run keeps what it made).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

from benchmarks.inline import Fork, InlineRun, human_corrections, run_inline, with_overrides
from engine.config import RunConfig, load_config, parse_config
from engine.method.agreement import interval_text
from engine.runtime import auto_judge
from engine.runtime.run_folder import run_dir
from engine.runtime.stages import GENERATE_CHUNK
from storage import Store

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
METRICS = ("prompt_strict", "instruction_strict", "instruction_loose", "prompt_loose", "win_rate_vs_init")
ANCHOR = "DESIGN §4b anchor: gold DPO on 85 best-vs-worst pairs raised held-out prompt-level strict 0.23 → 0.44"


@dataclass
class RowResult:
    name: str
    labels: int
    eval: dict[str, float] = field(default_factory=dict)
    eval2: dict[str, float] = field(default_factory=dict)
    self_label_accuracy: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0


def human_budget(cfg: RunConfig, share: float = 0.01) -> int:
    """share (the issue's ~1%) of the run's prompts, per round (at least one)."""
    total = sum(cfg.prompts_for_round(i) for i in range(1, cfg.rounds + 1))
    return max(1, round(share * total / max(1, cfg.rounds)))


def rows(base: RunConfig, human_share: float = 0.01) -> dict[str, tuple[str, dict, object]]:
    all_prompts = sum(base.prompts_for_round(i) for i in range(1, base.rounds + 1))
    n = human_budget(base, human_share)
    return {
        "spa": ("SPA", {}, None),
        "dpo100": (
            f"DPO on 100% gold labels (π_0's pairs of SPA's {all_prompts} prompts, one pass)",
            {"rounds": 1, "prompts_per_round": [all_prompts], "judge__kind": "gold", "refine__enabled": False},
            None,
        ),
        "noref": ("SPA, judge without reference", {"judge__reference": "none"}, None),
        "noref_bo4": (
            "SPA, judge without reference, best of 4 samples",
            {"judge__reference": "none", "generation__samples_per_prompt": 4},
            None,
        ),
        "human": (
            f"SPA + {n * base.rounds} human labels, lowest confidence",
            {},
            human_corrections(n, "uncertain", base.seed),
        ),
        "random": (f"SPA + {n * base.rounds} human labels, at random", {}, human_corrections(n, "random", base.seed)),
        "disagree": (
            f"SPA + {n * base.rounds} human labels, judges disagree first",
            {},
            human_corrections(n, "disagree", base.seed),
        ),
        "confident": (
            f"SPA + {n * base.rounds} human labels, highest confidence",
            {},
            human_corrections(n, "confident", base.seed),
        ),
        "spa_bvw": ("SPA, seed of best vs worst of 4 samples", {}, None),
        "seed_builder": ("SPA, seed built in the seed builder (best vs worst of 4 by gold)", {}, None),
        "auto": (
            "SPA, judge.kind auto (judge-check, then the blind audit answered by gold)",
            {"judge__kind": "auto"},
            human_corrections(0, "random", base.seed, audit=True),
        ),
        "anchor": (
            "§4b anchor: gold DPO, best vs worst of 4 samples of 160 prompts, from SmolLM2",
            {
                "epochs": 0,
                "rounds": 1,
                "prompts_per_round": [160],
                "generation__samples_per_prompt": 4,
                "judge__kind": "gold",
                "refine__enabled": False,
                "refine__lambdas": base.refine.lambdas[:1],
                "round_learning_rate": 2e-4,
                "round_epochs": 2,
            },
            None,
        ),
    }


def split_values(run, split: str, round_index: int, prefix: str = "") -> dict[str, float]:
    out = {}
    for name in METRICS:
        value = run.metric(f"text/{split}/{prefix}{name}", round_index)
        if value is not None:
            out[name] = value
    return out


def run_row(
    key: str, name: str, changes: dict, after, base: RunConfig, source: InlineRun | None, keep: Path | None = None
) -> list[RowResult]:
    """source: the SPA run the row starts from (its π_0, and the round-1 samples the row shares with it); keep: a
    folder to leave the row's database and models in (keep/<row>/table.db, out/), instead of a scratch one."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        folder = keep / key if keep else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        cfg = with_overrides(base, output_dir=str(folder / "out"))
        cfg = with_overrides(cfg, **changes)
        if key == "spa_bvw":
            cfg = with_overrides(cfg, seed_data=str(best_vs_worst_seed(folder / "seed_bvw4.jsonl", cfg)))
        if key == "seed_builder":
            cfg = with_overrides(cfg, seed_data=str(seed_builder_seed(folder, cfg)))
        fork = None
        if source is not None and key not in ("anchor", "spa_bvw", "seed_builder"):
            source_cfg = parse_config(source.store.job(source.job_id).config_yaml)
            fork = Fork(
                source.store,
                source.job_id,
                run_dir(source_cfg, source.store.path, source.job_id),
                sample_chunks=shared_sample_chunks(cfg, base),
            )
        run = run_inline(cfg, folder / "table.db", after, fork)
        out = row_results(key, name, run, cfg, time.monotonic() - started)
        run.store.close()
    return out


def best_vs_worst_seed(path: Path, cfg: RunConfig, samples: int = 4) -> Path:
    """As many seed pairs as the world's seed file holds, each the best and the worst by gold of `samples` SmolLM2
    answers to one of the world's seed prompts (in the world's draw order; the run's sampling settings and dtype);
    prompts whose answers all tie give no pair. Written once: a rerun with --keep-runs reuses the file."""
    if path.exists():
        return path
    from engine.method import generation, models
    from engine.worlds.text_world import TextWorldSize, best_vs_worst, build_text_world, draw_splits, pair_row

    world = build_text_world()
    manifest = world.manifest
    wanted = manifest["counts"]["seed_pairs"]
    candidates = draw_splits(TextWorldSize(**manifest["size"]), manifest["seed"]).seed
    device = models.pick_device(cfg.device)
    model = models.load_base_model(str(world.model_dir), device, models.pick_dtype(device, cfg.dtype))
    tokenizer = models.load_tokenizer(str(world.model_dir))
    rows, used = [], 0
    while len(rows) < wanted and used < len(candidates):
        chunk = candidates[used : used + 16]
        settings = generation.SamplingSettings(
            samples_per_prompt=samples,
            temperature=cfg.generation.temperature,
            top_p=cfg.generation.top_p,
            max_new_tokens=cfg.generation.max_new_tokens,
            batch_size=cfg.generation.batch_size,
            seed=cfg.seed * 1_000_003 + used,
        )
        used += len(chunk)
        for task, group in zip(chunk, generation.generate(model, tokenizer, [t.messages() for t in chunk], settings)):
            pair = best_vs_worst(task, [s.text for s in group])
            if pair is not None and len(rows) < wanted:
                rows.append(pair_row(task, *pair))
        print(f"best-vs-worst seed: {len(rows)}/{wanted} pairs from {used} prompts", flush=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def seed_builder_seed(folder: Path, cfg: RunConfig, samples: int = 4) -> Path:
    """The seed as the studio's seed builder makes it, in the row's own database (folder/table.db, which the run then
    uses): the world's seed prompts imported prompts-only (benchmarks/seed_builder.py's), `samples` answers each from
    the seed-answers job's stage with the row's configuration (its sampling settings and run seed), the best and the
    worst by gold as a person's ranking, "all equal" prompts giving no pair. The seed round trains on
    Store.seed_pairs. Returns the prompts file, the row's seed_data (importing it again adds nothing)."""
    from benchmarks import seed_builder as sb

    tasks = sb.seed_tasks()
    prompts = sb.seed_prompts_file(folder, tasks)
    store = Store(folder / "table.db")
    try:
        project = sb.prompts_project(store, cfg.project, cfg.model, prompts, yaml.safe_load(cfg.to_yaml()))
        seconds = sb.sample_answers(store, project, samples)
        done = store.seed_progress(project.id)
        if done.unranked:  # a rerun with --keep-runs finds its prompts ranked already
            sb.rank_by_gold(store, project.id, tasks)
        done = store.seed_progress(project.id)
        print(
            f"seed builder: {done.ranked} of {len(tasks)} prompts ranked, {done.equal} all equal, {samples} answers "
            f"each in {seconds:.0f} s",
            flush=True,
        )
    finally:
        store.close()
    return prompts


def shared_sample_chunks(cfg: RunConfig, base: RunConfig) -> int:
    """How many of SPA's round-1 generate chunks a row forked from its π_0 can take as they are: the same π_0, prompts
    and sampling seeds give the same samples. All of them when the row's round 1 is SPA's, the first when it is longer
    (dpo100), none when it samples more answers per prompt."""
    if cfg.generation.samples_per_prompt != base.generation.samples_per_prompt:
        return 0
    if cfg.prompts_for_round(1) != base.prompts_for_round(1):
        return 1
    return -(-base.prompts_for_round(1) // GENERATE_CHUNK)


def finished_run(db: str, base: RunConfig) -> tuple[InlineRun, float]:
    """The last finished run in db (from `launch.py run`, or a row this script kept with --keep-runs) and its wall
    time, checked to have this table's config."""
    store = Store(db)
    jobs = [j for j in store.jobs(statuses=("done",)) if j.kind == "run"]
    if not jobs:
        raise SystemExit(f"{db}: no finished run")
    job = jobs[-1]
    cfg = parse_config(job.config_yaml, f"{db} job {job.id}")
    where = {"output_dir": "", "db": ""}
    if with_overrides(cfg, **where) != with_overrides(base, **where):
        raise SystemExit(f"{db} job {job.id}: its config differs from this table's; rerun it or pass --config")
    started = job.started_at or job.created_at  # a run of this script (run_inline) is never claimed by a worker
    seconds = (datetime.fromisoformat(job.finished_at) - datetime.fromisoformat(started)).total_seconds()
    return InlineRun(store, job.id, job.project_id), seconds


def row_results(key: str, name: str, run: InlineRun, cfg: RunConfig, seconds: float) -> list[RowResult]:
    seeds = len(run.store.seed_pairs(run.project_id))
    pairs = sum(len(run.store.pairs(run.job_id, r)) for r in range(1, cfg.rounds + 1))
    human = run.store.label_source_counts(run.project_id).get("human", 0)
    labels = seeds + (pairs if key == "dpo100" else human)
    if key == "anchor":  # its gold-decided pairs: a pair whose gold ties trains nothing
        labels = sum(p.gold_a != p.gold_b for p in run.store.pairs(run.job_id, 1))
    out = [
        RowResult(
            name,
            labels,
            split_values(run, "eval", cfg.rounds),
            split_values(run, "eval2", cfg.rounds),
            run.metrics_by_round("round/self_label_accuracy"),
            seconds,
        )
    ]
    if key == "spa":  # π_init and π_0 were evaluated in this run (rounds 0): the first two rows of the table
        out[:0] = [
            init_row(run, "SmolLM2-135M-Instruct as is"),
            RowResult(
                f"DPO on the seed ({seeds} pairs)", seeds, split_values(run, "eval", 0), split_values(run, "eval2", 0)
            ),
        ]
    if key in ("spa_bvw", "seed_builder"):  # its own seed round: its π_0 beside it
        kind = "best-vs-worst" if key == "spa_bvw" else "seed builder's"
        out.insert(
            0,
            RowResult(
                f"DPO on the {kind} seed ({seeds} pairs)",
                seeds,
                split_values(run, "eval", 0),
                split_values(run, "eval2", 0),
            ),
        )
    if key == "auto":
        choices = auto_judge.choices_from_metrics(run.store.metrics(run.job_id))
        out[-1].name += " — " + ", ".join(
            f"r{r}: {c.variant} ({c.basis}: {interval_text(c.figures[c.variant])})" for r, c in sorted(choices.items())
        )
    if key == "anchor":  # its π_0 is SmolLM2: the row to compare it with, on the same eval prompts
        out.insert(0, init_row(run, "SmolLM2-135M-Instruct as is (the anchor's start)"))
    return out


def init_row(run: InlineRun, name: str) -> RowResult:
    """π_init's figures, evaluated in round 0 beside π_0's; its win rate against itself is ½ by definition."""
    row = RowResult(name, 0, split_values(run, "eval", 0, "init/"), split_values(run, "eval2", 0, "init/"))
    row.eval["win_rate_vs_init"] = row.eval2["win_rate_vs_init"] = 0.5
    return row


def render(results: list[RowResult], base: RunConfig, command: str, seconds: float) -> str:
    rounds = list(range(1, base.rounds + 1))
    head = (
        "| method | labels | eval prompt strict | eval instr. strict | eval instr. loose | win vs SmolLM2 | "
        "eval2 prompt strict | eval2 instr. loose | " + " | ".join(f"self-label acc. r{r}" for r in rounds) + " |"
    )
    lines = [head, "|" + "---|" * (8 + len(rounds))]

    def f(d: dict, k: str) -> str:
        return f"{d[k]:.3f}" if k in d else ""

    for r in results:
        accs = [f"{r.self_label_accuracy[i]:.3f}" if i in r.self_label_accuracy else "" for i in rounds]
        lines.append(
            f"| {r.name} | {r.labels} | {f(r.eval, 'prompt_strict')} | {f(r.eval, 'instruction_strict')} | "
            f"{f(r.eval, 'instruction_loose')} | {f(r.eval, 'win_rate_vs_init')} | "
            f"{f(r.eval2, 'prompt_strict')} | {f(r.eval2, 'instruction_loose')} | " + " | ".join(accs) + " |"
        )
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "\n".join(
            [
                f"Text world (SmolLM2-135M-Instruct, IFEval gold), seed {base.seed}, "
                f"base config {base.rounds} rounds × "
                f"{base.prompts_for_round(1)} prompts (a row's name says where it differs), {base.dtype} dtype, "
                f"≤ {base.generation.max_new_tokens} new tokens, {base.eval.max_prompts} "
                f"eval / {max(1, base.eval.max_prompts // 2)} eval2 prompts (greedy), {when}, "
                f"torch {torch.__version__} × "
                f"{torch.get_num_threads()} threads; `{command}`, {seconds / 60:.1f} min.",
                "",
                *lines,
                "",
                "eval: held-out tasks; eval2: held-out tasks with held-out instruction types. Prompt strict: every "
                "instruction followed (IFEval's strict rules); instruction strict/loose: the share of instructions "
                "followed. Win vs SmolLM2: gold reward of the greedy answer against SmolLM2's own greedy answer to "
                "the same prompt (ties "
                "count half). Self-label acc.: the round's judge against gold on pairs whose gold differs.",
                f"{ANCHOR}; a DPO-100% row far below that points at a bug before the method.",
            ]
        )
        + "\n"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "text_demo.yaml"))
    p.add_argument(
        "--rows",
        nargs="*",
        default=["spa", "dpo100", "noref"],
        choices=[
            "spa",
            "dpo100",
            "noref",
            "noref_bo4",
            "human",
            "random",
            "disagree",
            "confident",
            "spa_bvw",
            "seed_builder",
            "auto",
            "anchor",
        ],
    )
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--prompts", type=int, default=None, help="prompts per round")
    p.add_argument("--eval-prompts", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--human-share",
        type=float,
        default=0.01,
        help="the human and random rows' labels per round, "
        "as a share of the round's prompts (at least one); 1%% is one label at 100 prompts",
    )
    p.add_argument("--out", default=str(RESULTS / "text_table.md"))
    p.add_argument(
        "--spa-from",
        metavar="DB",
        help="read the SPA row (and the first two) off a finished `launch.py run` in DB instead of running it",
    )
    p.add_argument(
        "--keep-runs",
        metavar="DIR",
        help="leave each row's database and models in DIR/<row>/ (e.g. "
        "for benchmarks/text_judge.py, which reads the anchor row's pairs)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="start from the rows already in --out's .json (another invocation's), e.g. to run rows in two processes",
    )
    args = p.parse_args()
    base = load_config(args.config)
    changes = {
        k: v
        for k, v in (("rounds", args.rounds), ("prompts_per_round", args.prompts), ("seed", args.seed))
        if v is not None
    }
    if args.eval_prompts is not None:
        changes["eval__max_prompts"] = args.eval_prompts
    if "rounds" in changes:
        changes["refine__lambdas"] = base.refine.lambdas[: max(1, changes["rounds"])]
    base = with_overrides(base, **changes)
    command = shlex.join(["python", "benchmarks/text_table.py", *sys.argv[1:]])
    started = time.monotonic()
    out = Path(args.out)
    results: list[RowResult] = []
    if args.keep and out.with_suffix(".json").exists():
        results = [RowResult(**r) for r in json.loads(out.with_suffix(".json").read_text())]
        for r in results:  # json keys are strings
            r.self_label_accuracy = {int(k): v for k, v in r.self_label_accuracy.items()}
    table = rows(base, args.human_share)
    source = None
    if args.spa_from:
        source, seconds = finished_run(args.spa_from, base)
        if not args.keep:
            results += row_results(
                "spa", f"{table['spa'][0]} (read off --spa-from, {seconds / 60:.0f} min)", source, base, seconds
            )
    for key in args.rows:
        name, row_changes, after = table[key]
        print(f"[{(time.monotonic() - started) / 60:.1f} min] row {name}", flush=True)
        try:
            results += run_row(
                key, name, row_changes, after, base, source, Path(args.keep_runs) if args.keep_runs else None
            )
        except ValueError as e:  # e.g. a gold-judged round whose pairs all tie: the row says why, the rest go on
            results.append(RowResult(f"{name} — failed: {e}", 0))
        text = render(results, base, command, time.monotonic() - started)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps([asdict(r) for r in results], indent=1))
        print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
