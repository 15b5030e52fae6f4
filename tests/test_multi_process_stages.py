"""Seed, judge and train stages spanning two processes, for real: two CPU ranks joined over gloo by `torchrun` (the
launcher `accelerate launch` runs for several GPUs), on the mini demo world. Rank 0 alone logs, reports and saves;
the judge's ranks score disjoint shards; noise records come back from both ranks' pairs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from engine.config import parse_config
from engine.method import scoring
from engine.method.models import pick_device
from engine.runtime import checkpoints
from engine.runtime.distributed import MULTI_PROCESS_STAGES, Ranks, any_rank
from engine.runtime.run_folder import run_dir
from engine.runtime.stage_process import stage_args
from storage import Job, Store

ROOT = Path(__file__).resolve().parents[1]
RANKS = 2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from engine.worlds.demo_world import WorldSize, build_demo_world

    return build_demo_world(tmp_path_factory.mktemp("ranks_world"), size=WorldSize.mini(), progress=lambda *a: None)


def launch(db: Path, job_id: int, round: int, stage: str, ranks: int) -> subprocess.CompletedProcess:
    """One stage as its own process, or as `ranks` processes under torchrun."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)] if ranks > 1 else []
    stage_module = ["-m", "engine.runtime.stage_process", *stage_args(str(db), job_id, round, stage)]
    argv = [sys.executable, *launcher, *stage_module]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def stage_lines(store: Store, job_id: int, round: int, stage: str) -> list[str]:
    prefix = f"[round {round} {stage}]"
    return [e["message"] for e in store.events(job_id, limit=1000) if e["message"].startswith(prefix)]


@pytest.fixture(scope="module")
def two_rank_run(world, tmp_path_factory):
    """One SPA round whose seed, judge and train stages each ran on two ranks (prepare and generate here)."""
    tmp = tmp_path_factory.mktemp("ranks")
    db = tmp / "spa.db"
    config = {
        "project": "ranks",
        "model": str(world.model_dir),
        "seed_data": str(world.seed_file),
        "prompt_pool": str(world.pool_file),
        "eval_data": str(world.eval_file),
        "rounds": 1,
        "prompts_per_round": [24],
        "learning_rate": 5e-4,
        "epochs": 1,
        "round_epochs": 2,
        "batch_size": 8,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "generation": {"backend": "hf", "max_new_tokens": 8},
        "judge": {"batch_size": 4},
        "train": {"micro_batch_size": 2},
        "output_dir": str(tmp / "run"),
        "seed": 3,
        "device": "cpu",
    }
    text = yaml.safe_dump(config, sort_keys=False)
    cfg = parse_config(text, "test config")
    store = Store(db)
    job_id = store.enqueue(Job(project_id=store.ensure_project("ranks").id, kind="run", config_yaml=text))
    for round, stage in ((0, "prepare"), (0, "seed"), (1, "generate"), (1, "judge"), (1, "train")):
        done = launch(db, job_id, round, stage, RANKS if stage in MULTI_PROCESS_STAGES else 1)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    yield store, job_id, cfg
    store.close()


@pytest.mark.slow
def test_the_judge_shards_pairs_across_ranks_and_scores_each_once_as_one_process_would(two_rank_run):
    store, job_id, cfg = two_rank_run
    pairs = store.pairs(job_id, 1)
    assert len(pairs) >= 16 and all(p.judge_label in ("a", "b") for p in pairs)
    policy = checkpoints.load_policy(cfg, cfg.model, run_dir(cfg, store.path, job_id), 0)
    args = ([p.prompt for p in pairs], [p.response_a for p in pairs], [p.response_b for p in pairs])
    direct_a, direct_b = scoring.pair_logps(policy.model, policy.tokenizer, *args, batch_size=1)
    with policy.init_view() as init:
        init_a, init_b = scoring.pair_logps(init, policy.tokenizer, *args, batch_size=1)
    stored = torch.tensor([[p.logp_policy_a, p.logp_policy_b, p.logp_init_a, p.logp_init_b] for p in pairs])
    direct = torch.tensor([direct_a, direct_b, init_a, init_b]).T
    assert torch.allclose(stored, direct, atol=1e-4), (stored - direct).abs().max()
    for p in pairs:
        assert p.reward_a == pytest.approx(cfg.beta * (p.logp_policy_a - p.logp_init_a), abs=1e-9)
        assert p.label == ("a" if p.reward_a >= p.reward_b else "b")  # a tie goes to a
    lines = stage_lines(store, job_id, 1, "judge")
    assert Counter(lines)["[round 1 judge] started"] == 1 and Counter(lines)["[round 1 judge] done"] == 1
    assert f"[round 1 judge] judged {len(pairs)} pairs with the implicit judge on {RANKS} data-parallel ranks" in lines


@pytest.mark.slow
def test_training_on_two_ranks_saves_once_and_records_noise_for_every_pair(two_rank_run):
    store, job_id, cfg = two_rank_run
    artifacts = store.artifacts(store.ensure_project("ranks").id, job_id=job_id)
    assert sorted(a.round for a in artifacts) == [0, 1]  # one artifact per trained round: rank 1 registered nothing
    adapter = Path(next(a.path for a in artifacts if a.round == 1))
    assert (adapter / "adapter_model.safetensors").is_file()
    assert not list(adapter.parent.glob("*.tmp")) and not (adapter.parent / "partial").exists()
    labelled = [p for p in store.pairs(job_id, 1) if p.label in ("a", "b")]
    assert labelled and all(p.ext_margin is not None and p.noisy is not None for p in labelled)
    flagged = sum(p.noisy for p in labelled)
    assert 0 < flagged < len(labelled) / 2  # the lowest ~10% of a rolling window, over both ranks' pairs
    round_0 = checkpoints.load_policy(cfg, cfg.model, run_dir(cfg, store.path, job_id), 0).model
    round_1 = checkpoints.load_policy(cfg, cfg.model, run_dir(cfg, store.path, job_id), 1).model
    lora = [n for n, _ in round_1.named_parameters() if "lora_B" in n]
    p0, p1 = dict(round_0.named_parameters()), dict(round_1.named_parameters())
    assert any(not torch.equal(p0[n], p1[n]) for n in lora)  # round 1 moved off π_0
    for stage, round in (("seed", 0), ("train", 1)):
        lines = Counter(stage_lines(store, job_id, round, stage))
        assert lines[f"[round {round} {stage}] started"] == 1 and lines[f"[round {round} {stage}] done"] == 1
    losses = [m.step for m in store.metrics(job_id, ["train/loss"]) if m.round == 1]
    assert losses and len(losses) == len(set(losses))  # one row per logged step, not one per rank
    done = store.round(job_id, 1).stages_done
    assert {"generate", "judge", "train"} <= set(done)


def test_ranks_come_from_the_launcher_environment():
    assert Ranks.from_env({}) == Ranks(0, 1, 0) and Ranks.from_env({}).is_main
    ranks = Ranks.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (ranks.rank, ranks.world_size, ranks.local_rank, ranks.is_main, ranks.distributed) == (3, 4, 1, False, True)
    with pytest.raises(ValueError, match="RANK=4"):
        Ranks.from_env({"RANK": "4", "WORLD_SIZE": "4"})
    assert any_rank(True, Ranks()) and not any_rank(False, Ranks())  # alone: no process group needed
    assert pick_device("cpu", local_rank=1) == torch.device("cpu")
