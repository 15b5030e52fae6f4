"""Shared pytest fixtures."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from engine.worlds.toy_model import char_tokenizer, save_toy_model
from storage import Store

# The test models are tiny: extra intra-op threads buy nothing and, on a shared 2-core machine, spin-waiting
# threads make a forward pass up to 100x slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random toy Llama and its character tokenizer with a chat template, saved once per test session."""
    return save_toy_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_gpt2():
    """A random GPT-2 over the toy tokenizer's vocabulary, in eval mode. Its position embeddings are absolute,
    so it shows padding mistakes that RoPE models (the toy Llama) are blind to: RoPE ignores a constant shift."""
    tok = char_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium (tests.browser), one per test module; the test is skipped where it is not installed."""
    from tests.browser import CHROMIUM, chromium

    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM}")
    with chromium() as b:
        yield b


@pytest.fixture(scope="session")
def random_lora():
    """wrap(base, std): the model under a rank-4 LoRA with a random B, so the policy differs from its base."""
    from engine.config import LoraConfig
    from engine.method import models

    def wrap(base, std: float):
        peft_model = models.with_lora(base, LoraConfig(r=4, alpha=8, dropout=0.0))
        torch.manual_seed(0)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=std)
        return peft_model

    return wrap


# a module that starts a live studio as its `studio` fixture gets a gradio_client and a Store on its database
@pytest.fixture(scope="module")
def client(studio):
    from gradio_client import Client

    return Client(studio.url, verbose=False)


@pytest.fixture
def store(studio):
    s = Store(studio.db)
    yield s
    s.close()
