"""Judge variants scored from the numbers every judged pair already stores (π_{i-1}'s and π_init's log-probs and
the response lengths), so a variant costs no model pass: the implicit reward, per token, without reference,
π_init's per-token likelihood, the length-regularised reward (DICE, arXiv 2406.09760) and their majority vote.
Each variant is a small pure function on tensors; `variant_choices` applies them all to a set of pairs. Choices
follow `judges.judge_preference`: a higher score wins, equal scores go to 'a'."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from itertools import pairwise

import torch

from engine.method.judges import implicit_reward, judge_preference
from storage.records import Pair

ENSEMBLE = "ensemble"


@dataclass(frozen=True)
class AnswerScores:
    """One side (a or b) of a set of pairs: a value per pair."""

    logp_policy: torch.Tensor  # logp under π_{i-1}
    logp_init: torch.Tensor  # logp under π_init
    tokens: torch.Tensor  # response length in tokens


@dataclass(frozen=True)
class PairScores:
    """The stored numbers of a set of pairs, one float64 value per pair in each field."""

    logp_policy_a: torch.Tensor
    logp_policy_b: torch.Tensor
    logp_init_a: torch.Tensor
    logp_init_b: torch.Tensor
    tokens_a: torch.Tensor
    tokens_b: torch.Tensor

    @classmethod
    def of(
        cls,
        logp_policy_a: Sequence[float],
        logp_policy_b: Sequence[float],
        logp_init_a: Sequence[float],
        logp_init_b: Sequence[float],
        tokens_a: Sequence[float],
        tokens_b: Sequence[float],
    ) -> PairScores:
        columns = (logp_policy_a, logp_policy_b, logp_init_a, logp_init_b, tokens_a, tokens_b)
        if len({len(c) for c in columns}) != 1:
            raise ValueError("every column needs one value per pair")
        return cls(*(torch.as_tensor(c, dtype=torch.float64) for c in columns))

    @classmethod
    def from_pairs(cls, pairs: Sequence[Pair]) -> PairScores:
        """The stored numbers of judged pairs; a pair missing one of them is named in the error."""
        names = ("logp_policy_a", "logp_policy_b", "logp_init_a", "logp_init_b", "tokens_a", "tokens_b")
        missing = [p.id for p in pairs if any(getattr(p, name) is None for name in names)]
        if missing:
            raise ValueError(f"pairs {missing[:10]} lack stored log-probs or token counts")
        return cls.of(*([getattr(p, name) for p in pairs] for name in names))

    def side(self, which: str) -> AnswerScores:
        return AnswerScores(
            getattr(self, f"logp_policy_{which}"),
            getattr(self, f"logp_init_{which}"),
            getattr(self, f"tokens_{which}"),
        )

    def __len__(self) -> int:
        return len(self.logp_policy_a)

    def take(self, indices: Sequence[int]) -> PairScores:
        """The pairs at these positions, in this order."""
        at = torch.as_tensor(list(indices), dtype=torch.long)
        return PairScores(*(getattr(self, f.name)[at] for f in fields(self)))


@dataclass(frozen=True)
class VariantParams:
    beta: float = 0.1
    length_alpha: float = 0.0  # the length-regularised variant's α, reward per token (see fit_length_alpha)


@dataclass(frozen=True)
class VariantChoice:
    """One variant's verdict per pair."""

    a_preferred: torch.Tensor  # bool
    margin: torch.Tensor  # score_chosen − score_rejected ≥ 0, in the variant's own units (ensemble: vote share)


def _per_token(value: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """value / tokens; an empty answer counts as one token, so it never divides by zero."""
    return value / tokens.clamp(min=1)


def implicit_per_token(
    logp_policy: torch.Tensor, logp_init: torch.Tensor, tokens: torch.Tensor, beta: float
) -> torch.Tensor:
    """r / tokens: the implicit reward without the sum's pull towards one length."""
    return _per_token(implicit_reward(logp_policy, logp_init, beta), tokens)


def no_reference(logp_policy: torch.Tensor, beta: float) -> torch.Tensor:
    """β·logp(π_{i-1}): the authors' no-reference ablation."""
    return beta * logp_policy


def init_per_token(logp_init: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """logp(π_init) / tokens: π_init's mean per-token log-likelihood (best of the variants on the text world)."""
    return _per_token(logp_init, tokens)


def length_regularised(
    logp_policy: torch.Tensor, logp_init: torch.Tensor, tokens: torch.Tensor, beta: float, length_alpha: float
) -> torch.Tensor:
    """DICE's length-regularised implicit reward r − α·tokens; α > 0 penalises length, α < 0 rewards it."""
    return implicit_reward(logp_policy, logp_init, beta) - length_alpha * tokens


ScoreFn = Callable[[AnswerScores, VariantParams], torch.Tensor]

# name → score per answer; the ensemble (ENSEMBLE) votes over all of these
JUDGE_VARIANTS: dict[str, ScoreFn] = {
    "implicit": lambda side, params: implicit_reward(side.logp_policy, side.logp_init, params.beta),
    "implicit_per_token": lambda side, params: implicit_per_token(
        side.logp_policy, side.logp_init, side.tokens, params.beta
    ),
    "no_reference": lambda side, params: no_reference(side.logp_policy, params.beta),
    "init_per_token": lambda side, params: init_per_token(side.logp_init, side.tokens),
    "length_regularised": lambda side, params: length_regularised(
        side.logp_policy, side.logp_init, side.tokens, params.beta, params.length_alpha
    ),
}
VARIANT_NAMES = (*JUDGE_VARIANTS, ENSEMBLE)


def majority_vote(choices: Sequence[VariantChoice]) -> VariantChoice:
    """The choice most voters make; margin = |votes for a − votes for b| / voters ∈ [0, 1]. A tie (only possible
    with an even number of voters) goes to the first voter's choice (in the registry: the implicit judge)."""
    votes_a = torch.stack([c.a_preferred for c in choices]).to(torch.int64).sum(dim=0)
    votes_b = len(choices) - votes_a
    a_preferred = torch.where(votes_a == votes_b, choices[0].a_preferred, votes_a > votes_b)
    return VariantChoice(a_preferred, (votes_a - votes_b).abs().to(torch.float64) / len(choices))


def variant_choices(scores: PairScores, params: VariantParams = VariantParams()) -> dict[str, VariantChoice]:
    """Every variant's choice and margin per pair, ensemble included, in VARIANT_NAMES order."""
    side_a, side_b = scores.side("a"), scores.side("b")
    out = {}
    for name, score in JUDGE_VARIANTS.items():
        a_preferred, margin, _ = judge_preference(score(side_a, params), score(side_b, params))
        out[name] = VariantChoice(a_preferred, margin)
    out[ENSEMBLE] = majority_vote(list(out.values()))
    return out


@dataclass(frozen=True)
class VariantScores:
    score_a: torch.Tensor
    score_b: torch.Tensor
    choice: VariantChoice


def variant_scores(scores: PairScores, name: str, params: VariantParams = VariantParams()) -> VariantScores:
    """One variant's score of each answer and its choice: what a round stores when `judge.kind: auto` picks the
    variant (engine.runtime.auto_judge). The ensemble scores an answer by the share of voters that prefer it, so
    its margin is its vote margin and its scores agree with its choice (a tied vote: the first voter's)."""
    if name == ENSEMBLE:
        choice = variant_choices(scores, params)[ENSEMBLE]
        share_a = (1 + torch.where(choice.a_preferred, choice.margin, -choice.margin)) / 2
        return VariantScores(share_a, 1 - share_a, choice)
    if name not in JUDGE_VARIANTS:
        raise ValueError(f"unknown judge variant {name!r}; the variants are {', '.join(VARIANT_NAMES)}")
    score = JUDGE_VARIANTS[name]
    score_a, score_b = score(scores.side("a"), params), score(scores.side("b"), params)
    a_preferred, margin, _ = judge_preference(score_a, score_b)
    return VariantScores(score_a, score_b, VariantChoice(a_preferred, margin))


@dataclass(frozen=True)
class LengthAlphaFit:
    alpha: float
    gap: float  # mean tokens of chosen − of rejected answers under the length-regularised choice at alpha
    crossed: bool  # the gap changes sign within the bracket; False: alpha is the bracket end nearest balance


def length_gap(scores: PairScores, beta: float, length_alpha: float) -> float:
    """Mean length of the answers the length-regularised variant chooses minus that of those it rejects."""
    reward_a = length_regularised(scores.logp_policy_a, scores.logp_init_a, scores.tokens_a, beta, length_alpha)
    reward_b = length_regularised(scores.logp_policy_b, scores.logp_init_b, scores.tokens_b, beta, length_alpha)
    a_preferred = reward_a >= reward_b
    length_diff = scores.tokens_a - scores.tokens_b
    return float(torch.where(a_preferred, length_diff, -length_diff).mean()) if len(scores) else 0.0


def fit_length_alpha(
    scores: PairScores, beta: float = 0.1, bracket: tuple[float, float] | None = None
) -> LengthAlphaFit:
    """DICE's α: the one at which the length-regularised variant's chosen answers are as long, on average, as its
    rejected ones. Solved exactly, no tolerance: a pair flips from its longer to its shorter answer at the step
    α = (r_a − r_b) / (tokens_a − tokens_b), so the gap is a non-increasing step function of α, constant between
    steps. A binary search over the midpoints between steps (and one unit past the outermost) finds where it
    crosses zero; a step that jumps over zero gives the side with the smaller gap (ties: the lower α). Returned α
    lie between steps, never on one (a bracket's own ends excepted), so float rounding cannot flip a pair when α
    is applied again. No labels enter: the balance is of the variant's own choices, on whichever pairs (e.g. the
    seed's) it is fitted.
    Unbounded, the gap runs from +mean |tokens_a − tokens_b| to minus that, so it always crosses (every pair of
    equal length: α = 0, gap 0). bracket (low, high) limits α to it; when the gap has one sign over the whole
    bracket no α there balances: the bracket end nearer balance is returned, with crossed False."""
    candidates = _alpha_candidates(scores, beta, bracket)
    gaps: dict[int, float] = {}

    def gap(index: int) -> float:
        if index not in gaps:
            gaps[index] = length_gap(scores, beta, candidates[index])
        return gaps[index]

    first, last = 0, len(candidates) - 1
    if gap(first) <= 0 or gap(last) >= 0:  # non-increasing: one sign over the bracket, the nearer end is best
        best = first if gap(first) <= 0 else last
        return LengthAlphaFit(candidates[best], gap(best), gap(best) == 0)
    low, high = first, last  # invariant: gap(low) > 0 > gap(high)
    while high - low > 1:
        middle = (low + high) // 2
        if gap(middle) == 0:
            return LengthAlphaFit(candidates[middle], 0.0, True)
        low, high = (middle, high) if gap(middle) > 0 else (low, middle)
    best = low if gap(low) <= -gap(high) else high
    return LengthAlphaFit(candidates[best], gap(best), True)


def _alpha_candidates(scores: PairScores, beta: float, bracket: tuple[float, float] | None) -> list[float]:
    """One α inside each constant stretch of the gap, ascending: midpoints between steps and one unit past the
    outermost; with a bracket, those inside it and its two ends."""
    length_diff = scores.tokens_a - scores.tokens_b
    unequal = length_diff != 0
    reward_diff = implicit_reward(scores.logp_policy_a, scores.logp_init_a, beta) - implicit_reward(
        scores.logp_policy_b, scores.logp_init_b, beta
    )
    steps = torch.unique(reward_diff[unequal] / length_diff[unequal]).tolist()  # sorted
    inside = [steps[0] - 1.0] + [(lo + hi) / 2 for lo, hi in pairwise(steps)] + [steps[-1] + 1.0] if steps else [0.0]
    if bracket is None:
        return inside
    low, high = bracket
    if low > high:
        raise ValueError(f"bracket {bracket} must run from low to high")
    return sorted({low, high, *(alpha for alpha in inside if low < alpha < high)})
