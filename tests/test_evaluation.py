"""engine.method.evaluation.round_pair_stats: what a round's judge did, pinned to hand-counted pairs."""

import pytest

from engine.method.evaluation import round_pair_stats
from storage import Pair


def pair(label, init_a, init_b, gold_a=None, gold_b=None, noisy=None, conf=0.6):
    return Pair(
        job_id=1,
        round=1,
        prompt=[{"role": "user", "content": "q"}],
        response_a="a",
        response_b="b",
        judge_label=label,
        label=label,
        logp_init_a=init_a,
        logp_init_b=init_b,
        gold_a=gold_a,
        gold_b=gold_b,
        noisy=noisy,
        confidence=conf,
    )


def test_counts_match_a_hand_worked_round():
    pairs = [
        pair(
            "a", -5.0, -2.0, gold_a=0.2, gold_b=0.9, noisy=True, conf=0.5
        ),  # chose less likely; gold: more likely; wrong
        pair(
            "b", -1.0, -4.0, gold_a=1.0, gold_b=0.3, noisy=False, conf=0.7
        ),  # chose less likely; gold: more likely; wrong
        pair("a", -1.0, -3.0, gold_a=0.6, gold_b=0.4, noisy=False, conf=0.9),  # chose more likely; right
        pair(
            "b", -2.0, -2.0, gold_a=0.1, gold_b=0.8, noisy=False, conf=0.8
        ),  # π_init ties: left out of both likelihood shares
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


@pytest.mark.parametrize("reference", ["init", "none"])
def test_judge_accuracy_is_the_share_the_configured_judge_gets_right(reference):
    """eval/judge_accuracy with the judge the rounds use: β·(logp π − logp π_init), or β·logp π alone."""
    from engine.method.evaluation import judge_accuracy
    from engine.method.models import Policy
    from engine.worlds.toy_model import char_tokenizer, random_llama
    from storage import Example
    from tests.test_judges import ANSWERS_A, ANSWERS_B, PROMPTS, direct_logp

    tok = char_tokenizer()
    policy = random_llama(len(tok), hidden=32, layers=2, heads=2, seed=1).eval()
    init = random_llama(len(tok), hidden=32, layers=2, heads=2, seed=2).eval()
    pairs = [Example(role="eval", prompt=p, chosen=a, rejected=b) for p, a, b in zip(PROMPTS, ANSWERS_A, ANSWERS_B)]

    def reward(p, y):
        return 0.1 * (direct_logp(policy, tok, p, y) - (direct_logp(init, tok, p, y) if reference == "init" else 0))

    margins = [reward(e.prompt, e.chosen) - reward(e.prompt, e.rejected) for e in pairs]
    got = judge_accuracy(Policy(policy, tok, init_model=init), pairs, beta=0.1, batch_size=2, reference=reference)
    assert got["eval/judge_accuracy"] == pytest.approx(sum(m > 0 for m in margins) / len(margins))
    assert got["eval/reward_margin"] == pytest.approx(sum(margins) / len(margins), abs=1e-5)


@pytest.mark.parametrize("reference", ["init", "none"])
def test_each_eval_answer_carries_the_rounds_judge_score_and_the_studio_shows_it_beside_gold(reference, tmp_path):
    """answer_rewards scores single answers as the judge does, r(x, y) = β·(logp π − logp π_init) (or β·logp π);
    the Insight tab's side-by-side view shows them beside gold, and still reads answers saved without them."""
    import json

    from app.insight_tab import compare_answers
    from engine.method.evaluation import AnswerScores, answer_rewards, save_answers
    from engine.method.models import Policy
    from engine.worlds.toy_model import char_tokenizer, random_llama
    from tests.test_judges import ANSWERS_A, ANSWERS_B, PROMPTS, direct_logp

    tok = char_tokenizer()
    policy = random_llama(len(tok), hidden=32, layers=2, heads=2, seed=1).eval()
    init = random_llama(len(tok), hidden=32, layers=2, heads=2, seed=2).eval()

    def reward(p, y):
        return 0.1 * (direct_logp(policy, tok, p, y) - (direct_logp(init, tok, p, y) if reference == "init" else 0))

    own, base = [reward(p, y) for p, y in zip(PROMPTS, ANSWERS_A)], [reward(p, y) for p, y in zip(PROMPTS, ANSWERS_B)]
    got = answer_rewards(
        Policy(policy, tok, init_model=init),
        PROMPTS * 2,
        ANSWERS_A + ANSWERS_B,
        beta=0.1,
        batch_size=2,
        reference=reference,
    )
    assert got == pytest.approx(own + base, abs=1e-5)

    path = tmp_path / "eval_answers_round_1.json"
    save_answers(
        path,
        PROMPTS,
        ANSWERS_A,
        ANSWERS_B,
        lambda p, y: len(y) / 10,
        AnswerScores(judge=got[:3], init_judge=got[3:], beta=0.1, reference=reference),
    )
    record = json.loads(path.read_text())
    frame, summary = compare_answers([(1, record)])
    cell = frame["round 1"][0]
    assert cell.startswith(ANSWERS_A[0]) and f"gold {len(ANSWERS_A[0]) / 10:.2f}" in cell
    assert f"judge {got[0]:+.3f} vs π_init's answer {got[3]:+.3f}" in cell
    assert "judge" not in frame["π_init"][0] and "gold" in frame["π_init"][0]
    assert "⟨" not in cell and "prompt-level strict" not in summary  # no checks saved: none shown (the demo world)
    wins = sum(a > b for a, b in zip(own, base))
    assert (
        f"round 1 {sum(got[:3]) / 3:+.3f} vs π_init's {sum(got[3:]) / 3:+.3f}, own answer preferred on {wins}/3"
        in summary
    )
    # answers evaluated before judge scores were recorded: gold only, and the summary says so
    older = {k: v for k, v in record.items() if not k.startswith(("judge", "init_judge"))}
    frame, summary = compare_answers([(1, older)])
    assert "judge" not in frame["round 1"][0] and "no judge scores recorded" in summary
