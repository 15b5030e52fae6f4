"""What a world's own evaluation of a round returns: its metrics and, where it has them, its held-out answers with
the world's checks. Plain records, apart from engine.worlds.world so that a world's evaluation code can build them
without importing the registry of worlds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.records import Messages


@dataclass
class HeldOutAnswers:
    """A world's held-out prompts with the round's and π_init's greedy answers and the world's checks of each
    answer (the text world: its IFEval instructions, as text_review.InstructionCheck dicts), which the evaluate
    stage saves as the round's answers file for the Insight tab to show side by side."""

    prompts: list[Messages]
    texts: list[str]
    init_texts: list[str]
    checks: list[list[dict]]
    init_checks: list[list[dict]]


@dataclass
class WorldEval:
    """A world's own evaluation of a round: its metrics and, where it has them, its held-out answers."""

    metrics: dict[str, float] = field(default_factory=dict)
    answers: HeldOutAnswers | None = None
