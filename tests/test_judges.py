"""The judges beside SPA's own (engine.method.baseline_judges) and the judge-eval command, on tiny local models."""

from __future__ import annotations

import argparse
import string
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from engine.config import GenerationConfig, JudgeConfig, RunConfig, parse_config
from engine.method.baseline_judges import (
    DensityRatioJudge,
    LLMJudge,
    RewardModelJudge,
    answer_tokens,
    first_distinct_pair,
    load_reward_model,
    route_domain,
    select_pairs,
)
from engine.method.encoding import prompt_ids, response_ids
from engine.runtime.judge_setup import make_external_judge, pair_selector
from engine.worlds.toy_model import char_tokenizer, random_llama

HH_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-test.jsonl.gz"


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


PROMPTS = [user("add: 47+8"), user("sort: 7 2 9 4"), user("reverse: abcde")]
ANSWERS_A = ["55", "2 4 7 9", "edcba"]
ANSWERS_B = ["54 and more", "2 4 9 7", "edc"]


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


@pytest.fixture(scope="module")
def strong(tok):
    return random_llama(len(tok), hidden=32, layers=2, heads=2, seed=1).eval()


@pytest.fixture(scope="module")
def weak(tok):
    return random_llama(len(tok), hidden=32, layers=2, heads=2, seed=2).eval()


def direct_logp(model, tok, prompt, response) -> float:
    """logp(model, x, y) by hand: one unpadded forward, log_softmax, gather the response tokens, sum."""
    p, r = prompt_ids(tok, prompt), response_ids(tok, response)
    with torch.no_grad():
        logits = model(torch.tensor([p + r])).logits[0].double()
    token_logps = torch.log_softmax(logits, -1)[len(p) - 1 : -1].gather(-1, torch.tensor(r)[:, None])
    return float(token_logps.sum())


def test_density_ratio_is_the_difference_of_log_probs(strong, weak, tok):
    judge = DensityRatioJudge(strong, weak, tok, batch_size=2)
    prefs = judge.judge(PROMPTS, ANSWERS_A, ANSWERS_B)
    for pref, p, a, b in zip(prefs, PROMPTS, ANSWERS_A, ANSWERS_B):
        ra = direct_logp(strong, tok, p, a) - direct_logp(weak, tok, p, a)
        rb = direct_logp(strong, tok, p, b) - direct_logp(weak, tok, p, b)
        assert pref.score_a == pytest.approx(ra, abs=1e-3)
        assert pref.score_b == pytest.approx(rb, abs=1e-3)
        assert pref.a_preferred == (ra > rb)
        assert pref.margin == pytest.approx(abs(ra - rb), abs=1e-3)
    assert not hasattr(judge, "beta")  # Dr.SoW's ratio has no β: logp(strong) − logp(weak)


def test_density_ratio_prepends_the_routed_system_prompt(strong, weak, tok):
    systems = {"safety": "Be safe.", "reasoning": "Think step by step."}
    judge = DensityRatioJudge(strong, weak, tok, system_prompts=systems)
    prompts = [user("what is 12 + 30?"), user("how do I build a bomb"), user("tell me about your day")]
    shown = [judge.with_system_prompt(p) for p in prompts]
    assert shown[0][0] == {"role": "system", "content": "Think step by step."}
    assert shown[1][0] == {"role": "system", "content": "Be safe."}
    assert shown[2] == prompts[2]  # chat has no system prompt configured here
    own = [{"role": "system", "content": "mine"}] + user("what is 12 + 30?")
    assert judge.with_system_prompt(own) == own  # a conversation's own system message wins
    r = judge.rewards(prompts, ["42", "no", "fine"])
    expected = [
        direct_logp(strong, tok, s, y) - direct_logp(weak, tok, s, y) for s, y in zip(shown, ["42", "no", "fine"])
    ]
    assert r.tolist() == pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match="unknown domains"):
        DensityRatioJudge(strong, weak, tok, system_prompts={"coding": "x"})


def test_best_of_n_picks_the_highest_and_a_different_random_one(strong, weak, tok):
    judge = DensityRatioJudge(strong, weak, tok, seed=3)
    prompts = [user(f"add: {i}+{i}") for i in range(12)]
    samples = [[str(2 * i), str(2 * i + 1), "x" * (i % 3 + 1), "no idea"] for i in range(12)]
    picks = judge.best_of_n(prompts, samples)
    rewards = judge.rewards([p for p, g in zip(prompts, samples) for _ in g], [s for g in samples for s in g])
    rewards = rewards.view(12, 4)
    for (chosen, rejected), row in zip(picks, rewards):
        assert chosen == int(row.argmax())
        assert rejected != chosen and 0 <= rejected < 4
    assert judge.best_of_n(prompts, samples) == picks  # seeded: reproducible
    assert len({r for _, r in picks}) > 1  # random, not always the lowest
    assert len({r for s in range(5) for _, r in judge.best_of_n(prompts[:1], samples[:1], seed=s)}) > 1
    with pytest.raises(ValueError, match="two samples"):
        judge.best_of_n(prompts[:1], [["only one"]])
    # the rejected answer is never a copy of the chosen one; all copies: no pair at all
    same = judge.best_of_n([user("x")] * 2, [["7", "7", "7"], ["7", "8", "7", "7"]])
    assert same[0] is None
    chosen, rejected = same[1]
    assert ["7", "8", "7", "7"][chosen] != ["7", "8", "7", "7"][rejected]


def test_select_pairs_is_best_of_n_only_with_a_selector_and_more_than_two(strong, weak, tok):
    assert first_distinct_pair(["a", "a", "b", "c"]) == (0, 2)
    assert first_distinct_pair(["a", "a"]) is None
    groups = [["1", "2", "3", "4"], ["9", "9", "9", "9"]]
    prompts = [user("add: 1+1"), user("add: 4+5")]
    assert select_pairs(prompts, groups) == [(0, 1), None]
    judge = DensityRatioJudge(strong, weak, tok, seed=5)
    assert select_pairs(prompts, groups, judge, seed=9) == judge.best_of_n(prompts, groups, seed=9)
    assert select_pairs(prompts, [["1", "2"], ["3", "3"]], judge) == [(0, 1), None]  # two samples: no choice


def test_only_runs_with_more_than_two_samples_select_pairs(tiny_model_dir, strong, weak, tok):
    from engine.method.judges import ImplicitRewardJudge
    from engine.method.models import Policy

    base = str(tiny_model_dir)
    dr = dict(kind="density_ratio", strong_model="base", weak_model=base)
    loaded = []

    def load():
        loaded.append(1)
        return Policy(strong, tok, init_model=weak)

    assert pair_selector(RunConfig(model=base, device="cpu"), base, load) is None
    assert pair_selector(RunConfig(model=base, device="cpu", judge=JudgeConfig(**dr)), base, load) is None
    four = GenerationConfig(samples_per_prompt=4)
    assert isinstance(
        pair_selector(RunConfig(model=base, device="cpu", judge=JudgeConfig(**dr), generation=four), base, load),
        DensityRatioJudge,
    )
    assert loaded == []  # a run that does not pick with the implicit judge never loads π_{i-1} for it
    implicit = pair_selector(
        RunConfig(model=base, device="cpu", beta=0.3, generation=four, judge=JudgeConfig(reference="none")), base, load
    )
    assert isinstance(implicit, ImplicitRewardJudge) and loaded == [1]
    assert (implicit.beta, implicit.reference, implicit.policy.model) == (0.3, "none", strong)
    with pytest.raises(ValueError, match="load_policy"):
        pair_selector(RunConfig(model=base, device="cpu", generation=four), base)
    gold_cfg = RunConfig(model=base, device="cpu", generation=four, judge=JudgeConfig(kind="gold"))
    with pytest.raises(ValueError, match="world has no gold reward"):
        pair_selector(gold_cfg, base, load)
    by_length = pair_selector(gold_cfg, base, load, gold=lambda prompt, y: -len(y))
    assert by_length.best_of_n([user("x"), user("y")], [["aa", "a", "aaa", "b"], ["c", "c", "c"]]) == [(1, 2), None]
    assert (
        pair_selector(
            RunConfig(
                model=base, device="cpu", generation=four, judge=JudgeConfig(kind="llm_judge", judge_model=base)
            ),
            base,
            load,
        )
        is None
    )


def test_spread_pair_is_the_highest_and_the_lowest_different_text():
    from engine.method.judges import spread_pair

    assert spread_pair(["a", "b", "c", "d"], [0.2, -1.0, 3.0, -1.0]) == (2, 1)  # ties: the first
    assert spread_pair(["a", "b", "a"], [5.0, 1.0, 0.5]) == (0, 1)  # the lowest is a copy of the chosen text
    assert spread_pair(["z", "z"], [1.0, 2.0]) is None


@pytest.mark.parametrize("reference", ["init", "none"])
def test_implicit_best_of_n_picks_by_the_judges_own_reward(strong, weak, tok, reference):
    """rewards() is judge()'s formula one response at a time; best_of_n keeps the max and the min, reusing
    sampled π_{i-1} log-probs where given."""
    from engine.method.judges import ImplicitRewardJudge
    from engine.method.models import Policy

    judge = ImplicitRewardJudge(Policy(strong, tok, init_model=weak), beta=0.1, batch_size=3, reference=reference)
    prompts = [user(f"add: {i}+{i}") for i in range(6)]
    samples = [[str(2 * i), str(2 * i + 1), "x" * (i % 3 + 1), "no idea"] for i in range(6)]

    def reward(p, y, pol=None):
        pol = direct_logp(strong, tok, p, y) if pol is None else pol
        return 0.1 * (pol - (direct_logp(weak, tok, p, y) if reference == "init" else 0.0))

    r = judge.rewards([prompts[0]] * 4, samples[0])
    assert r.tolist() == pytest.approx([reward(prompts[0], y) for y in samples[0]], abs=1e-5)
    pair = judge.judge([prompts[0]], [samples[0][0]], [samples[0][1]])[0]
    assert (pair.score_a, pair.score_b) == pytest.approx(r[:2].tolist(), abs=1e-6)
    given = [[None, -0.5, None, -40.0] for _ in samples]
    seen = []
    picks = judge.best_of_n(prompts, samples, given, progress=lambda done, total: seen.append((done, total)))
    scored = 12 + (24 if reference == "init" else 0)  # π_{i-1} for the 12 unsampled, π_init for all 24
    assert seen[-1] == (scored, scored) and all(t == scored for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # one count from 0 to the end, never restarting
    for p, group, (chosen, rejected), known in zip(prompts, samples, picks, given):
        expected = [reward(p, y, pol) for y, pol in zip(group, known)]
        assert expected[chosen] == pytest.approx(max(expected), abs=1e-5)
        assert expected[rejected] == pytest.approx(min(expected), abs=1e-5)
        assert rejected == 3  # the sampled −40 makes "no idea" the worst everywhere
    assert select_pairs(prompts, samples, judge, policy_logps=given) == picks
    with pytest.raises(ValueError, match="same length"):
        judge.rewards(prompts, ["x"] * 6, [None])


def test_llm_judge_is_symmetric_and_matches_direct_logits(strong, tok):
    judge = LLMJudge(strong, tok, batch_size=2)
    assert (judge.labels.first, judge.labels.second) == ("A", "B")
    ab = judge.judge(PROMPTS, ANSWERS_A, ANSWERS_B)
    ba = judge.judge(PROMPTS, ANSWERS_B, ANSWERS_A)
    for x, y in zip(ab, ba):
        assert x.score_a == pytest.approx(y.score_b, abs=1e-6)
        assert x.score_b == pytest.approx(y.score_a, abs=1e-6)
        assert x.score_a + x.score_b == pytest.approx(1.0)
    p_ab, p_ba = judge.order_probabilities(PROMPTS, ANSWERS_A, ANSWERS_B)
    first, second = judge.labels.first_id, judge.labels.second_id
    for i, (p, a, b) in enumerate(zip(PROMPTS, ANSWERS_A, ANSWERS_B)):
        with torch.no_grad():
            l_ab = strong(torch.tensor([prompt_ids(tok, judge.question(p, a, b))])).logits[0, -1].double()
            l_ba = strong(torch.tensor([prompt_ids(tok, judge.question(p, b, a))])).logits[0, -1].double()
        assert float(p_ab[i]) == pytest.approx(float(torch.sigmoid(l_ab[first] - l_ab[second])), abs=1e-5)
        assert float(p_ba[i]) == pytest.approx(float(torch.sigmoid(l_ba[second] - l_ba[first])), abs=1e-5)
        assert ab[i].score_a == pytest.approx((float(p_ab[i]) + float(p_ba[i])) / 2, abs=1e-9)
    assert "Response A" in judge.question(PROMPTS[0], "x", "y")[0]["content"]


def test_llm_judge_falls_back_to_digit_labels():
    digits_only = char_tokenizer(alphabet=string.digits + string.punctuation + " \nabc")
    labels = answer_tokens(digits_only)
    assert (labels.first, labels.second) == ("1", "2") and labels.first_id != labels.second_id


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory, tok):
    path = tmp_path_factory.mktemp("reward_model")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        num_labels=1,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    LlamaForSequenceClassification(config).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def test_reward_model_judge_scores_are_the_logits(reward_model_dir):
    model, tokenizer = load_reward_model(str(reward_model_dir), torch.device("cpu"), torch.float32)
    judge = RewardModelJudge(model, tokenizer, batch_size=4)
    prefs = judge.judge(PROMPTS, ANSWERS_A, ANSWERS_B)
    for pref, p, a, b in zip(prefs, PROMPTS, ANSWERS_A, ANSWERS_B):
        for score, answer in ((pref.score_a, a), (pref.score_b, b)):
            ids = tokenizer.apply_chat_template(
                p + [{"role": "assistant", "content": answer}], tokenize=True, return_dict=False
            )
            with torch.no_grad():
                logit = float(model(torch.tensor([list(ids)])).logits[0, 0])
            assert score == pytest.approx(logit, abs=1e-5)
        assert pref.a_preferred == (pref.score_a > pref.score_b)


def test_router_routes_hand_written_prompts():
    assert route_domain("How can I poison my neighbour's dog?") == "safety"
    assert route_domain("What's the best way to steal a car without getting caught?") == "safety"
    assert route_domain("Solve for x: 3x + 5 = 20") == "reasoning"
    assert route_domain("What is 17 * 23?") == "reasoning"
    assert route_domain("Write a Python function that reverses a list") == "reasoning"
    assert route_domain("Can you recommend a good book for a rainy afternoon?") == "chat"
    assert route_domain("hi, how are you today?") == "chat"
    assert route_domain("how do I hack my ex's email, step by step") == "safety"  # safety wins


def test_make_external_judge_builds_each_kind(tiny_model_dir, reward_model_dir):
    base = str(tiny_model_dir)

    def cfg(**judge) -> RunConfig:
        return RunConfig(model=base, device="cpu", judge=JudgeConfig(**judge))

    dr = make_external_judge(
        cfg(kind="density_ratio", strong_model="base", weak_model=base, system_prompts={"safety": "Be safe."}), base
    )
    assert isinstance(dr, DensityRatioJudge) and dr.system_prompts == {"safety": "Be safe."}
    rm = make_external_judge(cfg(kind="reward_model", reward_model=str(reward_model_dir)), base)
    assert isinstance(rm, RewardModelJudge)
    llm = make_external_judge(cfg(kind="llm_judge"), base)
    assert isinstance(llm, LLMJudge)
    for judge in (dr, rm, llm):
        prefs = judge.judge(PROMPTS[:1], ANSWERS_A[:1], ANSWERS_B[:1])
        assert len(prefs) == 1 and 0.5 <= prefs[0].confidence <= 1
    with pytest.raises(ValueError, match="not an external judge"):
        make_external_judge(cfg(kind="implicit"), base)


@pytest.mark.parametrize("kind", ["implicit", "gold", "density_ratio", "reward_model", "llm_judge"])
def test_every_judge_kind_validates_and_is_what_the_judge_stage_builds(kind, tiny_model_dir, reward_model_dir):
    """judge.kind from a YAML file through judge_from_config, the factory the judge stage calls."""
    from engine.method.judges import GoldJudge, ImplicitRewardJudge
    from engine.runtime.checkpoints import load_policy
    from engine.runtime.judge_setup import judge_from_config

    base = str(tiny_model_dir)
    model = "demo:model" if kind == "gold" else base  # the gold reward exists in the demo world only
    judge_keys = {
        "implicit": "\n  reference: none",
        "gold": "",
        "llm_judge": "",
        "density_ratio": f"\n  strong_model: base\n  weak_model: {base}",
        "reward_model": f"\n  reward_model: {reward_model_dir}",
    }[kind]
    cfg = parse_config(f"model: {model}\nrounds: 0\ndevice: cpu\njudge:\n  kind: {kind}{judge_keys}\n")
    policy = load_policy(cfg, base, Path("unused"), None) if kind == "implicit" else None
    judge = judge_from_config(cfg, base, lambda: policy)
    expected = {
        "implicit": ImplicitRewardJudge,
        "gold": GoldJudge,
        "density_ratio": DensityRatioJudge,
        "reward_model": RewardModelJudge,
        "llm_judge": LLMJudge,
    }[kind]
    assert isinstance(judge, expected) and judge.name == kind
    if kind == "implicit":
        assert judge.reference == "none"  # judge.reference reaches the judge the stage builds
    prompts = [user("sort: 3 1 2")]
    prefs = judge.judge(prompts, ["1 2 3"], ["3 2 1"])
    assert len(prefs) == 1 and 0.5 <= prefs[0].confidence <= 1
    if kind == "gold":
        assert prefs[0].a_preferred


def test_judge_kinds_that_need_models_say_so():
    for kind, key in (("density_ratio", "strong_model"), ("reward_model", "reward_model")):
        with pytest.raises(ValueError, match=key):
            parse_config(f"model: m\nrounds: 0\njudge:\n  kind: {kind}\n")
    with pytest.raises(ValueError, match="judge.kind"):
        parse_config("model: m\nrounds: 0\njudge:\n  kind: pairrm\n")


@pytest.fixture(scope="module")
def mini_world(tmp_path_factory):
    from engine.worlds.demo_world import WorldSize, build_demo_world

    return build_demo_world(tmp_path_factory.mktemp("mini_world"), size=WorldSize.mini(), progress=lambda *args: None)


def test_judge_eval_runs_on_a_mini_world_and_hh_pairs(mini_world, tmp_path, capsys):
    from engine.runtime.judge_eval import main

    if not HH_SAMPLE.is_file():
        pytest.skip(f"{HH_SAMPLE} is not here")
    out = tmp_path / "judge_eval.md"
    args = argparse.Namespace(data=None, judges=None, limit=20, demo_dir=str(mini_world.root), out=str(out))
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| judge | demo eval (n=8) | HH harmless (n=20) | pairs/s |" in printed
    for name in ("gold", "implicit", "implicit_no_ref", "density_ratio", "llm_judge", "reward_model"):
        assert f"| {name} |" in printed
    assert "| gold | 100.0% | n/a" in printed  # gold is exact on demo pairs and absent on HH
    assert "Pairwise agreement on HH harmless" in printed
    assert "| labels |" in printed.split("Length bias")[1] and "| implicit |" in printed.split("Length bias")[1]
    assert out.read_text().startswith("# Judge evaluation")
    assert f"({mini_world.fingerprint()})" in out.read_text()  # which draw of the world the figures came from


def test_judge_eval_takes_files_and_rejects_unknown_judges(mini_world, tmp_path, capsys):
    from engine.runtime.judge_eval import main

    args = argparse.Namespace(
        data=[str(mini_world.eval_file)],
        judges=["gold", "llm_judge"],
        limit=5,
        demo_dir=str(mini_world.root),
        out=str(tmp_path / "r.md"),
    )
    assert main(args) == 0
    assert "| gold | 100.0% |" in capsys.readouterr().out
    bad = argparse.Namespace(
        data=None, judges=["oracle"], limit=5, demo_dir=str(mini_world.root), out=str(tmp_path / "r.md")
    )
    assert main(bad) == 2
    assert "unknown judges" in capsys.readouterr().err


def test_length_bias_counts_only_pairs_of_different_length():
    from engine.runtime.judge_eval import DataSet, longer_share
    from storage.records import Example

    rows = [("long answer", "short"), ("a", "bbb"), ("same", "size"), ("xx", "y")]
    data = DataSet(
        "d", Path("d"), [Example(role="eval", prompt=user("p"), chosen=c, rejected=r) for c, r in rows], [True] * 4
    )
    assert longer_share(data) == pytest.approx(2 / 3)  # the labels: chosen is longer in 2 of 3
    assert longer_share(data, [False, False, True, False]) == pytest.approx(1 / 3)  # picks the rejected ones
    assert longer_share(DataSet("e", Path("e"), data.examples[2:3], [True])) is None


def test_implicit_judge_takes_sampled_policy_logps_and_scores_the_rest(strong, weak, tok):
    """r = β·[logp(π_{i-1}) − logp(π_init)]; π_{i-1}'s numbers given per pair (from sampling) are used as they
    are, a pair with a missing one gets its π_{i-1} forward pass."""
    from engine.method.judges import ImplicitRewardJudge
    from engine.method.models import Policy

    judge = ImplicitRewardJudge(Policy(strong, tok, init_model=weak), beta=0.1, batch_size=3)
    given = [(-1.5, -2.5), (None, -7.0), (None, None)]
    prefs = judge.judge(PROMPTS, ANSWERS_A, ANSWERS_B, policy_logps=given)
    for (ga, gb), pref, p, a, b in zip(given, prefs, PROMPTS, ANSWERS_A, ANSWERS_B):
        pol_a = ga if ga is not None and gb is not None else direct_logp(strong, tok, p, a)
        pol_b = gb if ga is not None and gb is not None else direct_logp(strong, tok, p, b)
        assert pref.logp_policy_a == pytest.approx(pol_a, abs=1e-4)
        assert pref.logp_policy_b == pytest.approx(pol_b, abs=1e-4)
        assert pref.score_a == pytest.approx(0.1 * (pol_a - direct_logp(weak, tok, p, a)), abs=1e-5)
        assert pref.score_b == pytest.approx(0.1 * (pol_b - direct_logp(weak, tok, p, b)), abs=1e-5)
    plain = judge.judge(PROMPTS, ANSWERS_A, ANSWERS_B)
    assert [x.score_a for x in plain[1:]] == pytest.approx([x.score_a for x in prefs[1:]], abs=1e-6)
    with pytest.raises(ValueError, match="2 policy log-prob pairs"):
        judge.judge(PROMPTS, ANSWERS_A, ANSWERS_B, policy_logps=given[:2])


def test_implicit_judge_without_reference_scores_beta_logp_and_still_stores_init(strong, weak, tok):
    """judge.reference: none (the authors' ablation): r = β·logp(π_{i-1}); π_init's log-probs are still stored."""
    from engine.method.judges import ImplicitRewardJudge
    from engine.method.models import Policy

    judge = ImplicitRewardJudge(Policy(strong, tok, init_model=weak), beta=0.1, batch_size=2, reference="none")
    for pref, p, a, b in zip(judge.judge(PROMPTS, ANSWERS_A, ANSWERS_B), PROMPTS, ANSWERS_A, ANSWERS_B):
        pol_a, pol_b = direct_logp(strong, tok, p, a), direct_logp(strong, tok, p, b)
        assert pref.score_a == pytest.approx(0.1 * pol_a, abs=1e-5)
        assert pref.score_b == pytest.approx(0.1 * pol_b, abs=1e-5)
        assert pref.a_preferred == (pol_a >= pol_b)
        assert pref.logp_init_a == pytest.approx(direct_logp(weak, tok, p, a), abs=1e-4)


def test_judge_reference_is_validated():
    from engine.config import ConfigError

    base = "model: m\nseed_data: s.jsonl\nprompt_pool: p.jsonl\n"
    assert parse_config(base + "judge:\n  reference: none\n", "c.yaml").judge.reference == "none"
    with pytest.raises(ConfigError, match="judge.reference"):
        parse_config(base + "judge:\n  reference: previous\n", "c.yaml")


def test_density_ratio_from_a_config_ignores_beta(strong, weak, tok, tmp_path):
    """The run's β scales SPA's implicit reward, never Dr.SoW's ratio: configs that differ only in β build
    density-ratio judges with the very same scores, logp(strong) − logp(weak)."""
    for name, model in (("strong", strong), ("weak", weak)):
        model.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    base = str(tmp_path / "strong")

    def scores(beta: float) -> list[float]:
        cfg = RunConfig(
            model=base,
            device="cpu",
            beta=beta,
            judge=JudgeConfig(kind="density_ratio", strong_model="base", weak_model=str(tmp_path / "weak")),
        )
        prefs = make_external_judge(cfg, base).judge(PROMPTS, ANSWERS_A, ANSWERS_B)
        return [s for p in prefs for s in (p.score_a, p.score_b)]

    direct = [
        direct_logp(strong, tok, p, y) - direct_logp(weak, tok, p, y)
        for p, a, b in zip(PROMPTS, ANSWERS_A, ANSWERS_B)
        for y in (a, b)
    ]
    assert scores(0.1) == scores(0.5)
    assert scores(0.1) == pytest.approx(direct, abs=1e-3)
