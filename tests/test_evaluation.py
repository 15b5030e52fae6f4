"""engine.evaluation.round_pair_stats: what a round's judge did, pinned to hand-counted pairs."""
import pytest

from engine.evaluation import round_pair_stats
from storage import Pair


def pair(label, init_a, init_b, gold_a=None, gold_b=None, noisy=None, conf=0.6):
    return Pair(job_id=1, round=1, prompt=[{"role": "user", "content": "q"}], response_a="a", response_b="b",
                judge_label=label, label=label, logp_init_a=init_a, logp_init_b=init_b, gold_a=gold_a,
                gold_b=gold_b, noisy=noisy, confidence=conf)


def test_counts_match_a_hand_worked_round():
    pairs = [
        pair("a", -5.0, -2.0, gold_a=0.2, gold_b=0.9, noisy=True, conf=0.5),   # chose less likely; gold: more likely; wrong
        pair("b", -1.0, -4.0, gold_a=1.0, gold_b=0.3, noisy=False, conf=0.7),  # chose less likely; gold: more likely; wrong
        pair("a", -1.0, -3.0, gold_a=0.6, gold_b=0.4, noisy=False, conf=0.9),  # chose more likely; right
        pair("b", -2.0, -2.0, gold_a=0.1, gold_b=0.8, noisy=False, conf=0.8),  # π_init ties: left out of both likelihood shares
        pair("a", -3.0, -1.0, gold_a=0.5, gold_b=0.5, noisy=False, conf=0.6),  # chose less likely; gold ties
    ]
    stats = round_pair_stats(pairs)
    assert stats["round/pairs"] == 5
    assert stats["round/flagged_fraction"] == pytest.approx(1 / 5)
    assert stats["round/mean_confidence"] == pytest.approx((0.5 + 0.7 + 0.9 + 0.8 + 0.6) / 5)
    assert stats["round/chose_less_likely"] == pytest.approx(3 / 4)
    assert stats["round/self_label_accuracy"] == pytest.approx(2 / 4)  # pairs 3 and 4 right of the four gold decides
    assert stats["round/gold_prefers_less_likely"] == pytest.approx(0 / 3)
    assert stats["round/flagged_label_accuracy"] == 0.0


def test_no_gold_and_no_init_logps_leave_their_shares_out():
    stats = round_pair_stats([pair("a", None, None), pair("b", -1.0, -2.0)])
    assert stats["round/chose_less_likely"] == 1.0
    assert "round/self_label_accuracy" not in stats and "round/gold_prefers_less_likely" not in stats
    assert round_pair_stats([]) == {"round/pairs": 0}
