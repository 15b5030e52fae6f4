"""The demo world's task: short symbolic problems, a noisy teacher that answers them, and a gold reward.

Four domains, one line each: "sort: 7 2 9 4" -> "2 4 7 9", "reverse: abcde" -> "edcba",
"next: 479" -> "480", "max: 3 9 2 7" -> "9". The teacher is right only part of the time and
otherwise makes a plausible mistake; several mistakes keep the answer's length (a swap, a wrong digit,
a forgotten carry, the second largest item), so a better answer is never just a longer or shorter one.
The teacher also hedges half of its answers ("maybe 480"), and the gold reward marks a hedged answer
down by HEDGE_FACTOR: a preference about how to answer that holds across every prompt, the kind a few
dozen labels can teach (as style and helpfulness are in real preference data), beside correctness,
which is harder to learn from few labels.
The gold reward is a pure function of (prompt, response): 1.0 for the exact, unhedged answer, partial
credit below PARTIAL_CAP for near misses, 0 for garbage.
"""

from __future__ import annotations

import random
import string
from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Callable

DOMAINS = ("sort", "reverse", "next", "max")
PARTIAL_CAP = 0.9  # the best a non-exact answer can score, so exact answers always stand out
HEDGES = ("maybe ", "i think ", "um, ")
HEDGE_FACTOR = 0.6  # a hedged answer is worth this fraction of the same answer given plainly
P_HEDGE = 0.5  # how often the teacher hedges
MAX_NUMBER_DIGITS = 12  # longer "numbers" are garbage (and int() of huge strings is slow or refused)


@dataclass(frozen=True)
class Problem:
    """One task instance: the domain and its operands, from which prompt and answer follow."""

    domain: str
    items: tuple  # sort/max: digits, reverse: (word,), next: (number,)

    @property
    def prompt(self) -> str:
        if self.domain in ("reverse", "next"):
            return f"{self.domain}: {self.items[0]}"
        return f"{self.domain}: " + " ".join(str(x) for x in self.items)

    @property
    def answer(self) -> str:
        if self.domain == "sort":
            return " ".join(str(x) for x in sorted(self.items))
        if self.domain == "reverse":
            return self.items[0][::-1]
        if self.domain == "next":
            return str(self.items[0] + 1)
        return str(max(self.items))


def random_problem(rng: random.Random, domain: str | None = None) -> Problem:
    domain = domain or rng.choice(DOMAINS)
    if domain == "sort":
        return Problem("sort", tuple(rng.randint(0, 9) for _ in range(rng.randint(3, 5))))
    if domain == "reverse":
        return Problem("reverse", ("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 5))),))
    if domain == "next":  # a third end in 9, so the carry matters
        n = rng.randint(10, 9998)
        return Problem("next", (n - n % 10 + 9 if rng.random() < 0.3 else n,))
    if domain == "max":
        return Problem("max", tuple(rng.randint(0, 9) for _ in range(rng.randint(3, 7))))
    raise ValueError(f"unknown demo domain {domain!r}")


def parse_prompt(prompt: str) -> Problem:
    """Inverse of Problem.prompt; a clear error for text that is not a demo-world prompt."""
    domain, sep, rest = prompt.strip().partition(":")
    rest = rest.strip()
    try:
        if not sep or domain not in DOMAINS or not rest:
            raise ValueError
        if domain == "reverse":
            if not rest.isalpha():
                raise ValueError
            return Problem("reverse", (rest,))
        if domain == "next":
            if not rest.isdigit():
                raise ValueError
            return Problem("next", (int(rest),))
        return Problem(domain, tuple(int(x) for x in rest.split()))
    except ValueError:
        raise ValueError(f"not a demo-world prompt: {prompt[:80]!r}") from None


# --- the noisy teacher -------------------------------------------------------------------------


def _habit(rng: random.Random, **weights: int) -> str:
    """Pick a kind of mistake. Each domain has two habits weighted 3 against 1 for the rest: mistakes
    systematic enough that a few dozen labels can teach the model out of them."""
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _swap(seq: list, rng: random.Random) -> list:
    i, j = rng.sample(range(len(seq)), 2)
    seq = list(seq)
    seq[i], seq[j] = seq[j], seq[i]
    return seq


def _swap_adjacent(seq: list, rng: random.Random) -> list:
    i = rng.randrange(len(seq) - 1)
    seq = list(seq)
    seq[i], seq[i + 1] = seq[i + 1], seq[i]
    return seq


def _drop(seq: list, rng: random.Random) -> list:
    i = rng.randrange(len(seq))
    return list(seq[:i]) + list(seq[i + 1 :])


def _duplicate(seq: list, rng: random.Random) -> list:
    i = rng.randrange(len(seq))
    return list(seq[: i + 1]) + list(seq[i:])


EDITS: dict[str, Callable[[list, random.Random], list]] = {
    "swap_adjacent": _swap_adjacent,
    "swap": _swap,
    "drop": _drop,
    "duplicate": _duplicate,
}  # the mistakes a list answer (sort, reverse) can have in common


def _sort_mistake(p: Problem, rng: random.Random) -> str:
    right = sorted(p.items)
    kind = _habit(rng, swap_adjacent=3, drop=3, swap=1, duplicate=1, unsorted=1, nudge=1)
    if kind in EDITS:
        out = EDITS[kind](right, rng)
    elif kind == "unsorted":
        out = list(p.items)
    else:  # one item off by one: same length, right order, wrong content
        out = list(right)
        i = rng.randrange(len(out))
        step = rng.choice([-1, 1])
        out[i] += step if 0 <= out[i] + step <= 9 else -step
    return " ".join(str(x) for x in out)


def _reverse_mistake(p: Problem, rng: random.Random) -> str:
    word = p.items[0]
    right = list(word[::-1])
    kind = _habit(rng, partial=3, swap_adjacent=3, swap=1, drop=1, duplicate=1, substitute=1)
    if kind in EDITS:
        out = EDITS[kind](right, rng)
    elif kind == "partial":  # reversed only the first k letters
        k = rng.randint(2, len(word) - 1)
        out = list(word[:k][::-1] + word[k:])
    else:  # one letter replaced by a neighbour in the alphabet
        out = list(right)
        i = rng.randrange(len(out))
        out[i] = string.ascii_lowercase[(string.ascii_lowercase.index(out[i]) + rng.choice([-1, 1])) % 26]
    return "".join(out)


def _next_mistake(p: Problem, rng: random.Random) -> str:
    n = p.items[0]
    right = str(n + 1)
    kind = _habit(rng, unchanged=3, no_carry=3 if n % 10 == 9 else 0, off_by_one=1, wrong_digit=1, swap_digits=1)
    if kind == "no_carry":  # 479 -> 470: same length, one digit wrong
        return str(n - 9)
    if kind == "unchanged":
        return str(n)
    if kind == "off_by_one":
        return str(n + 2)
    digits = list(right)
    if kind == "wrong_digit":  # a digit other than the last, nudged: same length
        i = rng.randrange(len(digits) - 1)
        d = int(digits[i]) + rng.choice([-1, 1])
        digits[i] = str(d % 10 if i else min(9, max(1, d)))
        return "".join(digits)
    return "".join(_swap_adjacent(digits, rng))


def _max_mistake(p: Problem, rng: random.Random) -> str:
    right = max(p.items)
    others = [x for x in p.items if x != right]
    kind = _habit(rng, second=3, first=3, last=1, min=1, off_by_one=1)
    if others and kind == "second":
        return str(max(others))
    if others and kind == "min":
        return str(min(others))
    if kind in ("first", "last"):  # equal to the answer now and then; teacher_mistake draws again
        return str(p.items[0] if kind == "first" else p.items[-1])
    return str(right - 1 if right == 9 or (right > 0 and rng.random() < 0.5) else right + 1)


MISTAKES: dict[str, Callable[[Problem, random.Random], str]] = {
    "sort": _sort_mistake,
    "reverse": _reverse_mistake,
    "next": _next_mistake,
    "max": _max_mistake,
}


def teacher_mistake(p: Problem, rng: random.Random) -> str:
    """A plausible wrong answer, never the right one (a swap of equal items is redrawn)."""
    for _ in range(100):
        wrong = MISTAKES[p.domain](p, rng)
        if wrong != p.answer:
            return wrong
    raise AssertionError(f"no mistake found for {p.prompt!r}")


def teacher_answer(p: Problem, rng: random.Random, p_correct: float, p_hedge: float = P_HEDGE) -> str:
    """The noisy teacher the SFT model imitates: right with probability p_correct, hedged with p_hedge."""
    answer = p.answer if rng.random() < p_correct else teacher_mistake(p, rng)
    return rng.choice(HEDGES) + answer if rng.random() < p_hedge else answer


def split_hedge(text: str) -> tuple[bool, str]:
    for hedge in HEDGES:
        if text.startswith(hedge):
            return True, text[len(hedge) :]
    return False, text


# --- the gold reward ---------------------------------------------------------------------------


def _sequence_score(got: list[str], want: list[str]) -> float:
    """Order (longest matching blocks), content (multiset F1) and a penalty for the wrong length."""
    if got == want:
        return 1.0
    if not got:
        return 0.0
    order = SequenceMatcher(None, got, want, autojunk=False).ratio()
    overlap = sum((Counter(got) & Counter(want)).values())
    content = 2 * overlap / (len(got) + len(want))
    length_penalty = abs(len(got) - len(want)) / len(want)
    return PARTIAL_CAP * max(0.0, 0.5 * order + 0.5 * content - 0.5 * length_penalty)


def _number_score(got: str, want: int) -> float:
    """Digits in the right places and numeric closeness; anything but a plain number scores 0."""
    if not got.isdigit() or not got.isascii() or len(got) > MAX_NUMBER_DIGITS:
        return 0.0
    if got == str(want):
        return 1.0
    digits = SequenceMatcher(None, got, str(want), autojunk=False).ratio()
    closeness = max(0.0, 1.0 - abs(int(got) - want) / max(want, 10))
    return PARTIAL_CAP * (0.5 * digits + 0.5 * closeness)


def score(p: Problem, response: str) -> float:
    hedged, text = split_hedge(response.strip())
    return (HEDGE_FACTOR if hedged else 1.0) * _core_score(p, text.strip())


def _core_score(p: Problem, text: str) -> float:
    if p.domain == "sort":
        return _sequence_score(text.split(), p.answer.split())
    if p.domain == "reverse":
        return _sequence_score(list(text), list(p.answer))
    return _number_score(text, int(p.answer))


def gold_reward(prompt: str, response: str) -> float:
    """How good `response` is for the demo-world `prompt` (the user message's text), in [0, 1]."""
    return round(score(parse_prompt(prompt), response), 6)


def gold_score_messages(prompt_messages: list[dict], response: str) -> float:
    """gold_reward for a chat prompt: the task is the last user turn."""
    users = [m["content"] for m in prompt_messages if m.get("role") == "user"]
    if not users:
        raise ValueError("prompt has no user turn")
    return gold_reward(users[-1], response)


def domain_of(prompt: str) -> str:
    return parse_prompt(prompt).domain
