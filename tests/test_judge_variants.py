"""Judge variants from the stored numbers: each score pinned to hand-worked values, the ensemble's vote and tie
rule, and DICE's length α solved on pairs small enough to solve by hand."""

from __future__ import annotations

import pytest
import torch

from engine.method.judge_variants import (
    ENSEMBLE,
    JUDGE_VARIANTS,
    VARIANT_NAMES,
    PairScores,
    VariantChoice,
    VariantParams,
    fit_length_alpha,
    implicit_per_token,
    init_per_token,
    length_gap,
    length_regularised,
    majority_vote,
    no_reference,
    variant_choices,
)
from storage.records import Pair

# pair 1: β = 0.1, logp π_{i-1} −10 / −12, π_init −11 / −11, tokens 5 / 10
# pair 2: every number equal on both sides, so every score ties (a tie goes to 'a')
SCORES = PairScores.of(
    logp_policy_a=[-10.0, -8.0],
    logp_policy_b=[-12.0, -8.0],
    logp_init_a=[-11.0, -8.0],
    logp_init_b=[-11.0, -8.0],
    tokens_a=[5, 4],
    tokens_b=[10, 4],
)


def test_each_variant_scores_an_answer_as_worked_by_hand():
    t = torch.tensor
    # r_a = 0.1·(−10 + 11) = 0.1, r_b = 0.1·(−12 + 11) = −0.1; per token 0.1 / 5 = 0.02, −0.1 / 10 = −0.01
    assert implicit_per_token(t([-10.0, -12.0]), t([-11.0, -11.0]), t([5.0, 10.0]), 0.1).tolist() == pytest.approx(
        [0.02, -0.01]
    )
    # β·logp π_{i-1}: 0.1·−10 = −1.0, 0.1·−12 = −1.2
    assert no_reference(t([-10.0, -12.0]), 0.1).tolist() == pytest.approx([-1.0, -1.2])
    # π_init per token: −11 / 5 = −2.2, −11 / 10 = −1.1; an empty answer counts as one token: −3 / 1
    per_token = init_per_token(t([-11.0, -11.0, -3.0]), t([5.0, 10.0, 0.0]))
    assert per_token.tolist() == pytest.approx([-2.2, -1.1, -3.0])
    # r − α·tokens with α = 0.05: 0.1 − 0.25 = −0.15, −0.1 − 0.5 = −0.6
    assert length_regularised(
        t([-10.0, -12.0]), t([-11.0, -11.0]), t([5.0, 10.0]), 0.1, 0.05
    ).tolist() == pytest.approx([-0.15, -0.6])


def test_variant_choices_give_each_variant_its_choice_and_margin():
    # α = −0.1 rewards length: 0.1 + 0.5 = 0.6 for a, −0.1 + 1.0 = 0.9 for b, so b wins by 0.3
    choices = variant_choices(SCORES, VariantParams(beta=0.1, length_alpha=-0.1))
    assert list(choices) == list(VARIANT_NAMES) == [*JUDGE_VARIANTS, ENSEMBLE]
    first = {name: (bool(c.a_preferred[0]), float(c.margin[0])) for name, c in choices.items()}
    assert first == {
        "implicit": (True, pytest.approx(0.2)),  # 0.1 − (−0.1)
        "implicit_per_token": (True, pytest.approx(0.03)),  # 0.02 − (−0.01)
        "no_reference": (True, pytest.approx(0.2)),  # −1.0 − (−1.2)
        "init_per_token": (False, pytest.approx(1.1)),  # −1.1 − (−2.2): the shorter answer is worse per token
        "length_regularised": (False, pytest.approx(0.3)),
        ENSEMBLE: (True, pytest.approx(0.2)),  # 3 votes for a, 2 for b: (3 − 2) / 5
    }
    # pair 2: every score ties, every variant picks a with margin 0; the ensemble is unanimous, margin 5 / 5
    second = {name: (bool(c.a_preferred[1]), float(c.margin[1])) for name, c in choices.items()}
    assert second == {**{name: (True, 0.0) for name in JUDGE_VARIANTS}, ENSEMBLE: (True, 1.0)}


def test_a_tied_vote_goes_to_the_first_voter():
    first, second = (
        VariantChoice(torch.tensor([False, True]), torch.zeros(2)),
        VariantChoice(torch.tensor([True, True]), torch.zeros(2)),
    )
    vote = majority_vote([first, second])
    assert vote.a_preferred.tolist() == [False, True]  # 1 : 1 follows `first`; 2 : 0 is a
    assert vote.margin.tolist() == [0.0, 1.0]


def test_pair_scores_come_from_stored_pairs_and_name_the_ones_missing_numbers():
    def stored(pair_id, tokens_b):
        return Pair(
            job_id=1,
            round=1,
            prompt=[],
            response_a="x",
            response_b="y",
            id=pair_id,
            tokens_a=5,
            tokens_b=tokens_b,
            logp_policy_a=-10.0,
            logp_policy_b=-12.0,
            logp_init_a=-11.0,
            logp_init_b=-11.0,
        )

    scores = PairScores.from_pairs([stored(1, 10)])
    assert scores.tokens_b.tolist() == [10.0] and scores.logp_init_a.dtype == torch.float64 and len(scores) == 1
    with pytest.raises(ValueError, match=r"\[2\]"):
        PairScores.from_pairs([stored(1, 10), stored(2, None)])


# Two pairs at β = 0.1 for the length fit.
# Pair 1: r_a − r_b = 0.1·(−10 + 12) = 0.2, tokens 6 vs 10 (a shorter by 4): it keeps a while 0.2 − α·(6 − 10) ≥ 0,
#   i.e. α ≥ −0.05.
# Pair 2: r_a − r_b = 0.1·(−6 + 8.8) = 0.28, tokens 8 vs 4 (a longer by 4): it keeps a while 0.28 − 4α ≥ 0,
#   i.e. α ≤ 0.07.
# Gap = mean over pairs of (chosen − rejected tokens):
#   α < −0.05: b (10) vs 6 and a (8) vs 4 → (4 + 4) / 2 = 4
#   −0.05 < α < 0.07: a (6) vs 10 and a (8) vs 4 → (−4 + 4) / 2 = 0
#   α > 0.07: a (6) vs 10 and b (4) vs 8 → (−4 − 4) / 2 = −4
# Balanced on (−0.05, 0.07): the fit returns its midpoint 0.01.
BALANCED = PairScores.of([-10.0, -6.0], [-12.0, -8.8], [-11.0, -7.0], [-11.0, -7.0], [6, 8], [10, 4])


def test_the_length_gap_steps_where_a_pair_flips_to_its_shorter_answer():
    assert [length_gap(BALANCED, 0.1, alpha) for alpha in (-0.06, 0.0, 0.08)] == [4.0, 0.0, -4.0]


def test_fit_length_alpha_balances_chosen_and_rejected_lengths():
    fit = fit_length_alpha(BALANCED, beta=0.1)
    assert fit.alpha == pytest.approx(0.01) and fit.gap == 0.0 and fit.crossed


def test_fit_length_alpha_takes_the_side_of_the_step_nearer_balance_when_it_jumps_over_zero():
    # pair 1 now shorter by 5 (tokens 5 vs 10): it flips at α = 0.2 / −5 = −0.04 and contributes ±5. Gap:
    #   α < −0.04: (5 + 4) / 2 = 4.5; −0.04 < α < 0.07: (−5 + 4) / 2 = −0.5; α > 0.07: (−5 − 4) / 2 = −4.5.
    # No α balances exactly; −0.5 is nearest, on (−0.04, 0.07), whose midpoint is 0.015
    scores = PairScores.of([-10.0, -6.0], [-12.0, -8.8], [-11.0, -7.0], [-11.0, -7.0], [5, 8], [10, 4])
    fit = fit_length_alpha(scores, beta=0.1)
    assert fit.alpha == pytest.approx(0.015) and fit.gap == pytest.approx(-0.5) and fit.crossed


def test_fit_length_alpha_returns_the_bracket_end_nearer_balance_when_none_in_it_balances():
    # on [0.1, 0.2] both pairs already chose their shorter answer: gap −4 throughout; the low end is as near as any
    fit = fit_length_alpha(BALANCED, beta=0.1, bracket=(0.1, 0.2))
    assert (fit.alpha, fit.gap, fit.crossed) == (0.1, -4.0, False)
    fit = fit_length_alpha(BALANCED, beta=0.1, bracket=(-1.0, -0.5))  # gap +4 throughout: the high end
    assert (fit.alpha, fit.gap, fit.crossed) == (-0.5, 4.0, False)
    inside = fit_length_alpha(BALANCED, beta=0.1, bracket=(0.0, 1.0))  # the low end 0 already balances
    assert (inside.alpha, inside.gap, inside.crossed) == (0.0, 0.0, True)


def test_fit_length_alpha_leaves_alpha_at_zero_when_every_pair_has_equal_lengths():
    scores = PairScores.of([-1.0], [-2.0], [-1.0], [-1.0], [3], [3])
    assert fit_length_alpha(scores).alpha == 0.0 and fit_length_alpha(scores).crossed


def test_the_fitted_alpha_makes_the_length_regularised_variant_balance_on_many_pairs():
    generator = torch.Generator().manual_seed(0)
    n = 400
    tokens_a, tokens_b = (torch.randint(1, 200, (n,), generator=generator).double() for _ in range(2))
    init_a, init_b = -0.9 * tokens_a, -0.9 * tokens_b
    # a judge that prefers the shorter answer: π_{i-1} lost 0.02 nats per token against π_init, plus noise
    policy_a = init_a - 0.02 * tokens_a + torch.randn(n, generator=generator, dtype=torch.float64)
    policy_b = init_b - 0.02 * tokens_b + torch.randn(n, generator=generator, dtype=torch.float64)
    scores = PairScores(policy_a, policy_b, init_a, init_b, tokens_a, tokens_b)
    assert length_gap(scores, 0.1, 0.0) < -20  # unregularised it picks the shorter answer
    fit = fit_length_alpha(scores, beta=0.1)
    assert fit.crossed and fit.alpha < 0 and abs(fit.gap) < 1.0  # α < 0 rewards length back
    assert length_gap(scores, 0.1, fit.alpha) == fit.gap
