"""The worlds a run can name by a file prefix (demo:model, text:seed.jsonl), behind one interface: where a world's
files live, how it is set up, its gold reward, its own evaluation and what the review page adds to a pair. The
runtime and the studio ask `world_of(cfg)` or `world_for_path(value)` and never branch on a world themselves.

Module level imports no torch (the studio and the worker read it); each world imports its builder when asked."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from engine.config import DEMO_PREFIX, TEXT_PREFIX, ConfigError, RunConfig, names_prefix
from engine.worlds.world_eval import WorldEval

if TYPE_CHECKING:
    from engine.method.evaluation import EvalSettings
    from engine.method.models import Policy
    from storage.records import Messages

GoldReward = Callable[["Messages", str], float]  # (prompt, response) -> the world's own score of the response
Progress = Callable[[int, int], None]  # (done, total)


class World(ABC):
    """One world: files named `<prefix>NAME` that live under `root()`, built by `setup`; a gold reward where the
    world has one; metrics of its own after each round; extra facts about a pair for the review page."""

    prefix: str

    @abstractmethod
    def root(self) -> Path:
        """The world's folder (its environment variable, else the user's cache)."""

    @abstractmethod
    def setup(self, progress: Progress) -> None:
        """Build the world at `root()`, or find it cached there (a run's prepare stage)."""

    def names(self, value: str) -> bool:
        return value.startswith(self.prefix)

    def resolve(self, value: str, root: Path | None = None) -> str:
        """`<prefix>NAME` as the path of NAME under `root` (default: the world's folder)."""
        return str((root if root is not None else self.root()) / value[len(self.prefix) :])

    def gold_reward(self) -> GoldReward | None:
        """The world's gold reward; None for a world without one."""
        return None

    def evaluate(self, policy: Policy, settings: EvalSettings, out_dir: Path, progress: Progress) -> WorldEval:
        """Metrics (and held-out answers) of the world's own, after the evaluate stage's common ones; none by
        default."""
        return WorldEval()

    def pair_checks(self, prompt: Messages, response_a: str, response_b: str) -> dict | None:
        """What the review page shows beside a pair of this world's run; None for a world with nothing to add."""
        return None

    def answer_checks(self, prompt: Messages, response: str) -> dict | None:
        """What the seed view shows beside one answer to a seed prompt; None for a world with nothing to add."""
        return None


class Demo(World):
    """The embedded demo world: a toy model it trains itself, arithmetic and list tasks with a gold reward."""

    prefix = DEMO_PREFIX

    def root(self) -> Path:
        from engine.worlds.demo_world import default_demo_dir

        return default_demo_dir()

    def setup(self, progress: Progress) -> None:
        from engine.worlds.demo_world import build_demo_world

        build_demo_world(self.root(), progress=lambda stage, done, total: progress(done, total))

    def gold_reward(self) -> GoldReward:
        from engine.worlds.demo_task import gold_score_messages

        return gold_score_messages


class Text(World):
    """The text world: SmolLM2-135M-Instruct, tasks with IFEval's verifiable instructions as gold, and IFEval's
    metrics on its held-out prompts."""

    prefix = TEXT_PREFIX

    def root(self) -> Path:
        from engine.worlds.text_world import default_text_dir

        return default_text_dir()

    def setup(self, progress: Progress) -> None:
        from engine.worlds.text_world import build_text_world

        build_text_world(self.root(), progress=lambda stage, done, total: progress(done, total))

    def gold_reward(self) -> GoldReward:
        from engine.worlds.text_world import TextWorld

        return TextWorld.at(self.root()).task_book()

    def evaluate(self, policy: Policy, settings: EvalSettings, out_dir: Path, progress: Progress) -> WorldEval:
        """IFEval's metrics on the held-out splits, greedy, against π_init's greedy answers; the eval split's
        answers with each one's instruction checks."""
        from engine.worlds.text_eval import text_eval

        return text_eval(policy, self.root(), settings, out_dir, progress)

    def pair_checks(self, prompt: Messages, response_a: str, response_b: str) -> dict:
        """The prompt's IFEval instructions and which of them each answer follows ({"a": [...], "b": [...],
        "note": ...}, each check with instruction_id, description, strict, loose)."""
        from engine.worlds.text_review import pair_checks

        return asdict(pair_checks(self.root(), prompt, response_a, response_b))

    def answer_checks(self, prompt: Messages, response: str) -> dict:
        """The prompt's IFEval instructions and which of them the answer follows ({"checks": [...], "note": ...},
        each check as in pair_checks)."""
        from engine.worlds.text_review import one_answer_checks

        return asdict(one_answer_checks(self.root(), prompt, response))


DEMO = Demo()
TEXT = Text()
WORLDS: tuple[World, ...] = (DEMO, TEXT)


def world_for_path(value: str) -> World | None:
    """The world whose prefix `value` carries; None for a plain path or hub id."""
    return next((world for world in WORLDS if world.names(value)), None)


def resolve_path(value: str) -> str:
    """A world's `<prefix>NAME` as its file's path; anything else (a path, a hub id) as it is."""
    world = world_for_path(value)
    return world.resolve(value) if world else value


def world_of(cfg: RunConfig) -> World | None:
    """The world a run's files (model, seed_data, prompt_pool, eval_data) name; None when they name none.
    A run names at most one: its gold, setup and evaluation come from there."""
    named = [world for world in WORLDS if names_prefix(cfg, world.prefix)]
    if len(named) > 1:
        raise ConfigError(
            f"the run names files of several worlds ({', '.join(w.prefix for w in named)}); "
            "a run's files come from one world"
        )
    return named[0] if named else None


def gold_reward_of(cfg: RunConfig) -> GoldReward | None:
    """The gold reward of the run's world; None when it names no world or its world has none."""
    world = world_of(cfg)
    return world.gold_reward() if world else None
