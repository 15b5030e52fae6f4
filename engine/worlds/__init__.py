"""Worlds a run can be tested in without outside data: the embedded demo world (a toy model it trains itself
and a gold reward; demo_world, demo_task, toy_model) and the text world (SmolLM2-135M-Instruct fetched from PyPI,
smollm2; project-written tasks with IFEval's verifiable instructions as gold, ifeval_tasks; the build and splits,
text_world; IFEval's metrics on held-out prompts, text_eval).
Each is one `World` (world): the runtime and the studio look a run's world up there and never branch on it."""

from engine.worlds.world import (
    DEMO,
    TEXT,
    WORLDS,
    GoldReward,
    World,
    gold_reward_of,
    resolve_path,
    world_for_path,
    world_of,
)

__all__ = [
    "DEMO",
    "TEXT",
    "WORLDS",
    "GoldReward",
    "World",
    "gold_reward_of",
    "resolve_path",
    "world_for_path",
    "world_of",
]
