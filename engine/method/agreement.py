"""How often a judge agrees with the person's own labels, with a 95% interval: the one ground truth a user has.
A round's audit is a uniform random sample of its judged pairs that the person labels blind (without the judge's
label shown), so its agreement is an unbiased estimate of the round's self-label accuracy."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from storage.records import AuditAnswer

if TYPE_CHECKING:  # judge_variants needs torch: the studio reads estimates without loading it
    from engine.method.judge_variants import VariantChoice


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's score interval for a proportion: unlike p ± z·√(p(1−p)/n) it stays inside [0, 1] and keeps its
    coverage at the small n (20-100 labels) an audit has. n = 0 says nothing: (0, 1)."""
    if n == 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n}")
    proportion, z_squared = successes / n, z * z
    denominator = 1 + z_squared / n
    centre = (proportion + z_squared / (2 * n)) / denominator
    half_width = z * math.sqrt(proportion * (1 - proportion) / n + z_squared / (4 * n * n)) / denominator
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


@dataclass(frozen=True)
class AgreementEstimate:
    """Agreement with the person on the pairs they decided (a or b); ties and both-bad answers are counted apart,
    outside n, since the judge always picks one."""

    agree: float | None  # matches / n; None when n = 0
    lo: float  # Wilson 95% interval
    hi: float
    n: int  # decided pairs
    ties: int
    both_bad: int
    covers_half: bool  # lo ≤ 0.5 ≤ hi: the data cannot tell this judge from a coin


def interval_text(e: AgreementEstimate) -> str:
    """'0.650 [0.433, 0.819]'; '– [0, 1]' before any decided answer."""
    agree = "–" if e.agree is None else f"{e.agree:.3f}"
    return f"{agree} [{e.lo:.3f}, {e.hi:.3f}]"


def agreement(person_labels: Iterable[str], judge_labels: Iterable[str], z: float = 1.96) -> AgreementEstimate:
    """The agreement of judge labels (a|b) with a person's labels (a|b|tie|both_bad), pair by pair."""
    matches = decided = ties = both_bad = 0
    for person, judge in zip(person_labels, judge_labels, strict=True):
        if person == "tie":
            ties += 1
        elif person == "both_bad":
            both_bad += 1
        elif person in ("a", "b"):
            decided += 1
            matches += person == judge
        else:
            raise ValueError(f"unknown label {person!r}")
    lo, hi = wilson_interval(matches, decided, z)
    return AgreementEstimate(matches / decided if decided else None, lo, hi, decided, ties, both_bad, lo <= 0.5 <= hi)


def audit_estimate(answers: Sequence[AuditAnswer], z: float = 1.96) -> AgreementEstimate:
    """The round's self-label accuracy from its blind audit answers (Store.audit_answers)."""
    return agreement([a.person_label for a in answers], [a.judge_label for a in answers], z)


def variant_agreement(
    choices: dict[str, VariantChoice], person_labels: Sequence[str], z: float = 1.96
) -> dict[str, AgreementEstimate]:
    """Each judge variant's agreement with the person's labels of the same pairs (judge_variants.variant_choices)."""
    return {
        name: agreement(person_labels, ["a" if a else "b" for a in choice.a_preferred.tolist()], z)
        for name, choice in choices.items()
    }


def best_lower_bound(estimates: Mapping[str, AgreementEstimate]) -> str:
    """The name whose 95% interval has the highest lower bound: the judge the labels support best, not the luckiest
    point estimate of a few pairs. A tie goes to the first in the mapping's order (the registry's, VARIANT_NAMES)."""
    if not estimates:
        raise ValueError("no estimates to choose from")
    order = list(estimates)
    return max(order, key=lambda name: (estimates[name].lo, -order.index(name)))


def audit_sample(pair_ids: Iterable[int], size: int, seed: int) -> list[int]:
    """A uniform random sample of `size` pair ids without replacement, in draw order; the same ids and seed give
    the same sample whatever order the ids come in (all of them, shuffled, when there are fewer than size)."""
    ordered = sorted(set(pair_ids))
    return random.Random(seed).sample(ordered, min(size, len(ordered)))


# Agreement between people. Their labels are four nominal categories (a, b, tie, both_bad): two people who both say
# "tie" agree, one "tie" against one "a" is a disagreement like "a" against "b". Against the self-judge, which
# always picks a or b, ties and both-bad answers stay apart (`agreement`).


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float | None:
    """Cohen's κ of two raters over the same items: (p_o − p_e) / (1 − p_e), p_e from each rater's own category
    shares. None when it is undefined: no items, or both raters used one and the same category throughout."""
    if len(first) != len(second):
        raise ValueError(f"{len(first)} labels against {len(second)}")
    n = len(first)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(first, second)) / n
    shares_first, shares_second = Counter(first), Counter(second)
    expected = sum(shares_first[c] * shares_second[c] for c in shares_first) / (n * n)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def krippendorff_alpha(units: Iterable[Sequence[Hashable]]) -> float | None:
    """Krippendorff's α for nominal data: each unit is the values the people who rated it gave (any number of
    raters; a unit with fewer than two values carries no pair and is left out). α = 1 − D_o / D_e, from the
    coincidence matrix o_ck = Σ_u (c-k value pairs in u) / (m_u − 1). None when it is undefined (no pairable
    values, or every value in one category)."""
    coincidences: Counter = Counter()
    for values in units:
        counts, m = Counter(values), len(values)
        if m < 2:
            continue
        for c in counts:
            for k in counts:
                coincidences[c, k] += counts[c] * (counts[k] - (c == k)) / (m - 1)
    totals: Counter = Counter()
    for (c, _), o in coincidences.items():
        totals[c] += o
    n = sum(totals.values())
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k) / (n - 1) if n > 1 else 0.0
    if expected == 0:
        return None
    observed = sum(o for (c, k), o in coincidences.items() if c != k)
    return 1 - observed / expected


@dataclass(frozen=True)
class PeopleAgreement:
    """Two people on the pairs both labelled: n, how often their labels are the same, and Cohen's κ."""

    first: str
    second: str
    n: int
    agree: float | None  # same label / n; None when n = 0
    kappa: float | None


@dataclass(frozen=True)
class ReviewerAgreement:
    """Agreement among people (on pairs two or more labelled) and of each person with the self-judge."""

    people: list[str]
    shared: int  # pairs two or more people labelled
    pairwise: list[PeopleAgreement]  # each pair of people with at least one pair in common
    alpha: float | None  # Krippendorff's α over the shared pairs, when three or more people labelled them
    with_judge: dict[str, AgreementEstimate]  # per person, on every pair they labelled that the judge decided


def reviewer_agreement(labels: dict[int, dict[str, str]], judge: dict[int, str], z: float = 1.96) -> ReviewerAgreement:
    """`labels`: per pair, each person's label (their latest, not undone); `judge`: the self-judge's a/b per pair."""
    people = sorted({person for by_person in labels.values() for person in by_person})
    shared = {pair: by_person for pair, by_person in labels.items() if len(by_person) >= 2}
    pairwise = []
    for i, first in enumerate(people):
        for second in people[i + 1 :]:
            both = [(bp[first], bp[second]) for bp in shared.values() if first in bp and second in bp]
            if both:
                xs, ys = [x for x, _ in both], [y for _, y in both]
                agree = sum(x == y for x, y in both) / len(both)
                pairwise.append(PeopleAgreement(first, second, len(both), agree, cohen_kappa(xs, ys)))
    raters = {person for by_person in shared.values() for person in by_person}
    alpha = krippendorff_alpha(list(bp.values()) for bp in shared.values()) if len(raters) >= 3 else None
    with_judge = {}
    for person in people:
        mine = [
            (bp[person], judge[pair]) for pair, bp in labels.items() if person in bp and judge.get(pair) in ("a", "b")
        ]
        with_judge[person] = agreement([m for m, _ in mine], [j for _, j in mine], z)
    return ReviewerAgreement(people, len(shared), pairwise, alpha, with_judge)
