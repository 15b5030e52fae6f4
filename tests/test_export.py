"""Export: the merged model and the adapter load with plain transformers / PEFT and score exactly like the
studio's policy; the dataset loads with `datasets`, obeys its filters and trains TRL's own DPOTrainer; bad
destinations are refused without touching anything; a killed export leaves no partial folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from engine.config import LoraConfig as RunLora
from engine.config import RunConfig
from engine.data.export import ExportError, ExportRequest, export, exportable
from engine.data.export.staging import inside
from engine.method import models
from engine.method.scoring import sequence_logps
from storage import Artifact, Example, Job, Metric, Pair, Store

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
PROMPTS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Name a colour."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}],
]
RESPONSES = ["4, of course.", "Blue", "hi!"]
PROVENANCE = ["round", "source", "confidence", "chosen_score", "rejected_score", "noisy", "labelled_by"]
ALL_ROWS = 9  # 3 seed + 4 labelled in round 1 + 2 labelled in round 2 (tie, both_bad and unjudged left out)


@dataclass
class World:
    db: Path
    root: Path
    base: Path
    lora_job: int
    adapters: dict[int, Path]


def save_adapter(base_dir: Path, target: Path, seed: int) -> None:
    """A LoRA adapter with small random B matrices, so that merging really changes the weights."""
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(target)


def pair(job, project, ex, round, label, source, confidence=None, noisy=False, human_response=None):
    return Pair(
        job_id=job,
        project_id=project,
        example_id=ex,
        round=round,
        prompt=[{"role": "user", "content": f"q{ex}"}],
        response_a=f"a{ex}-{round}",
        response_b=f"b{ex}-{round}",
        reward_a=0.5,
        reward_b=0.1,
        confidence=confidence,
        judge_label=label if label in ("a", "b") else None,
        label=label,
        label_source=source,
        noisy=noisy,
        human_response=human_response,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> World:
    """A finished two-round LoRA run, built without the trainer, plus a full fine-tune run in project 'ft'."""
    root = tmp_path_factory.mktemp("export_world")
    store = Store(root / "studio.db")
    proj = store.ensure_project("p", model=str(tiny_model_dir))
    seeds = [
        Example(
            role="seed", prompt=[{"role": "user", "content": f"seed {i}?"}], chosen=f"good {i}", rejected=f"bad {i}"
        )
        for i in range(3)
    ]
    pool = [Example(role="pool", prompt=[{"role": "user", "content": f"q{i}"}]) for i in range(5)]
    store.add_examples(proj.id, seeds + pool)
    ex = [e.id for e in store.examples(proj.id, "pool")]
    out_dir = root / "run"
    cfg = RunConfig(
        model=str(tiny_model_dir),
        prompt_pool="pool.jsonl",
        rounds=2,
        prompts_per_round=[4, 6],
        output_dir=str(out_dir),
        lora=RunLora(r=4, alpha=8),
    )
    job = store.enqueue(Job(project_id=proj.id, kind="run", config_yaml=cfg.to_yaml()))
    adapters = {}
    for rnd in (0, 1):
        adapters[rnd] = out_dir / f"round_{rnd}" / "adapter"
        save_adapter(tiny_model_dir, adapters[rnd], seed=rnd)
        store.add_artifact(
            Artifact(
                project_id=proj.id,
                job_id=job,
                round=rnd,
                kind="adapter",
                path=str(adapters[rnd]),
                meta={"base_model": str(tiny_model_dir)},
            )
        )
    store.add_artifact(Artifact(project_id=proj.id, job_id=job, round=1, kind="model", path=str(out_dir / "final")))
    store.add_pairs(
        [
            pair(job, proj.id, ex[0], 1, "a", "self", 0.9),
            pair(job, proj.id, ex[1], 1, "b", "self", 0.6, noisy=True),
            pair(job, proj.id, ex[2], 1, "a", "human", 0.55, human_response="a person's answer"),
            pair(job, proj.id, ex[3], 1, "tie", "self", 0.7),
            pair(job, proj.id, ex[4], 1, "b", "gold"),
            pair(job, proj.id, ex[0], 2, "a", "self", 0.95),
            pair(job, proj.id, ex[1], 2, "b", "self", 0.52),
            pair(job, proj.id, ex[2], 2, "both_bad", "human", 0.8),
            pair(job, proj.id, ex[3], 2, None, None),
        ]
    )
    store.add_metrics(
        [
            Metric(job_id=job, name="eval/judge_accuracy", value=0.61, round=0),
            Metric(job_id=job, name="eval/judge_accuracy", value=0.72, round=1),
            Metric(job_id=job, name="round/pairs", value=5, round=1),
            Metric(job_id=job, name="train/loss", value=0.69, round=1),
        ]
    )

    ft = store.ensure_project("ft", model=str(tiny_model_dir))
    store.add_examples(
        ft.id,
        [
            Example(role="seed", prompt=PROMPTS[2], chosen="hello there", rejected="no", conversational=True),
            Example(role="seed", prompt=PROMPTS[0], chosen="4", rejected="5", conversational=True),
        ],
    )
    ft_cfg = RunConfig(model=str(tiny_model_dir), rounds=0, lora=RunLora(enabled=False))
    ft_job = store.enqueue(Job(project_id=ft.id, kind="run", config_yaml=ft_cfg.to_yaml()))
    ft_weights = root / "ft_run" / "round_0" / "model"
    shutil.copytree(tiny_model_dir, ft_weights)
    store.add_artifact(
        Artifact(
            project_id=ft.id,
            job_id=ft_job,
            round=0,
            kind="model",
            path=str(ft_weights),
            meta={"base_model": str(tiny_model_dir)},
        )
    )
    store.close()
    return World(root / "studio.db", root, Path(tiny_model_dir), job, adapters)


def studio_policy(world: World, round: int):
    """π_round exactly as the studio loads it: the base with the round's adapter on top."""
    base = models.load_base_model(str(world.base), CPU, torch.float32)
    return models.with_lora(base, RunLora(r=4, alpha=8), adapter_dir=str(world.adapters[round]), trainable=False)


def logps(model, tokenizer) -> torch.Tensor:
    return torch.tensor(sequence_logps(model, tokenizer, PROMPTS, RESPONSES))


def front_matter(readme: Path) -> dict:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "train.jsonl").read_text(encoding="utf-8").splitlines()]


def test_merged_model_scores_like_the_studio_policy(world, tmp_path):
    out = export(world.db, ExportRequest(project="p", what="model", out=str(tmp_path / "merged")))
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "chat_template.jinja",
        "README.md",
    } <= {p.name for p in out.iterdir()}
    assert not any(p.suffix in (".bin", ".pt") for p in out.iterdir())
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(world.base).chat_template
    assert merged.generation_config.eos_token_id == tokenizer.eos_token_id
    expected = logps(studio_policy(world, 1), models.load_tokenizer(str(world.base)))
    assert torch.allclose(logps(merged, tokenizer), expected, atol=1e-4, rtol=0)
    base_weights = load_file(world.base / "model.safetensors")
    merged_weights = load_file(out / "model.safetensors")
    key = next(k for k in base_weights if k.endswith("q_proj.weight"))
    assert not torch.allclose(base_weights[key], merged_weights[key])

    card = front_matter(out / "README.md")
    assert card["base_model"] == world.base.name and card["library_name"] == "transformers"  # a name, no path
    assert str(world.base) not in (out / "README.md").read_text(encoding="utf-8")
    assert card["tags"] == ["spa", "dpo", "trl"]
    text = (out / "README.md").read_text(encoding="utf-8")
    for needle in (
        "| beta | 0.1 |",
        "| learning rate | 5e-05 |",
        "| prompts per round | 4, 6 |",
        "round 1: 0.5, round 2: 0.25",
        "| seed | 3 |",
        "| human | 1 |",
        "| self | 2 |",
        "| gold | 1 |",
        "| eval/judge_accuracy | 0.61 | 0.72 |",
        "round/pairs",
    ):
        assert needle in text, needle
    assert "train/loss" not in text


def test_tiny_shard_size_gives_shards_that_still_load(world, tmp_path):
    out = export(
        world.db, ExportRequest(project="p", what="model", out=str(tmp_path / "sharded"), max_shard_size="100KB")
    )
    shards = sorted(out.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and (out / "model.safetensors.index.json").is_file()
    assert not (out / "model.safetensors").exists()
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    expected = logps(studio_policy(world, 1), models.load_tokenizer(str(world.base)))
    assert torch.allclose(logps(merged, AutoTokenizer.from_pretrained(out)), expected, atol=1e-4, rtol=0)


def test_adapter_loads_with_peft_and_round_picks_the_round(world, tmp_path):
    out = export(world.db, ExportRequest(project="p", what="adapter", out=str(tmp_path / "adapter"), round=0))
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    card = front_matter(out / "README.md")
    assert card["library_name"] == "peft" and card["base_model"] == world.base.name
    from huggingface_hub import ModelCard

    assert ModelCard.load(out / "README.md").data.base_model == world.base.name  # valid hub metadata
    assert str(world.base) not in (out / "README.md").read_text(encoding="utf-8")
    assert "# p: SPA round 0" in (out / "README.md").read_text(encoding="utf-8")
    base = AutoModelForCausalLM.from_pretrained(world.base, dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, out).eval()
    expected = logps(studio_policy(world, 0), models.load_tokenizer(str(world.base)))
    assert torch.allclose(logps(loaded, AutoTokenizer.from_pretrained(out)), expected, atol=1e-4, rtol=0)


def test_exportable_lists_each_round_of_each_run(world):
    listed = exportable(world.db, "p")
    assert [(m["job_id"], m["round"], m["kind"]) for m in listed] == [
        (world.lora_job, 0, "adapter"),
        (world.lora_job, 1, "adapter"),
    ]
    assert listed[1]["path"] == str(world.adapters[1]) and listed[1]["exports"] == ["model", "adapter"]
    (ft,) = exportable(world.db, "ft")
    assert ft["kind"] == "model" and ft["exports"] == ["model"] and ft["exists"]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_dataset_loads_in_every_format(world, tmp_path, fmt):
    from datasets import load_dataset, load_from_disk

    out = export(world.db, ExportRequest(project="p", what="dataset", out=str(tmp_path / "ds"), format=fmt))
    if fmt == "hf":
        ds = load_from_disk(str(out))
    else:
        name = {"jsonl": "json", "parquet": "parquet"}[fmt]
        ds = load_dataset(name, data_files=str(out / f"train.{fmt}"), split="train", cache_dir=str(tmp_path / "c"))
    assert ds.column_names == ["prompt", "chosen", "rejected"] + PROVENANCE
    assert len(ds) == ALL_ROWS
    assert isinstance(ds[0]["prompt"], str) and isinstance(ds[0]["chosen"], str)
    card = front_matter(out / "README.md")
    assert card["tags"] == ["spa", "dpo", "trl"]
    if fmt != "hf":
        assert card["configs"][0]["data_files"][0]["path"] == f"train.{fmt}"
    text = (out / "README.md").read_text(encoding="utf-8")
    assert "| self | 0 | 2 | 2 | 4 |" in text and "| seed | 3 | 0 | 0 | 3 |" in text and "confidence" in text


def test_dataset_rows_and_filters(world, tmp_path):
    def count(name, **filters):
        return len(
            rows_of(export(world.db, ExportRequest(project="p", what="dataset", out=str(tmp_path / name), **filters)))
        )

    rows = rows_of(export(world.db, ExportRequest(project="p", what="dataset", out=str(tmp_path / "all"))))
    seed = [r for r in rows if r["source"] == "seed"]
    assert len(seed) == 3 and all(
        r["round"] == 0 and r["confidence"] == 1.0 and r["chosen_score"] is None for r in seed
    )
    assert seed[0] == {
        "prompt": "seed 0?",
        "chosen": "good 0",
        "rejected": "bad 0",
        "round": 0,
        "source": "seed",
        "confidence": 1.0,
        "chosen_score": None,
        "rejected_score": None,
        "noisy": False,
        "labelled_by": None,
    }
    human = next(r for r in rows if r["source"] == "human")  # label a, with a person's own answer
    assert human["chosen"] == "a person's answer" and human["rejected"].startswith("b")
    assert (human["chosen_score"], human["rejected_score"], human["confidence"]) == (None, 0.1, 1.0)
    b_label = next(r for r in rows if r["source"] == "self" and r["noisy"])
    assert b_label["chosen"].startswith("b") and b_label["rejected"].startswith("a")
    assert (b_label["chosen_score"], b_label["rejected_score"], b_label["confidence"]) == (0.1, 0.5, 0.6)

    assert count("r1", rounds=[1]) == 4
    assert count("r0", rounds=[0]) == 3
    assert count("r02", rounds=[0, 2]) == 5
    assert count("self", sources=["self"]) == 4
    assert count("trusted", sources=["human", "seed"]) == 4
    assert count("conf", min_confidence=0.8) == 7  # seed, human and gold always pass; 0.9 and 0.95 do
    assert count("clean", exclude_noisy=True) == ALL_ROWS - 1
    assert count("run", job_id=world.lora_job, sources=["gold"]) == 1
    with pytest.raises(ExportError, match="match the filters"):
        export(world.db, ExportRequest(project="p", what="dataset", out=str(tmp_path / "none"), rounds=[7]))
    assert not (tmp_path / "none").exists()


def dpo_one_step(ds, base: Path, tmp_path: Path) -> None:
    from trl import DPOConfig, DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"), max_steps=1, per_device_train_batch_size=2, report_to=[], use_cpu=True
    )
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=tokenizer)
    result = trainer.train()
    assert result.global_step == 1 and torch.isfinite(torch.tensor(result.training_loss))


def test_standard_dataset_trains_trl_dpo_unchanged(world, tmp_path):
    from datasets import load_dataset

    out = export(world.db, ExportRequest(project="p", what="dataset", out=str(tmp_path / "ds")))
    ds = load_dataset("json", data_files=str(out / "train.jsonl"), split="train", cache_dir=str(tmp_path / "c"))
    dpo_one_step(ds, world.base, tmp_path)


def test_conversational_dataset_trains_trl_dpo_unchanged(world, tmp_path):
    from datasets import load_from_disk

    out = export(world.db, ExportRequest(project="ft", what="dataset", out=str(tmp_path / "ds"), format="hf"))
    ds = load_from_disk(str(out))
    assert ds[0]["prompt"] == PROMPTS[2] and ds[0]["chosen"] == [{"role": "assistant", "content": "hello there"}]
    dpo_one_step(ds, world.base, tmp_path)


def test_full_fine_tune_exports_a_model_but_no_adapter(world, tmp_path):
    with pytest.raises(ExportError, match="full fine-tune"):
        export(world.db, ExportRequest(project="ft", what="adapter", out=str(tmp_path / "a")))
    assert not (tmp_path / "a").exists()
    out = export(world.db, ExportRequest(project="ft", what="model", out=str(tmp_path / "m")))
    assert front_matter(out / "README.md")["library_name"] == "transformers"
    assert "off (full fine-tune)" in (out / "README.md").read_text(encoding="utf-8")
    exported, base = load_file(out / "model.safetensors"), load_file(world.base / "model.safetensors")
    assert exported.keys() == base.keys() and all(torch.equal(exported[k], base[k]) for k in base)


def test_non_empty_out_is_refused_unless_forced(world, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    for what in ("dataset", "adapter"):
        with pytest.raises(ExportError, match="not empty"):
            export(world.db, ExportRequest(project="p", what=what, out=str(out)))
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no temp folder was made either
    export(world.db, ExportRequest(project="p", what="dataset", out=str(out), force=True))
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "train.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export(world.db, ExportRequest(project="p", what="dataset", out=str(empty))) == empty.resolve()


def test_path_escapes_are_refused(world, tmp_path):
    with pytest.raises(ExportError, match=r"\.\."):
        export(world.db, ExportRequest(project="p", what="dataset", out=str(tmp_path / "a" / ".." / ".." / "x")))
    assert not (tmp_path.parent / "x").exists()
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    for name in ("../evil", "/etc/passwd", "link/evil", "."):
        with pytest.raises(ExportError, match="outside"):
            inside(root.resolve(), name)
    assert inside(root.resolve(), "train.jsonl") == root.resolve() / "train.jsonl"
    with pytest.raises(ExportError, match="refusing to export into"):
        export(world.db, ExportRequest(project="p", what="adapter", out=str(world.adapters[1]), force=True))
    assert (world.adapters[1] / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("escape", ["dotdot", "absolute", "home", "symlink", "root_itself"])
def test_an_export_root_confines_every_escape_after_resolution(world, tmp_path, escape):
    """With a root (what the studio passes), the path is resolved first and then checked against the resolved
    root: each way out is refused, nothing is written outside, and a folder under the root is fine."""
    root = tmp_path / "exports"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "to_outside").symlink_to(outside)
    out = {
        "dotdot": str(root / "a" / ".." / ".." / "outside" / "x"),
        "absolute": str(outside / "x"),
        "home": "~/spa_export_escape",
        "symlink": str(root / "to_outside" / "x"),
        "root_itself": str(root),
    }[escape]
    with pytest.raises(ExportError, match="outside the export folder"):
        export(world.db, ExportRequest(project="p", what="dataset", out=out, root=str(root)))
    assert list(outside.iterdir()) == [] and not (Path.home() / "spa_export_escape").exists()
    assert sorted(p.name for p in root.iterdir()) == ["to_outside"]  # no temp folder either
    inner = export(
        world.db, ExportRequest(project="p", what="dataset", out=str(root / "run1" / "data"), root=str(root))
    )
    assert inner == (root / "run1" / "data").resolve() and (inner / "train.jsonl").is_file()


def test_requests_that_make_no_sense_are_refused(world, tmp_path):
    out = str(tmp_path / "o")
    cases = [
        (ExportRequest(project="nope", what="dataset", out=out), "no project named 'nope'"),
        (ExportRequest(project="p", what="weights", out=out), "what must be one of"),
        (ExportRequest(project="p", what="dataset", out=out, format="csv"), "format must be one of"),
        (ExportRequest(project="p", what="dataset", out=out, round=1), "rounds="),
        (ExportRequest(project="p", what="dataset", out=out, sources=["robot"]), "unknown source"),
        (ExportRequest(project="p", what="model", out=out, exclude_noisy=True), "filter a dataset"),
        (ExportRequest(project="p", what="model", out=out, round=5), "no saved model for round 5"),
        (ExportRequest(project="p", what="model", out=out, job_id=999), "not a run of project"),
    ]
    for req, message in cases:
        with pytest.raises(ExportError, match=message):
            export(world.db, req)
    with pytest.raises(ExportError, match="no database"):
        export(tmp_path / "missing.db", ExportRequest(project="p", what="dataset", out=out))
    assert not (tmp_path / "missing.db").exists() and not Path(out).exists()


KILLABLE = """
import sys, time
from pathlib import Path
from engine.data.export import ExportRequest, export
def slow(stage, done, total):
    if stage == "write":
        Path(sys.argv[3]).touch()
        time.sleep(600)
export(sys.argv[1], ExportRequest(project="p", what="dataset", out=sys.argv[2]), progress=slow)
"""


def test_killed_export_leaves_no_partial_folder(world, tmp_path):
    out, marker = tmp_path / "out", tmp_path / "writing"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, str(world.db), str(out), str(marker)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the export process ended before it started writing"
            assert time.monotonic() < deadline, "the export never started writing"
            time.sleep(0.05)
        stale = list(tmp_path.glob(".out.tmp-*"))
        assert len(stale) == 1 and (stale[0] / "train.jsonl").exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not out.exists() and stale[0].is_dir()
    export(world.db, ExportRequest(project="p", what="dataset", out=str(out)))
    assert len(rows_of(out)) == ALL_ROWS
    assert not list(tmp_path.glob(".out.*"))


def test_cards_name_a_hub_model_by_its_id_and_a_local_one_by_its_folder_name(tmp_path):
    from engine.data.export.cards import public_name

    folder = tmp_path / "my-sft-model"
    folder.mkdir()
    assert public_name("alignment-handbook/zephyr-7b-sft-full") == "alignment-handbook/zephyr-7b-sft-full"
    assert public_name(str(folder)) == "my-sft-model"
    assert public_name(str(tmp_path / "gone" / "base-model")) == "base-model"  # an absolute path, even if moved
