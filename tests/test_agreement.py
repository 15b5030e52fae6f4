"""Agreement with a person's labels: Wilson's interval pinned to a hand-worked value, how ties and both-bad
answers are counted apart, and the audit sample's determinism."""

from __future__ import annotations

import pytest
import torch

from engine.method.agreement import agreement, audit_estimate, audit_sample, variant_agreement, wilson_interval
from engine.method.judge_variants import VariantChoice
from storage.records import AuditAnswer


def test_wilson_interval_matches_the_hand_worked_value():
    # 14 / 20, z = 1.96: p = 0.7, z² = 3.8416, z²/n = 0.19208, denominator 1.19208
    # centre = (0.7 + 3.8416 / 40) / 1.19208 = 0.79604 / 1.19208 = 0.667774
    # half = 1.96·√(0.21 / 20 + 3.8416 / 1600) / 1.19208 = 1.96·√0.012901 / 1.19208
    #      = 1.96·0.113582 / 1.19208 = 0.186751
    # → (0.481023, 0.854525)
    lo, hi = wilson_interval(14, 20)
    assert lo == pytest.approx(0.481023, abs=1e-6) and hi == pytest.approx(0.854525, abs=1e-6)


def test_wilson_interval_stays_inside_zero_one_and_says_nothing_without_data():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 5)
    assert lo == 0.0 and hi == pytest.approx(0.434491, abs=1e-6)  # 3.8416/5 / (1 + 3.8416/5) = 0.76832 / 1.76832
    assert wilson_interval(5, 5)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(6, 5)


def test_agreement_counts_ties_and_both_bad_apart_from_decided_pairs():
    person = ["a", "b", "a", "tie", "both_bad", "b", "tie"]
    judge = ["a", "a", "a", "b", "a", "b", "a"]
    estimate = agreement(person, judge)
    # decided: 4 pairs (a, b, a, b), of which the judge matches 3 → 0.75; Wilson(3, 4) = (0.300636, 0.954414)
    assert (estimate.agree, estimate.n, estimate.ties, estimate.both_bad) == (0.75, 4, 2, 1)
    assert (estimate.lo, estimate.hi) == pytest.approx(wilson_interval(3, 4))
    assert estimate.covers_half  # 4 labels cannot tell this judge from a coin


def test_a_clear_audit_does_not_cover_half_and_an_empty_one_does():
    sure = audit_estimate([AuditAnswer(pair_id, "a", "a", pair_id) for pair_id in range(30)])
    assert sure.agree == 1.0 and sure.lo > 0.5 and not sure.covers_half
    empty = audit_estimate([AuditAnswer(1, "tie", "a", 1)])
    assert (empty.agree, empty.lo, empty.hi, empty.n, empty.ties, empty.covers_half) == (None, 0.0, 1.0, 0, 1, True)
    with pytest.raises(ValueError, match="unknown label"):
        agreement(["x"], ["a"])


def test_variant_agreement_scores_each_variant_on_the_same_labels():
    choices = {
        "always_a": VariantChoice(torch.tensor([True, True, True]), torch.zeros(3)),
        "right": VariantChoice(torch.tensor([True, False, True]), torch.zeros(3)),
    }
    estimates = variant_agreement(choices, ["a", "b", "tie"])
    assert {name: (e.agree, e.n, e.ties) for name, e in estimates.items()} == {
        "always_a": (0.5, 2, 1),
        "right": (1.0, 2, 1),
    }


def test_audit_sample_is_uniform_deterministic_and_order_free():
    ids = list(range(100, 200))
    sample = audit_sample(ids, 10, seed=7)
    assert len(sample) == len(set(sample)) == 10 and set(sample) <= set(ids)
    assert audit_sample(reversed(ids), 10, seed=7) == sample  # the ids are sorted before drawing
    assert audit_sample(ids, 10, seed=8) != sample
    assert sorted(audit_sample([3, 1, 2], 10, seed=7)) == [1, 2, 3]  # fewer than size: all of them
    # uniform: over many seeds each id is drawn about size / len = 10% of the time
    counts = {pair_id: 0 for pair_id in ids}
    for seed in range(2000):
        for pair_id in audit_sample(ids, 10, seed):
            counts[pair_id] += 1
    assert min(counts.values()) > 140 and max(counts.values()) < 260  # expected 200, sd ≈ 13.4
