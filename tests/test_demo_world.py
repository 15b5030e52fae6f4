"""The demo world: the gold reward on hand-checked answers, and a mini build that must be deterministic,
cached, atomic and loadable through the ordinary Hugging Face code paths."""

from __future__ import annotations

import copy
import json
import os
import random
import statistics

import pytest

from engine.worlds.demo_task import (
    DOMAINS,
    HEDGE_FACTOR,
    HEDGES,
    PARTIAL_CAP,
    parse_prompt,
    random_problem,
    split_hedge,
    teacher_answer,
    teacher_mistake,
)
from engine.worlds.demo_world import (
    VERSION,
    DemoWorld,
    WorldSize,
    build_demo_world,
    default_demo_dir,
    gold_reward,
    gold_score_messages,
    load_jsonl,
)

MINI = WorldSize.mini()


def quiet(stage: str, done: int, total: int) -> None:
    pass


# --- gold reward -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt, answer",
    [
        ("sort: 7 2 9 4", "2 4 7 9"),
        ("reverse: abcde", "edcba"),
        ("next: 479", "480"),
        ("max: 3 9 2 7", "9"),
    ],
)
def test_exact_answer_scores_one(prompt, answer):
    assert gold_reward(prompt, answer) == 1.0
    assert gold_reward(prompt, f"  {answer}\n") == 1.0


@pytest.mark.parametrize(
    "prompt, right, wrong",
    [
        ("sort: 7 2 9 4", "2 4 7 9", "2 7 4 9"),  # swapped items
        ("sort: 7 2 9 4", "2 4 7 9", "2 4 7 8"),  # wrong item
        ("reverse: abcde", "edcba", "edbca"),  # swapped letters
        ("reverse: abcde", "edcba", "edcbb"),  # wrong letter
        ("next: 479", "480", "470"),  # forgot the carry
        ("next: 479", "480", "479"),  # forgot to add
        ("max: 3 9 2 7", "9", "7"),  # second largest
    ],
)
def test_same_length_mistakes_score_below_the_answer(prompt, right, wrong):
    assert len(wrong) == len(right)
    assert 0.0 < gold_reward(prompt, wrong) <= PARTIAL_CAP < gold_reward(prompt, right)


def test_partial_credit_is_graded():
    prompt = "sort: 7 2 9 4 1"
    adjacent_swap = gold_reward(prompt, "1 2 4 9 7")
    far_swap = gold_reward(prompt, "9 2 4 7 1")
    dropped = gold_reward(prompt, "1 2 4 7")
    unsorted = gold_reward(prompt, "7 2 9 4 1")
    assert 1.0 > adjacent_swap > far_swap > 0
    assert 1.0 > dropped > gold_reward(prompt, "1 2") > 0
    assert adjacent_swap > unsorted
    assert gold_reward("next: 479", "481") > gold_reward("next: 479", "9999")


@pytest.mark.parametrize("prompt", ["sort: 7 2 9 4", "reverse: abcde", "next: 479", "max: 3 9 2 7"])
@pytest.mark.parametrize("garbage", ["", "hello world!", "###", "9" * 5000])
def test_garbage_scores_about_zero(prompt, garbage):
    assert gold_reward(prompt, garbage) <= 0.05


def test_gold_reward_rejects_foreign_prompts_and_reads_the_last_user_turn():
    with pytest.raises(ValueError, match="not a demo-world prompt"):
        gold_reward("Write a poem about the sea.", "The sea.")
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "max: 1 2"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "max: 5 3"},
    ]
    assert gold_score_messages(messages, "5") == 1.0
    assert gold_score_messages(messages, "2") < 1.0


def test_teacher_mistakes_are_wrong_varied_and_often_the_same_length():
    rng = random.Random(0)
    for domain in DOMAINS:
        same_length = 0
        for _ in range(300):
            p = random_problem(rng, domain)
            assert parse_prompt(p.prompt) == p
            wrong = teacher_mistake(p, rng)
            assert wrong != p.answer and gold_reward(p.prompt, wrong) < 1.0
            same_length += len(wrong) == len(p.answer)
        assert same_length >= 100, domain
    answers = [
        split_hedge(teacher_answer(p, rng, 0.5)) + (p.answer,) for p in (random_problem(rng) for _ in range(4000))
    ]
    assert 0.45 < statistics.mean(text == answer for _, text, answer in answers) < 0.55
    assert 0.45 < statistics.mean(hedged for hedged, _, _ in answers) < 0.55


@pytest.mark.parametrize("prompt, answer", [("sort: 7 2 9 4", "2 4 7 9"), ("next: 479", "480")])
def test_a_hedged_answer_scores_below_the_plain_one(prompt, answer):
    for hedge in HEDGES:
        assert gold_reward(prompt, hedge + answer) == pytest.approx(HEDGE_FACTOR)
    assert gold_reward(prompt, "maybe " + answer) > gold_reward(prompt, "maybe 0 0 0 0 0")


# --- the built world ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mini_world(tmp_path_factory) -> DemoWorld:
    return build_demo_world(tmp_path_factory.mktemp("w") / "world", seed=0, progress=quiet, size=MINI)


def world_bytes(world: DemoWorld) -> dict[str, bytes]:
    """Every file of a world; the manifest without its build time, the one thing allowed to differ."""
    files = {str(f.relative_to(world.root)): f.read_bytes() for f in sorted(world.root.rglob("*")) if f.is_file()}
    manifest = json.loads(files.pop("world.json"))
    manifest.pop("build_seconds")
    files["world.json"] = json.dumps(manifest, sort_keys=True).encode()
    return files


def test_build_is_deterministic_for_a_seed(mini_world, tmp_path):
    again = build_demo_world(tmp_path / "again", seed=0, progress=quiet, size=MINI)
    other = build_demo_world(tmp_path / "other", seed=1, progress=quiet, size=MINI)
    first = world_bytes(mini_world)
    assert first == world_bytes(again)
    different = world_bytes(other)
    assert first.keys() == different.keys()
    assert first["model/model.safetensors"] != different["model/model.safetensors"]
    assert first["pool.jsonl"] != different["pool.jsonl"]
    assert mini_world.fingerprint() == again.fingerprint() != other.fingerprint()
    assert mini_world.fingerprint().startswith("SFT weights sha256 ")
    sft_gold = json.loads(first["world.json"])["sft"]["gold_mean"]
    assert mini_world.fingerprint().endswith(f"SFT gold {sft_gold:.3f}")


def test_world_files_load_with_transformers(mini_world):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from engine.method.encoding import prompt_ids
    from engine.worlds.toy_model import char_tokenizer

    model = AutoModelForCausalLM.from_pretrained(mini_world.model_dir)
    tok = AutoTokenizer.from_pretrained(mini_world.model_dir)
    gen = GenerationConfig.from_pretrained(mini_world.model_dir)
    assert tok.chat_template and gen.eos_token_id == tok.eos_token_id and gen.pad_token_id == tok.pad_token_id
    messages = [{"role": "user", "content": "sort: 7 2 9 4"}]
    assert prompt_ids(tok, messages) == prompt_ids(char_tokenizer(), messages)
    assert model.config.vocab_size == len(tok)


def test_pairs_are_gold_ordered_and_prompts_disjoint(mini_world):
    manifest = mini_world.manifest
    assert manifest["version"] == VERSION and manifest["seed"] == 0
    prompts = {}
    for name, path in [
        ("seed", mini_world.seed_file),
        ("validation", mini_world.validation_file),
        ("eval", mini_world.eval_file),
    ]:
        rows = load_jsonl(path)
        assert len(rows) == manifest["counts"][name]
        for row in rows:
            assert set(row) == {"prompt", "chosen", "rejected"}
            assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
            prompt = row["prompt"][0]["content"]
            assert gold_reward(prompt, row["chosen"][0]["content"]) > gold_reward(
                prompt, row["rejected"][0]["content"]
            )
        prompts[name] = [r["prompt"][0]["content"] for r in rows]
    pool = load_jsonl(mini_world.pool_file)
    assert all(set(r) == {"prompt"} for r in pool)
    prompts["pool"] = [r["prompt"][0]["content"] for r in pool]
    assert manifest["counts"]["seed"] == round(0.033 * len(pool))
    everything = [p for group in prompts.values() for p in group]
    assert len(everything) == len(set(everything))


def test_fully_labelled_pairs_extend_the_seed_to_the_whole_pool_the_same_way(tmp_path):
    from engine.worlds.demo_world import fully_labelled_pairs

    world = build_demo_world(tmp_path / "world", seed=0, progress=quiet, size=MINI)
    path = fully_labelled_pairs(world)
    rows, seeds, pool = load_jsonl(path), load_jsonl(world.seed_file), load_jsonl(world.pool_file)
    assert rows[: len(seeds)] == seeds and len(rows) == len(seeds) + len(pool)
    assert [r["prompt"] for r in rows[len(seeds) :]] == [r["prompt"] for r in pool]
    for row in rows:
        prompt = row["prompt"][0]["content"]
        assert gold_reward(prompt, row["chosen"][0]["content"]) > gold_reward(prompt, row["rejected"][0]["content"])
    text = path.read_text()
    path.unlink()
    assert fully_labelled_pairs(world).read_text() == text  # deterministic for the world


def test_second_call_reuses_the_cache(mini_world):
    stamp = (mini_world.root / "world.json").stat().st_mtime_ns
    calls = []
    again = build_demo_world(mini_world.root, seed=0, progress=lambda *a: calls.append(a), size=MINI)
    assert again == mini_world and not calls
    assert (mini_world.root / "world.json").stat().st_mtime_ns == stamp


def test_force_and_another_seed_rebuild_in_place(tmp_path):
    root = tmp_path / "world"
    build_demo_world(root, seed=0, progress=quiet, size=MINI)
    stamp = (root / "world.json").stat().st_mtime_ns
    build_demo_world(root, seed=0, progress=quiet, size=MINI, force=True)
    assert (root / "world.json").stat().st_mtime_ns != stamp
    assert build_demo_world(root, seed=3, progress=quiet, size=MINI).manifest["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]


def test_interrupted_build_leaves_nothing(tmp_path):
    def interrupt(stage: str, done: int, total: int) -> None:
        if stage == "sft" and done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_demo_world(tmp_path / "world", seed=0, progress=interrupt, size=MINI)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_folder_that_is_not_a_world(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_demo_world(tmp_path, seed=0, progress=quiet, size=MINI)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_default_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("SPA_DEMO_DIR", raising=False)
    assert default_demo_dir().name == f"demo-world-v{VERSION}-seed0"
    monkeypatch.setenv("SPA_DEMO_DIR", str(tmp_path / "here"))
    assert default_demo_dir() == tmp_path / "here"


# --- the real world (minutes: run with SPA_SLOW_TESTS=1) ---------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SPA_SLOW_TESTS"), reason="builds the full demo world; set SPA_SLOW_TESTS=1")
def test_dpo_on_the_seed_pairs_raises_held_out_gold(tmp_path):
    """The method's premise on this world: a few dozen gold pairs teach something that generalises."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from engine.worlds.demo_world import sample

    world = build_demo_world(tmp_path / "world", seed=0, progress=quiet)
    tok = AutoTokenizer.from_pretrained(world.model_dir)
    sft = AutoModelForCausalLM.from_pretrained(world.model_dir)
    prompts = [r["prompt"][0]["content"] for r in load_jsonl(world.eval_file)]

    def held_out_gold(model) -> float:
        torch.manual_seed(1234)
        samples = sample(model.eval(), tok, prompts, n=4, max_new_tokens=24)
        return statistics.mean(gold_reward(p, s) for p, ss in zip(prompts, samples) for s in ss)

    before = held_out_gold(sft)
    policy = copy.deepcopy(sft)
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        beta=0.1,
        learning_rate=2e-4,
        num_train_epochs=3,
        per_device_train_batch_size=8,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        max_length=128,
        seed=0,
        disable_tqdm=True,
    )
    DPOTrainer(
        model=policy,
        ref_model=copy.deepcopy(sft),
        args=args,
        processing_class=tok,
        train_dataset=Dataset.from_list(load_jsonl(world.seed_file)),
    ).train()
    after = held_out_gold(policy)
    assert before < 0.9 and after > before + 0.01, (before, after)
