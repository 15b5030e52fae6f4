"""The demo world's task: short symbolic problems, a noisy teacher that answers them, and a gold reward.

Four domains, one line each: "sort: 7 2 9 4" -> "2 4 7 9", "reverse: abcde" -> "edcba",
"add: 23+58" -> "81", "max: 31 87 45 12" -> "87". The teacher is right only part of the time and
otherwise makes a plausible mistake; several mistakes keep the answer's length (a swap, a wrong digit,
a forgotten carry, the second largest item), so a better answer is never just a longer or shorter one.
The gold reward is a pure function of (prompt, response): 1.0 for the exact answer, partial credit
below PARTIAL_CAP for near misses, 0 for garbage.
"""
from __future__ import annotations

import random
import string
from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Callable

DOMAINS = ("sort", "reverse", "add", "max")
PARTIAL_CAP = 0.9  # the best a non-exact answer can score, so exact answers always stand out
MAX_NUMBER_DIGITS = 12  # longer "numbers" are garbage (and int() of huge strings is slow or refused)


@dataclass(frozen=True)
class Problem:
    """One task instance: the domain and its operands, from which prompt and answer follow."""
    domain: str
    items: tuple  # sort/max: ints, reverse: one str, add: (a, b)

    @property
    def prompt(self) -> str:
        if self.domain == "reverse":
            return f"reverse: {self.items[0]}"
        if self.domain == "add":
            return f"add: {self.items[0]}+{self.items[1]}"
        return f"{self.domain}: " + " ".join(str(x) for x in self.items)

    @property
    def answer(self) -> str:
        if self.domain == "sort":
            return " ".join(str(x) for x in sorted(self.items))
        if self.domain == "reverse":
            return self.items[0][::-1]
        if self.domain == "add":
            return str(self.items[0] + self.items[1])
        return str(max(self.items))


def random_problem(rng: random.Random, domain: str | None = None) -> Problem:
    domain = domain or rng.choice(DOMAINS)
    if domain == "sort":
        return Problem("sort", tuple(rng.randint(0, 9) for _ in range(rng.randint(4, 7))))
    if domain == "reverse":
        return Problem("reverse", ("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 8))),))
    if domain == "add":
        return Problem("add", (rng.randint(10, 99), rng.randint(10, 99)))
    if domain == "max":
        return Problem("max", tuple(rng.randint(10, 99) for _ in range(rng.randint(3, 6))))
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
        if domain == "add":
            a, b = rest.split("+")
            return Problem("add", (int(a), int(b)))
        return Problem(domain, tuple(int(x) for x in rest.split()))
    except ValueError:
        raise ValueError(f"not a demo-world prompt: {prompt[:80]!r}") from None


# --- the noisy teacher -------------------------------------------------------------------------

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
    return list(seq[:i]) + list(seq[i + 1:])


def _duplicate(seq: list, rng: random.Random) -> list:
    i = rng.randrange(len(seq))
    return list(seq[:i + 1]) + list(seq[i:])


def _sort_mistake(p: Problem, rng: random.Random) -> str:
    right = sorted(p.items)
    kind = rng.choice(["swap_adjacent", "swap", "drop", "duplicate", "unsorted", "nudge"])
    if kind == "swap_adjacent":
        out = _swap_adjacent(right, rng)
    elif kind == "swap":
        out = _swap(right, rng)
    elif kind == "drop":
        out = _drop(right, rng)
    elif kind == "duplicate":
        out = _duplicate(right, rng)
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
    kind = rng.choice(["swap_adjacent", "swap", "drop", "duplicate", "partial", "substitute"])
    if kind == "swap_adjacent":
        out = _swap_adjacent(right, rng)
    elif kind == "swap":
        out = _swap(right, rng)
    elif kind == "drop":
        out = _drop(right, rng)
    elif kind == "duplicate":
        out = _duplicate(right, rng)
    elif kind == "partial":  # reversed only the first k letters
        k = rng.randint(2, len(word) - 1)
        out = list(word[:k][::-1] + word[k:])
    else:  # one letter replaced by a neighbour in the alphabet
        out = list(right)
        i = rng.randrange(len(out))
        out[i] = string.ascii_lowercase[(string.ascii_lowercase.index(out[i]) + rng.choice([-1, 1])) % 26]
    return "".join(out)


def _number_mistake(right: int, rng: random.Random, kind: str) -> int:
    if kind == "off_by_one":
        return right + rng.choice([-1, 1])
    if kind == "off_by_ten":
        return right + (10 if right < 20 or rng.random() < 0.5 else -10)
    digits = str(right)
    if kind == "swap_digits" and len(set(digits)) > 1:
        return int(digits[::-1]) if len(digits) == 2 else int(digits[0] + digits[2] + digits[1])
    return right + rng.choice([-2, 2])


def _add_mistake(p: Problem, rng: random.Random) -> str:
    a, b = p.items
    right = a + b
    kind = rng.choice(["off_by_one", "off_by_ten", "swap_digits", "no_carry", "concat_digits"])
    if kind == "no_carry" and (a % 10) + (b % 10) >= 10:  # forgot the carry: same length, one digit wrong
        wrong = right - 10
    elif kind == "concat_digits":  # added tens and units separately and glued them
        wrong = int(f"{a // 10 + b // 10}{(a + b) % 10}")
    else:
        wrong = _number_mistake(right, rng, kind if kind != "no_carry" else "off_by_ten")
    return str(wrong if wrong != right and wrong >= 0 else right + 1)


def _max_mistake(p: Problem, rng: random.Random) -> str:
    right = max(p.items)
    kind = rng.choice(["second", "first", "min", "off_by_one", "swap_digits"])
    if kind == "second" and len(set(p.items)) > 1:
        wrong = sorted(set(p.items))[-2]
    elif kind == "first" and p.items[0] != right:
        wrong = p.items[0]
    elif kind == "min" and min(p.items) != right:
        wrong = min(p.items)
    else:
        wrong = _number_mistake(right, rng, kind if kind in ("off_by_one", "swap_digits") else "off_by_one")
    return str(wrong if wrong != right else right - 1)


MISTAKES: dict[str, Callable[[Problem, random.Random], str]] = {
    "sort": _sort_mistake, "reverse": _reverse_mistake, "add": _add_mistake, "max": _max_mistake,
}


def teacher_mistake(p: Problem, rng: random.Random) -> str:
    """A plausible wrong answer, never the right one (a swap of equal items is redrawn)."""
    for _ in range(100):
        wrong = MISTAKES[p.domain](p, rng)
        if wrong != p.answer:
            return wrong
    raise AssertionError(f"no mistake found for {p.prompt!r}")


def teacher_answer(p: Problem, rng: random.Random, p_correct: float) -> str:
    """The noisy teacher the SFT model imitates: right with probability p_correct."""
    return p.answer if rng.random() < p_correct else teacher_mistake(p, rng)


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
    text = response.strip()
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
