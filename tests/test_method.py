"""Each formula of the method pinned to a value computed by hand (DESIGN.md section 1)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.method import judges, loss, noise, scoring


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def close(got: torch.Tensor, expected, tol: float = 1e-6) -> bool:
    return torch.allclose(got.double(), torch.tensor(expected, dtype=torch.float64), atol=tol, rtol=0)


def test_implicit_reward():
    # β·(logp_π − logp_init): 0.1·(−10 − (−12)) = 0.2; 0.1·(−5 − (−4)) = −0.1
    r = judges.implicit_reward(torch.tensor([-10.0, -5.0]), torch.tensor([-12.0, -4.0]), 0.1)
    assert close(r, [0.2, -0.1])


def test_judge_preference_margin_confidence_and_ties():
    # a = [0.3, −0.2, 0.1], b = [0.1, 0.4, 0.1]: chosen a, b, a (a tie goes to a);
    # margin = |a − b| = [0.2, 0.6, 0.0]; confidence = σ(margin) = [0.549834, 0.645656, 0.5]
    a_pref, margin, conf = judges.judge_preference(torch.tensor([0.3, -0.2, 0.1]), torch.tensor([0.1, 0.4, 0.1]))
    assert a_pref.dtype == torch.bool and a_pref.tolist() == [True, False, True]
    assert close(margin, [0.2, 0.6, 0.0])
    assert close(conf, [sigmoid(0.2), sigmoid(0.6), 0.5])
    assert close(conf, [0.549833997, 0.645656306, 0.5])


def test_dpo_margin():
    # h = [π(y_w) − ref(y_w)] − [π(y_l) − ref(y_l)] = (−10 − (−11)) − (−14 − (−12)) = 1 − (−2) = 3
    h = loss.dpo_margin(torch.tensor([-10.0]), torch.tensor([-14.0]), torch.tensor([-11.0]), torch.tensor([-12.0]))
    assert close(h, [3.0])


def test_extrapolated_logits():
    # (1 + 0.5)·[2, −1] − 0.5·[1, 1] = [3 − 0.5, −1.5 − 0.5] = [2.5, −2.0]
    ext = noise.extrapolated_logits(torch.tensor([2.0, -1.0]), torch.tensor([1.0, 1.0]), 0.5)
    assert close(ext, [2.5, -2.0])


def test_extrapolation_with_lambda_zero_is_the_policy():
    torch.manual_seed(0)
    policy, ref = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    assert torch.equal(noise.extrapolated_logits(policy, ref, 0.0), policy)


def test_response_logps_alignment():
    # tokens [0, 1, 0], response = the last two (mask [0, 1, 1]); vocabulary of 2.
    # logits at position 0 = [0, 0] predict token 1: log(1/2) = −ln 2
    # logits at position 1 = [ln 3, 0] predict token 0: log(3 / (3 + 1)) = ln 0.75
    # logits at position 2 predict nothing (there is no token 3).  Sum: −ln 2 + ln 0.75 = ln 0.375 = −0.980829
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [100.0, -100.0]]])
    labels = torch.tensor([[0, 1, 0]])
    assert close(scoring.response_logps(logits, labels, torch.tensor([[0, 1, 1]])), [math.log(0.375)])
    assert close(scoring.response_logps(logits, labels, torch.tensor([[0, 1, 1]])), [-0.980829253])
    # only the last token: ln 0.75
    assert close(scoring.response_logps(logits, labels, torch.tensor([[0, 0, 1]])), [math.log(0.75)])


def test_response_logps_ignores_masked_labels_even_if_out_of_vocabulary():
    logits = torch.zeros(1, 3, 4)
    labels = torch.tensor([[-100, -100, 2]])  # masked positions may hold anything
    # one scored token under uniform logits: log(1/4)
    assert close(scoring.response_logps(logits, labels, torch.tensor([[0, 0, 1]])), [math.log(0.25)])


def test_noise_flags_batch_quantile():
    # empty history: the window is the batch [0.5, −1, 2, 0]; its 0.5-quantile (linear) is (0 + 0.5)/2 = 0.25;
    # strictly below it: −1 and 0
    flags, history = noise.noise_flags(torch.tensor([0.5, -1.0, 2.0, 0.0]), torch.empty(0), 0.5)
    assert flags.tolist() == [False, True, False, True]
    assert close(history, [0.5, -1.0, 2.0, 0.0])


def test_noise_flags_rolling_window():
    # window 4, history [10, 20, 30], batch [1, 2]: the quantile pool is the last 2 earlier values plus the batch,
    # [20, 30, 1, 2]; its median is (2 + 20)/2 = 11, so both batch values are flagged.
    # The new history keeps the last 4 values seen: [20, 30, 1, 2].
    flags, history = noise.noise_flags(torch.tensor([1.0, 2.0]), torch.tensor([10.0, 20.0, 30.0]), 0.5, window=4)
    assert flags.tolist() == [True, True]
    assert close(history, [20.0, 30.0, 1.0, 2.0])
    # with a window of 2 the pool is the batch alone: median 1.5, only 1 is flagged
    flags, _ = noise.noise_flags(torch.tensor([1.0, 2.0]), torch.tensor([10.0, 20.0, 30.0]), 0.5, window=2)
    assert flags.tolist() == [True, False]


def test_noise_flags_single_value_flags_nothing():
    flags, _ = noise.noise_flags(torch.tensor([-3.0]), torch.empty(0), 0.1)
    assert flags.tolist() == [False]


def test_noise_flags_trusted_neither_flagged_nor_in_the_window():
    # trusted −5 is left out: candidates [1, 2, 3], median 2, so only 1 is flagged; history holds the candidates only
    flags, history = noise.noise_flags(
        torch.tensor([-5.0, 1.0, 2.0, 3.0]), torch.empty(0), 0.5, trusted=torch.tensor([True, False, False, False])
    )
    assert flags.tolist() == [False, True, False, False]
    assert close(history, [1.0, 2.0, 3.0])


def test_flagged_fraction_is_about_k_on_a_long_stream():
    gen = torch.Generator().manual_seed(0)
    history, flagged, seen = torch.empty(0), 0, 0
    for _ in range(2500):
        batch = torch.randn(8, generator=gen)
        flags, history = noise.noise_flags(batch, history, 0.1, window=50)
        flagged += int(flags.sum())
        seen += len(batch)
        assert len(history) <= 50
    assert abs(flagged / seen - 0.1) < 0.01


def test_noise_flags_rejects_bad_settings():
    with pytest.raises(ValueError):
        noise.noise_flags(torch.zeros(2), torch.empty(0), 1.5)
    with pytest.raises(ValueError):
        noise.noise_flags(torch.zeros(2), torch.empty(0), 0.1, window=0)


def test_soft_labels_after_warmup():
    # flagged & untrusted → 1 − 0.1 = 0.9; flagged but trusted → 1; unflagged → 1 (step 5 ≥ 0.2·10 = 2)
    y = loss.soft_labels(torch.tensor([True, True, False]), torch.tensor([False, True, False]), 0.1, 5, 10, 0.2)
    assert close(y, [0.9, 1.0, 1.0])


def test_warmup_turns_alpha_off():
    flags, trusted = torch.tensor([True, True]), torch.tensor([False, False])
    # steps 0 and 1 are below 0.2·10 = 2: α_eff = 0
    assert close(loss.soft_labels(flags, trusted, 0.1, 0, 10, 0.2), [1.0, 1.0])
    assert close(loss.soft_labels(flags, trusted, 0.1, 1, 10, 0.2), [1.0, 1.0])
    # from step 2 on: α_eff = α
    assert close(loss.soft_labels(flags, trusted, 0.1, 2, 10, 0.2), [0.9, 0.9])


def test_trusted_never_smoothed():
    y = loss.soft_labels(torch.tensor([True, True]), torch.tensor([True, True]), 0.5, 100, 10, 0.0)
    assert close(y, [1.0, 1.0])


def test_self_refinement_loss_by_hand():
    # h = 2, β = 0.1, ỹ = 0.9:
    # L = −0.9·log σ(0.2) − 0.1·log σ(−0.2) = 0.9·log(1 + e^−0.2) + 0.1·log(1 + e^0.2)
    #   = 0.9·0.5981389 + 0.1·0.7981389 = 0.6181389
    expected = 0.9 * math.log(1 + math.exp(-0.2)) + 0.1 * math.log(1 + math.exp(0.2))
    per_pair = loss.self_refinement_loss(torch.tensor([2.0]), 0.1, torch.tensor([0.9]))
    assert close(per_pair, [expected])
    assert close(per_pair, [0.6181388694], tol=1e-7)


def test_self_refinement_loss_with_hard_label_is_sigmoid_dpo():
    # ỹ = 1: L = −log σ(β·h) = log(1 + e^−0.2) = 0.5981389 for h = 2, β = 0.1; and for h = −1: log(1 + e^0.1)
    per_pair = loss.self_refinement_loss(torch.tensor([2.0, -1.0]), 0.1, torch.tensor([1.0, 1.0]))
    assert close(per_pair, [math.log(1 + math.exp(-0.2)), math.log(1 + math.exp(0.1))])


def test_self_refinement_loss_is_stable_for_large_margins():
    # β·h = 10⁴, ỹ = 0.9: −0.9·log σ(10⁴) ≈ 0 and −0.1·log σ(−10⁴) = 0.1·10⁴ = 1000
    per_pair = loss.self_refinement_loss(torch.tensor([1e4]), 1.0, torch.tensor([0.9]))
    assert torch.isfinite(per_pair).all() and close(per_pair, [1000.0], tol=1e-3)
