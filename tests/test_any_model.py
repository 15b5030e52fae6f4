"""The run is not tied to the demo world: a differently shaped model (GPT-2: absolute positions, Conv1D
layers, no chat template) and a user's TRL-format JSONL go through `launch.py run` for one round."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from engine.worlds.toy_model import char_tokenizer
from storage import Store

REPO = Path(__file__).resolve().parents[1]


def gpt2_dir(out: Path) -> Path:
    tok = char_tokenizer(chat_template=None)
    torch.manual_seed(3)
    config = GPT2Config(
        vocab_size=len(tok),
        n_embd=48,
        n_layer=3,
        n_head=3,
        n_positions=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_one_round_on_a_gpt2_and_trl_jsonl(tmp_path):
    rng = random.Random(0)
    words = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree"]
    ask = lambda: f"say {rng.choice(words)} {rng.choice(words)}"  # noqa: E731
    model = gpt2_dir(tmp_path / "gpt2")
    seed = write_jsonl(
        tmp_path / "seed.jsonl",
        [{"prompt": ask(), "chosen": rng.choice(words), "rejected": rng.choice(words) + "!!"} for _ in range(12)],
    )
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"prompt": f"{ask()} {i}"} for i in range(24)])
    evals = write_jsonl(
        tmp_path / "eval.jsonl", [{"prompt": ask(), "chosen": rng.choice(words), "rejected": "??"} for _ in range(6)]
    )
    out = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(f"""
project: gpt2
model: {model}
seed_data: {seed}
prompt_pool: {pool}
eval_data: {evals}
output_dir: {out}
rounds: 1
prompts_per_round: 24
learning_rate: 1.0e-3
epochs: 1
batch_size: 8
generation: {{max_new_tokens: 6, batch_size: 8, temperature: 1.0}}
judge: {{batch_size: 8}}
train: {{micro_batch_size: 4}}
eval: {{max_prompts: 6}}
""")
    db = tmp_path / "gpt2.db"
    result = subprocess.run(
        [sys.executable, "launch.py", "run", str(config), "--db", str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| round |" in result.stdout

    store = Store(db)
    job = store.jobs()[0]
    assert job.status == "done"
    pairs = store.pairs(job.id, 1)
    assert pairs and all(p.response_a != p.response_b for p in pairs)
    for p in pairs:
        assert None not in (p.logp_policy_a, p.logp_policy_b, p.logp_init_a, p.logp_init_b, p.confidence)
        assert p.label in ("a", "b") and p.label_source == "self" and 0.5 <= p.confidence <= 1.0
        assert p.noisy is not None and p.ext_margin is not None
    names = {m.name for m in store.metrics(job.id)}
    assert {"eval/judge_accuracy", "eval/reward_margin", "train/loss"} <= names

    final = AutoModelForCausalLM.from_pretrained(out / "final")
    base = AutoModelForCausalLM.from_pretrained(model)
    assert isinstance(final, GPT2LMHeadModel)
    assert any(not torch.equal(a, b) for a, b in zip(final.state_dict().values(), base.state_dict().values()))

    # the side-by-side eval answers carry the round's judge score of each answer, β·(logp π_1 − logp π_init),
    # for its own answer and π_init's: recomputed here from the final (round 1) model and the base
    from transformers import AutoTokenizer

    from engine.method.scoring import sequence_logps

    answers = json.loads((out / "eval_answers_round_1.json").read_text())
    tok = AutoTokenizer.from_pretrained(out / "final")
    texts = answers["texts"] + answers["init_texts"]
    prompts = answers["prompts"] * 2
    expected = [
        0.1 * (f - b)
        for f, b in zip(sequence_logps(final, tok, prompts, texts), sequence_logps(base, tok, prompts, texts))
    ]
    assert len(answers["judge"]) == len(answers["init_judge"]) == 6 and answers["judge_beta"] == 0.1
    assert answers["judge"] + answers["init_judge"] == pytest.approx(expected, abs=1e-3)
    assert json.loads((out / "eval_answers_round_0.json").read_text())["judge"] is not None
