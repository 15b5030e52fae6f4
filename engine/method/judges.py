"""Judges behind one interface: judge(prompts, responses_a, responses_b) -> preferences with scores.
The SPA judge (implicit reward against π_init) is the default; the gold judge exists for the demo world."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from engine.method import scoring
from storage.records import Messages


def implicit_reward(logp_policy: torch.Tensor, logp_init: torch.Tensor, beta: float) -> torch.Tensor:
    """r(x, y) = β · [logp(π, x, y) − logp(π_init, x, y)]: DPO's implicit reward, the SPA judge's score."""
    return beta * (logp_policy - logp_init)


def judge_preference(
    reward_a: torch.Tensor, reward_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chosen = higher r (a tie goes to 'a'); margin = r_chosen − r_rejected ≥ 0; confidence = σ(margin) ∈ [0.5, 1].
    Returns (a_preferred, margin, confidence)."""
    a_preferred = reward_a >= reward_b
    margin = (reward_a - reward_b).abs()
    return a_preferred, margin, torch.sigmoid(margin)


@dataclass
class Preference:
    a_preferred: bool
    score_a: float
    score_b: float
    confidence: float  # ∈ [0.5, 1]
    margin: float  # score_chosen − score_rejected ≥ 0
    logp_policy_a: float | None = None
    logp_policy_b: float | None = None
    logp_init_a: float | None = None
    logp_init_b: float | None = None


class Judge(Protocol):
    name: str

    def judge(
        self,
        prompts: list[Messages],
        responses_a: list[str],
        responses_b: list[str],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Preference]: ...


def preferences_from_scores(score_a: torch.Tensor, score_b: torch.Tensor, **logps) -> list[Preference]:
    a_pref, margin, conf = judge_preference(score_a, score_b)
    out = []
    for i in range(len(score_a)):
        extra = {k: float(v[i]) for k, v in logps.items()}
        out.append(
            Preference(
                bool(a_pref[i]), float(score_a[i]), float(score_b[i]), float(conf[i]), float(margin[i]), **extra
            )
        )
    return out


@dataclass
class ImplicitRewardJudge:
    """SPA's direct preference judgement: r(x, y) = β·[logp(π_{i-1}, x, y) − logp(π_init, x, y)].
    reference="none" is the authors' no-reference ablation, r = β·logp(π_{i-1}, x, y); π_init's log-probs are
    still computed and stored, as every round stores all four."""

    policy: object  # models.Policy: π_{i-1} with its π_init view
    beta: float = 0.1
    batch_size: int = 16
    name: str = "implicit"
    reference: str = "init"  # init | none

    def judge(
        self,
        prompts,
        responses_a,
        responses_b,
        progress=None,
        policy_logps: list[tuple[float | None, float | None]] | None = None,
    ) -> list[Preference]:
        """policy_logps: π_{i-1}'s (logp_a, logp_b) per pair where sampling already computed them
        (generation.Sample.logp); only the pairs with a missing one get a π_{i-1} forward pass here."""
        tok = self.policy.tokenizer
        n = len(prompts)
        known = policy_logps if policy_logps is not None else [(None, None)] * n
        if len(known) != n:
            raise ValueError(f"{n} pairs but {len(known)} policy log-prob pairs")
        missing = [i for i, (a, b) in enumerate(known) if a is None or b is None]
        total = len(missing) + n

        def step(offset):
            return lambda done, _: progress(offset + done, total) if progress else None

        pol_a, pol_b = [a for a, _ in known], [b for _, b in known]
        if missing:
            got_a, got_b = scoring.pair_logps(
                self.policy.model,
                tok,
                [prompts[i] for i in missing],
                [responses_a[i] for i in missing],
                [responses_b[i] for i in missing],
                self.batch_size,
                progress=step(0),
            )
            for i, a, b in zip(missing, got_a, got_b):
                pol_a[i], pol_b[i] = a, b
        with self.policy.init_view() as init:
            ini_a, ini_b = scoring.pair_logps(
                init, tok, prompts, responses_a, responses_b, self.batch_size, progress=step(len(missing))
            )
        pa, pb, ia, ib = (torch.tensor(v, dtype=torch.float64) for v in (pol_a, pol_b, ini_a, ini_b))
        ref_a, ref_b = (ia, ib) if self.reference == "init" else (torch.zeros_like(ia), torch.zeros_like(ib))
        ra, rb = implicit_reward(pa, ref_a, self.beta), implicit_reward(pb, ref_b, self.beta)
        return preferences_from_scores(ra, rb, logp_policy_a=pa, logp_policy_b=pb, logp_init_a=ia, logp_init_b=ib)

    def rewards(
        self,
        prompts: list[Messages],
        responses: list[str],
        policy_logps: list[float | None] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """r(x, y) per (prompt, response), float64, on the same formula as `judge`. policy_logps: π_{i-1}'s
        log-prob where sampling kept it (None: scored here). With reference "none" π_init is not run."""
        n = len(prompts)
        pol = list(policy_logps) if policy_logps is not None else [None] * n
        if not n == len(responses) == len(pol):
            raise ValueError("prompts, responses and policy_logps must have the same length")
        missing = [i for i, v in enumerate(pol) if v is None]
        total = len(missing) + (n if self.reference == "init" else 0)

        def step(offset):
            return (lambda done, _: progress(offset + done, total)) if progress else None

        if missing:
            got = scoring.sequence_logps(
                self.policy.model,
                self.policy.tokenizer,
                [prompts[i] for i in missing],
                [responses[i] for i in missing],
                self.batch_size,
                step(0),
            )
            for i, v in zip(missing, got):
                pol[i] = v
        ref = torch.zeros(n, dtype=torch.float64)
        if self.reference == "init":
            with self.policy.init_view() as init:
                ref = torch.tensor(
                    scoring.sequence_logps(
                        init, self.policy.tokenizer, prompts, responses, self.batch_size, step(len(missing))
                    ),
                    dtype=torch.float64,
                )
        return implicit_reward(torch.tensor(pol, dtype=torch.float64), ref, self.beta)

    def best_of_n(
        self,
        prompts: list[Messages],
        samples: list[list[str]],
        policy_logps: list[list[float | None]] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[tuple[int, int] | None]:
        """(chosen, rejected) indices per prompt: the samples this judge rewards most and least (the spread
        pair, as iterative DPO with a reward model picks it). None: all samples are the same text. `judge`
        then labels the pair alike, up to float32 rounding (~1e-7) between its shared-prompt pass and this one."""
        if len(prompts) != len(samples):
            raise ValueError(f"{len(prompts)} prompts but {len(samples)} sample lists")
        flat_prompts = [p for p, group in zip(prompts, samples) for _ in group]
        flat = [s for group in samples for s in group]
        known = [v for group in policy_logps for v in group] if policy_logps is not None else None
        r = self.rewards(flat_prompts, flat, known, progress).tolist()
        picks, start = [], 0
        for group in samples:
            picks.append(spread_pair(group, r[start : start + len(group)]))
            start += len(group)
        return picks


def spread_pair(texts: list[str], scores: list[float]) -> tuple[int, int] | None:
    """The highest-scored sample and the lowest-scored one whose text differs from it (first on ties)."""
    chosen = max(range(len(texts)), key=lambda k: (scores[k], -k))
    others = [k for k in range(len(texts)) if texts[k] != texts[chosen]]
    return (chosen, min(others, key=lambda k: (scores[k], k))) if others else None


@dataclass
class GoldJudge:
    """The demo world's gold reward; for benchmarks and the 'DPO on 100% gold labels' baseline."""

    gold: Callable[[Messages, str], float]
    name: str = "gold"

    def judge(self, prompts, responses_a, responses_b, progress=None) -> list[Preference]:
        sa = torch.tensor([self.gold(p, r) for p, r in zip(prompts, responses_a)], dtype=torch.float64)
        sb = torch.tensor([self.gold(p, r) for p, r in zip(prompts, responses_b)], dtype=torch.float64)
        if progress:
            progress(len(prompts), len(prompts))
        return preferences_from_scores(sa, sb)

    def best_of_n(
        self,
        prompts: list[Messages],
        samples: list[list[str]],
        policy_logps=None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[tuple[int, int] | None]:
        """The spread pair by gold reward: the oracle for best-of-N selection (policy_logps: not needed)."""
        if len(prompts) != len(samples):
            raise ValueError(f"{len(prompts)} prompts but {len(samples)} sample lists")
        picks = [spread_pair(group, [self.gold(p, y) for y in group]) for p, group in zip(prompts, samples)]
        if progress:
            progress(len(prompts), len(prompts))
        return picks
