"""Judges behind one interface: judge(prompts, responses_a, responses_b) -> preferences with scores.
The SPA judge (implicit reward against π_init) is the default; the gold judge exists for the demo world."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from engine import method, scoring
from storage.records import Messages


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

    def judge(self, prompts: list[Messages], responses_a: list[str], responses_b: list[str],
              progress: Callable[[int, int], None] | None = None) -> list[Preference]: ...


def preferences_from_scores(score_a: torch.Tensor, score_b: torch.Tensor, **logps) -> list[Preference]:
    a_pref, margin, conf = method.judge_preference(score_a, score_b)
    out = []
    for i in range(len(score_a)):
        extra = {k: float(v[i]) for k, v in logps.items()}
        out.append(Preference(bool(a_pref[i]), float(score_a[i]), float(score_b[i]), float(conf[i]),
                              float(margin[i]), **extra))
    return out


@dataclass
class ImplicitRewardJudge:
    """SPA's direct preference judgement: r(x, y) = β·[logp(π_{i-1}, x, y) − logp(π_init, x, y)].
    reference="none" is the authors' no-reference ablation, r = β·logp(π_{i-1}, x, y); π_init's log-probs are
    still computed and stored, as every round stores all four."""
    policy: object  # checkpoints.Policy: π_{i-1} with its π_init view
    beta: float = 0.1
    batch_size: int = 16
    name: str = "implicit"
    reference: str = "init"  # init | none

    def judge(self, prompts, responses_a, responses_b, progress=None,
              policy_logps: list[tuple[float | None, float | None]] | None = None) -> list[Preference]:
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
            got_a, got_b = scoring.pair_logps(self.policy.model, tok, [prompts[i] for i in missing],
                                              [responses_a[i] for i in missing], [responses_b[i] for i in missing],
                                              self.batch_size, progress=step(0))
            for i, a, b in zip(missing, got_a, got_b):
                pol_a[i], pol_b[i] = a, b
        with self.policy.init_view() as init:
            ini_a, ini_b = scoring.pair_logps(init, tok, prompts, responses_a, responses_b, self.batch_size,
                                              progress=step(len(missing)))
        pa, pb, ia, ib = (torch.tensor(v, dtype=torch.float64) for v in (pol_a, pol_b, ini_a, ini_b))
        ref_a, ref_b = (ia, ib) if self.reference == "init" else (torch.zeros_like(ia), torch.zeros_like(ib))
        ra, rb = method.implicit_reward(pa, ref_a, self.beta), method.implicit_reward(pb, ref_b, self.beta)
        return preferences_from_scores(ra, rb, logp_policy_a=pa, logp_policy_b=pb, logp_init_a=ia, logp_init_b=ib)


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
