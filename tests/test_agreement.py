"""Agreement with a person's labels: Wilson's interval pinned to a hand-worked value, how ties and both-bad
answers are counted apart, and the audit sample's determinism; agreement between people: Cohen's κ and
Krippendorff's α pinned to hand-worked and published values."""

from __future__ import annotations

import pytest
import torch

from engine.method.agreement import (
    agreement,
    audit_estimate,
    audit_sample,
    cohen_kappa,
    krippendorff_alpha,
    reviewer_agreement,
    variant_agreement,
    wilson_interval,
)
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


def test_cohen_kappa_matches_the_hand_worked_value():
    # 50 items: both yes 20, yes/no 5, no/yes 10, both no 15. p_o = 35/50 = 0.7; rater 1 yes 25/50, rater 2 yes
    # 30/50: p_e = 0.5·0.6 + 0.5·0.4 = 0.5; κ = (0.7 − 0.5) / (1 − 0.5) = 0.4
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    # four answers, ties a category of their own: (a,a) (b,b) (tie,a) (both_bad,both_bad) (a,b)
    # p_o = 3/5; rater 1 a 2, b 1, tie 1, both_bad 1; rater 2 a 2, b 2, both_bad 1
    # p_e = (2·2 + 1·2 + 1·0 + 1·1) / 25 = 7/25; κ = (15/25 − 7/25) / (18/25) = 8/18 = 4/9
    assert cohen_kappa(["a", "b", "tie", "both_bad", "a"], ["a", "b", "a", "both_bad", "b"]) == pytest.approx(4 / 9)
    assert cohen_kappa(["a", "b"], ["a", "b"]) == 1.0 and cohen_kappa(["a", "b"], ["b", "a"]) == -1.0
    assert cohen_kappa([], []) is None and cohen_kappa(["a", "a"], ["a", "a"]) is None  # p_e = 1: undefined
    with pytest.raises(ValueError):
        cohen_kappa(["a"], ["a", "b"])


def test_krippendorff_alpha_matches_the_published_example_and_a_hand_worked_one():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers, 12 units, missing values;
    # nominal α published as 0.743
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[v for v in unit if v is not None] for unit in zip(*observers)]
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)
    # two raters, units (a,a) (a,b) (b,b): o(a,a) = 2, o(b,b) = 2, o(a,b) = o(b,a) = 1; n_a = n_b = 3, n = 6;
    # α = 1 − (n − 1)·2 / (2·3·3) = 1 − 10/18 = 4/9
    assert krippendorff_alpha([["a", "a"], ["a", "b"], ["b", "b"]]) == pytest.approx(4 / 9)
    assert krippendorff_alpha([["a"], ["b"]]) is None  # no unit has two values
    assert krippendorff_alpha([["a", "a"], ["a", "a"]]) is None  # one category: no expected disagreement


def test_reviewer_agreement_pairs_people_on_shared_pairs_and_alpha_needs_three():
    labels = {1: {"ann": "a", "bob": "a"}, 2: {"ann": "b", "bob": "a"}, 3: {"ann": "a"}}
    judge = {1: "a", 2: "b", 3: "b"}
    seen = reviewer_agreement(labels, judge)
    assert seen.people == ["ann", "bob"] and seen.shared == 2 and seen.alpha is None
    [pair] = seen.pairwise
    # (a,a) (b,a): p_o = 1/2; ann a 1 b 1, bob a 2: p_e = 2/4; κ = 0
    assert (pair.first, pair.second, pair.n, pair.agree, pair.kappa) == ("ann", "bob", 2, 0.5, 0.0)
    assert (seen.with_judge["ann"].agree, seen.with_judge["ann"].n) == (2 / 3, 3)
    assert (seen.with_judge["bob"].agree, seen.with_judge["bob"].n) == (0.5, 2)
    labels[2]["cy"] = "b"
    assert reviewer_agreement(labels, judge).alpha == pytest.approx(krippendorff_alpha([["a", "a"], ["b", "a", "b"]]))
