"""What the review page shows of a text-world pair: the prompt's IFEval instructions, each in the words the
library writes for it, and which of them an answer follows (strict, the gold's measure; loose beside it). Computed
from the world's task book with the same checkers as the gold reward, so the marks and the gold always agree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.worlds import ifeval_tasks as it
from storage.records import Messages


@dataclass
class InstructionCheck:
    instruction_id: str  # IFEval's id, e.g. keywords:existence
    description: str  # the instruction as the prompt states it
    strict: bool
    loose: bool


@dataclass
class PairChecks:
    """Both answers of a pair against the prompt's instructions (empty lists with a note when the prompt is not
    in the world's task book)."""

    a: list[InstructionCheck]
    b: list[InstructionCheck]
    note: str = ""


def answer_checks(task: it.Task, response: str) -> list[InstructionCheck]:
    gold = it.score(task, response)
    return [
        InstructionCheck(kind, it.describe(kind, kwargs), strict, loose)
        for kind, kwargs, strict, loose in zip(task.instruction_ids, task.kwargs, gold.strict, gold.loose)
    ]


@dataclass
class OneAnswerChecks:
    """One answer against the prompt's instructions (the seed view shows each sampled answer's)."""

    checks: list[InstructionCheck]
    note: str = ""


def _task(world_root: Path, prompt: Messages) -> tuple[it.Task | None, str]:
    """The prompt's task in the task book of the text world at `world_root`, or None and why not."""
    tasks = Path(world_root) / "tasks.jsonl"
    if not tasks.is_file():
        return None, f"no text world at {world_root}: its instructions cannot be shown"
    try:
        return it.TaskBook.load(tasks).task(prompt), ""
    except KeyError:
        return None, "this prompt is not one of the text world's tasks"


def pair_checks(world_root: Path, prompt: Messages, response_a: str, response_b: str) -> PairChecks:
    """The checks of both answers, from the task book of the text world at `world_root`."""
    task, note = _task(world_root, prompt)
    if task is None:
        return PairChecks([], [], note)
    return PairChecks(answer_checks(task, response_a), answer_checks(task, response_b))


def one_answer_checks(world_root: Path, prompt: Messages, response: str) -> OneAnswerChecks:
    """The checks of one answer, from the task book of the text world at `world_root`."""
    task, note = _task(world_root, prompt)
    return OneAnswerChecks(answer_checks(task, response) if task else [], note)
