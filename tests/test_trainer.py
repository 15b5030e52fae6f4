"""The noise-aware DPO trainer against direct computations on tiny random models."""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import TrainerCallback

from engine.config import RunConfig
from engine.method import scoring
from engine.method.encoding import prompt_ids, response_ids
from engine.method.preference_data import encode_rows
from engine.method.trainer import (
    TRL_REF_ADAPTER,
    RefineSettings,
    TrainRow,
    TrainSettings,
    dpo_config,
    make_trainer,
    train_dpo,
)
from engine.worlds.toy_model import char_tokenizer, random_llama

TOK = char_tokenizer()
BETA = 0.1
REQUIRED_LOGS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "noise/flagged_fraction",
    "grad_norm",
    "learning_rate",
)


def lora_model(seed: int = 0, spread: float = 0.0):
    """A toy Llama with LoRA on q/v. spread > 0 draws LoRA B at random, so the policy differs from the base."""
    model = get_peft_model(
        random_llama(len(TOK), seed=seed),
        LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]),
    )
    if spread:
        perturb(model, "default", spread, seed)
    return model


def perturb(model, adapter: str, spread: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if f"lora_B.{adapter}." in name:
                p.add_(torch.randn(p.shape, generator=gen) * spread)


def make_rows(n: int, seed: int = 0, trusted_every: int = 0) -> list[TrainRow]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz "

    def text(lo, hi):
        return "".join(rng.choice(letters) for _ in range(rng.randint(lo, hi)))

    return [
        TrainRow(
            pair_id=100 + i,
            prompt=[{"role": "user", "content": text(1, 12)}],
            chosen=text(1, 15),
            rejected=text(0, 15),
            trusted=bool(trusted_every) and i % trusted_every == 0,
        )
        for i in range(n)
    ]


def settings(**kw) -> TrainSettings:
    base = dict(
        beta=BETA,
        learning_rate=1e-3,
        epochs=1,
        batch_size=4,
        micro_batch_size=4,
        lr_scheduler="cosine",
        warmup_ratio=0.0,
        seed=0,
        bf16=False,
        gradient_checkpointing=False,
        group_by_length=False,
    )
    return TrainSettings(**{**base, **kw})


@torch.no_grad()
def direct_logits(model, tokenizer, row: TrainRow, response: str):
    """Logits of one unpadded prompt+response sequence, and the response positions (the logits that predict it)."""
    p, r = prompt_ids(tokenizer, row.prompt), response_ids(tokenizer, response)
    logits = model(input_ids=torch.tensor([p + r])).logits[0].float()
    return logits, torch.arange(len(p) - 1, len(p) + len(r) - 1), torch.tensor(r)


def logp_from_logits(logits, positions, targets) -> float:
    return logits.log_softmax(-1)[positions, targets].double().sum().item()


def direct_logp(model, tokenizer, row: TrainRow, response: str) -> float:
    """Σ log-softmax over the response tokens of prompt_ids + response_ids, one sequence, no padding."""
    return logp_from_logits(*direct_logits(model, tokenizer, row, response))


def direct_pairs(model, tokenizer, rows) -> tuple[list[float], list[float]]:
    return (
        [direct_logp(model, tokenizer, r, r.chosen) for r in rows],
        [direct_logp(model, tokenizer, r, r.rejected) for r in rows],
    )


def margins_against_init(model, rows) -> list[float]:
    """h per row, directly: [logp_θ(y_w) − logp_init(y_w)] − [logp_θ(y_l) − logp_init(y_l)], π_init = adapters off."""
    pol_c, pol_r = direct_pairs(model, TOK, rows)
    with model.disable_adapter():
        ref_c, ref_r = direct_pairs(model, TOK, rows)
    return [(pc - rc) - (pr - rr) for pc, pr, rc, rr in zip(pol_c, pol_r, ref_c, ref_r)]


def first_batch(trainer, n: int):
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


def hand_loss(h: float, y: float) -> float:
    """−ỹ·log σ(β·h) − (1 − ỹ)·log σ(−β·h) = ỹ·log(1 + e^(−βh)) + (1 − ỹ)·log(1 + e^(βh))."""
    return y * math.log1p(math.exp(-BETA * h)) + (1 - y) * math.log1p(math.exp(BETA * h))


# log-probs ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["lora_llama", "full_gpt2"])
def test_step0_policy_logps_equal_direct_computation(architecture, tiny_gpt2):
    rows = make_rows(6, seed=1)
    if architecture == "lora_llama":
        model, kw = lora_model(spread=0.3), dict(reference="adapters_disabled")
    else:  # absolute positions: a padding or position-id mistake would show here
        model, kw = copy.deepcopy(tiny_gpt2), dict(reference="model", ref_model=copy.deepcopy(tiny_gpt2))
    trainer = make_trainer(model, TOK, rows, settings(micro_batch_size=6), None, **kw)
    model.train()
    with torch.no_grad():
        logps = trainer.response_forward(trainer.model, first_batch(trainer, 6)).logps.tolist()
    model.eval()
    chosen, rejected = direct_pairs(model, TOK, rows)
    assert max(abs(a - b) for a, b in zip(logps, chosen + rejected)) < 1e-4
    # and the judge's scorer gives the same numbers the trainer trains on
    judge_c, _ = scoring.pair_logps(
        model, TOK, [r.prompt for r in rows], [r.chosen for r in rows], [r.rejected for r in rows]
    )
    assert max(abs(a - b) for a, b in zip(judge_c, logps[:6])) < 1e-4


@pytest.mark.parametrize("architecture", ["lora_llama", "full_gpt2"])
def test_prompt_run_once_gives_the_concatenated_loss_and_gradients(architecture, tiny_gpt2):
    """One process runs each prompt once and both responses on its KV cache (gradients through the cache);
    multi-process runs concatenated sequences. Same log-probs, noise margins, loss and gradients."""
    rows = make_rows(6, seed=11)
    if architecture == "lora_llama":
        model, kw = lora_model(spread=0.3), dict(reference="adapters_disabled")
    else:  # the policy moved away from its reference, so the noise flags are not decided by rounding
        model, kw = copy.deepcopy(tiny_gpt2), dict(reference="model", ref_model=copy.deepcopy(tiny_gpt2))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    refine = RefineSettings(k_fraction=0.5, lam=0.5, warmup_fraction=0.0)
    results = []
    for share in (True, False):
        trainer = make_trainer(model, TOK, rows, settings(micro_batch_size=6), refine, **kw)
        assert trainer.share_prompts  # one process, no gradient checkpointing
        trainer.share_prompts = share
        trainer.state.global_step, trainer.state.max_steps = 5, 10
        model.train()
        model.zero_grad()
        batch = first_batch(trainer, 6)
        loss = trainer.compute_loss(trainer.model, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        with torch.no_grad():
            logps = trainer.response_forward(trainer.model, batch).logps
        results.append((loss.item(), logps, grads, [n.ext_margin for n in trainer.noise]))
    model.zero_grad()
    (loss_a, logps_a, grads_a, noise_a), (loss_b, logps_b, grads_b, noise_b) = results
    assert abs(loss_a - loss_b) < 1e-6
    assert torch.allclose(logps_a, logps_b, atol=1e-4)
    assert noise_a == pytest.approx(noise_b, abs=1e-5)
    assert grads_a.keys() == grads_b.keys() and max(g.abs().max().item() for g in grads_a.values()) > 1e-4
    assert all(torch.allclose(grads_a[n], grads_b[n], atol=1e-6, rtol=1e-4) for n in grads_a)


def test_a_model_without_a_cache_trains_on_whole_sequences():
    from tests.test_scoring import NoCacheModel

    rows = make_rows(4, seed=12)
    model = lora_model(spread=0.3)
    trainer = make_trainer(model, TOK, rows, settings(), None)
    batch = first_batch(trainer, 4)
    with torch.no_grad():
        expected = trainer.response_forward(model, batch).logps
        got = trainer.response_forward(NoCacheModel(model), batch).logps
    assert not trainer.share_prompts and torch.allclose(got, expected, atol=1e-4)


def test_encode_rows_uses_engine_encoding_and_truncation_drops_stored_logps():
    rows = make_rows(3, seed=2)
    rows[0].ref_chosen_logp, rows[0].ref_rejected_logp = -1.0, -2.0
    data = encode_rows(TOK, rows)
    assert data[0]["prompt_ids"] == prompt_ids(TOK, rows[0].prompt)
    assert data[0]["chosen_ids"] == response_ids(TOK, rows[0].chosen)
    assert (data[0]["ref_chosen_logps"], data[0]["ref_rejected_logps"]) == (-1.0, -2.0)
    assert math.isnan(data[1]["ref_chosen_logps"])
    row = TrainRow(
        pair_id=1,
        prompt=[{"role": "user", "content": "hi"}],
        chosen="x" * 40,
        rejected="y",
        ref_chosen_logp=-5.0,
        ref_rejected_logp=-1.0,
    )
    limit = len(prompt_ids(TOK, row.prompt)) + 10
    cut = encode_rows(TOK, [row], max_length=limit)[0]
    assert len(cut["prompt_ids"]) + len(cut["chosen_ids"]) == limit
    assert math.isnan(cut["ref_chosen_logps"]) and math.isnan(cut["ref_rejected_logps"])


# the loss ----------------------------------------------------------------------------------------------------------


def test_batch_loss_equals_hand_computed_self_refinement_loss():
    rows = make_rows(4, seed=3)
    model = lora_model(spread=0.5)
    refine = RefineSettings(k_fraction=0.5, alpha=0.1, lam=0.0, warmup_fraction=0.0)
    trainer = make_trainer(model, TOK, rows, settings(), refine, reference="adapters_disabled")
    trainer.state.global_step, trainer.state.max_steps = 5, 10
    model.train()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, first_batch(trainer, 4)).item()
    model.eval()
    h = margins_against_init(model, rows)
    # k = 0.5 over 4 values, empty history: the median lies between the 2nd and 3rd lowest β·h, so the two lowest
    # pairs are flagged and get ỹ = 1 − 0.1 = 0.9; the others keep ỹ = 1.
    lowest = sorted(range(4), key=lambda i: h[i])[:2]
    y = [0.9 if i in lowest else 1.0 for i in range(4)]
    expected = sum(hand_loss(hi, yi) for hi, yi in zip(h, y)) / 4
    assert abs(loss - expected) < 1e-4
    noise = {n.pair_id: n for n in trainer.noise}
    assert {pid for pid, n in noise.items() if n.noisy} == {rows[i].pair_id for i in lowest}
    assert all(abs(noise[r.pair_id].ext_margin - BETA * hi) < 1e-4 for r, hi in zip(rows, h))


def test_flags_raised_during_the_warmup_are_marked_and_change_no_label():
    """α = 0 for the first warmup_fraction of the steps: the detector still flags (so the flag is recorded), but
    ỹ stays 1 and the flag is marked warm-up; past the warm-up the same flags smooth the labels."""
    rows = make_rows(4, seed=3)
    model = lora_model(spread=0.5)
    refine = RefineSettings(k_fraction=0.5, alpha=0.1, lam=0.0, warmup_fraction=0.5)
    model.eval()
    h = margins_against_init(model, rows)
    lowest = sorted(range(4), key=lambda i: h[i])[:2]
    for step, warm in ((4, True), (5, False)):  # 5 of 10 steps is where a 0.5 warm-up ends
        trainer = make_trainer(model, TOK, rows, settings(), refine, reference="adapters_disabled")
        trainer.state.global_step, trainer.state.max_steps = step, 10
        model.train()
        with torch.no_grad():
            loss = trainer.compute_loss(trainer.model, first_batch(trainer, 4)).item()
        y = [1.0 if warm or i not in lowest else 0.9 for i in range(4)]
        assert abs(loss - sum(hand_loss(hi, yi) for hi, yi in zip(h, y)) / 4) < 1e-4
        noise = {n.pair_id: n for n in trainer.noise}
        assert {pid for pid, n in noise.items() if n.noisy} == {rows[i].pair_id for i in lowest}
        assert {n.warmup for n in noise.values()} == {warm}


def test_extrapolated_margin_uses_reference_logits():
    rows = make_rows(4, seed=4)
    model = lora_model(spread=0.4)
    lam = 0.5
    refine = RefineSettings(k_fraction=0.25, lam=lam, warmup_fraction=0.0)
    trainer = make_trainer(model, TOK, rows, settings(), refine, reference="ref_adapter")  # TRL copies π_{i-1}
    perturb(model, "default", 0.4, seed=9)  # π_θ has moved away from π_{i-1}
    model.train()
    with torch.no_grad():
        trainer.compute_loss(trainer.model, first_batch(trainer, 4))
    model.eval()
    noise = {n.pair_id: n.ext_margin for n in trainer.noise}
    for row in rows:
        ext, ref = {}, {}
        for side in ("chosen", "rejected"):
            pol_logits, pos, tgt = direct_logits(model, TOK, row, getattr(row, side))
            model.set_adapter(TRL_REF_ADAPTER)
            ref_logits, _, _ = direct_logits(model, TOK, row, getattr(row, side))
            model.set_adapter("default")
            # logits_ḡ = (1 + λ)·logits_θ − λ·logits_ref, then log-softmax summed over the response
            ext[side] = logp_from_logits((1 + lam) * pol_logits - lam * ref_logits, pos, tgt)
            ref[side] = logp_from_logits(ref_logits, pos, tgt)
        expected = BETA * ((ext["chosen"] - ref["chosen"]) - (ext["rejected"] - ref["rejected"]))
        assert abs(noise[row.pair_id] - expected) < 1e-4


def test_stored_reference_logps_give_the_reference_forward_loss():
    rows = make_rows(5, seed=5)
    model = lora_model(spread=0.5)
    with model.disable_adapter():
        ref_c, ref_r = direct_pairs(model, TOK, rows)
    stored = [TrainRow(r.pair_id, r.prompt, r.chosen, r.rejected, c, j) for r, c, j in zip(rows, ref_c, ref_r)]
    with_forward = make_trainer(model, TOK, rows, settings(micro_batch_size=5), None)
    with_stored = make_trainer(model, TOK, stored, settings(micro_batch_size=5), None)
    calls = []
    with_stored.reference_forward = lambda inputs: calls.append(1)  # must not run: the stored values suffice
    model.train()
    with torch.no_grad():
        a = with_forward.compute_loss(model, first_batch(with_forward, 5)).item()
        b = with_stored.compute_loss(model, first_batch(with_stored, 5)).item()
    assert not calls
    assert abs(a - b) < 1e-5
    assert abs(a - math.log(2)) > 1e-3  # the policy differs from its reference, so the test has teeth


def test_lambda_needs_one_reference_forward_per_step_even_with_stored_logps():
    rows = make_rows(4, seed=6)
    model = lora_model(spread=0.5)
    with model.disable_adapter():
        ref_c, ref_r = direct_pairs(model, TOK, rows)
    stored = [TrainRow(r.pair_id, r.prompt, r.chosen, r.rejected, c, j) for r, c, j in zip(rows, ref_c, ref_r)]
    trainer = make_trainer(model, TOK, stored, settings(), RefineSettings(lam=0.5), reference="adapters_disabled")
    forward, calls = trainer.reference_forward, []
    trainer.reference_forward = lambda inputs: calls.append(1) or forward(inputs)
    model.train()
    with torch.no_grad():
        trainer.compute_loss(model, first_batch(trainer, 4))
    assert len(calls) == 1


def test_trusted_rows_never_flagged_nor_smoothed():
    rows = make_rows(4, seed=7)
    for r in rows:
        r.trusted = True
    model = lora_model(spread=0.5)
    refine = RefineSettings(k_fraction=0.9, alpha=0.5, lam=0.0, warmup_fraction=0.0)
    refined = make_trainer(model, TOK, rows, settings(), refine)
    plain = make_trainer(model, TOK, rows, settings(), None)
    refined.state.global_step, refined.state.max_steps = 5, 10
    model.train()
    with torch.no_grad():
        a = refined.compute_loss(model, first_batch(refined, 4)).item()
        b = plain.compute_loss(model, first_batch(plain, 4)).item()
    assert abs(a - b) < 1e-6  # ỹ = 1 for every trusted pair: plain sigmoid DPO
    assert refined.noise and not any(n.noisy for n in refined.noise)

    mixed = make_rows(16, seed=8, trusted_every=2)
    result = train_dpo(lora_model(spread=0.5), TOK, mixed, settings(), refine)
    flagged = {n.pair_id for n in result.noise if n.noisy}
    assert flagged, "k = 0.9 must flag some self-labelled pairs"
    assert not flagged & {r.pair_id for r in mixed if r.trusted}


# whole runs --------------------------------------------------------------------------------------------------------


class Logs(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_flagged_fraction_over_a_short_run_is_about_k():
    rows = make_rows(64, seed=9)
    model = lora_model(spread=0.4)
    logs = Logs()
    result = train_dpo(
        model,
        TOK,
        rows,
        settings(batch_size=8, micro_batch_size=8),
        RefineSettings(k_fraction=0.25, lam=0.5),
        reference="ref_adapter",
        callbacks=[logs],
    )
    assert result.steps == 8 and not result.stopped
    assert sorted(n.pair_id for n in result.noise) == sorted(r.pair_id for r in rows)
    assert abs(sum(n.noisy for n in result.noise) / len(rows) - 0.25) <= 0.1
    step_logs = [entry for entry in logs.logs if "loss" in entry]
    assert len(step_logs) == 8 and all(k in entry for entry in step_logs for k in REQUIRED_LOGS)
    assert result.metrics and all(k in result.metrics[0] for k in REQUIRED_LOGS)


class ReferenceAtEnd(TrainerCallback):
    """The reference adapter's weights as training ends (train_dpo deletes TRL's copy afterwards)."""

    def __init__(self, model):
        self.model, self.weights = model, {}

    def on_train_end(self, args, state, control, **kwargs):
        self.weights = {n: p.detach().clone() for n, p in self.model.named_parameters() if f".{TRL_REF_ADAPTER}." in n}


@pytest.mark.parametrize("reference", ["adapters_disabled", "ref_adapter"])
def test_lora_training_moves_the_adapter_and_widens_the_margin(reference):
    rows = make_rows(8, seed=10)
    model = lora_model(spread=0.0 if reference == "adapters_disabled" else 0.3)
    adapter = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    at_end = ReferenceAtEnd(model)
    prompts, chosen, rejected = [r.prompt for r in rows], [r.chosen for r in rows], [r.rejected for r in rows]

    def margin() -> float:
        c, r = scoring.pair_logps(model, TOK, prompts, chosen, rejected)
        return sum(c) / len(c) - sum(r) / len(r)

    before = margin()
    model.train()
    result = train_dpo(
        model,
        TOK,
        rows,
        settings(learning_rate=3e-2, epochs=6),
        RefineSettings(lam=0.5),
        reference=reference,
        callbacks=[at_end],
    )
    after = margin()
    assert result.steps == 12 and not result.stopped
    moved = {n for n, p in model.named_parameters() if n in adapter and not torch.equal(p, adapter[n])}
    assert any(".default." in n for n in moved)
    if reference == "ref_adapter":  # the reference is TRL's copy of the starting adapter, frozen all through
        assert at_end.weights and all(
            torch.equal(p, adapter[n.replace(f".{TRL_REF_ADAPTER}.", ".default.")]) for n, p in at_end.weights.items()
        )
    else:  # adapters off: TRL's copy was dropped as the trainer was built
        assert not at_end.weights
    assert TRL_REF_ADAPTER not in model.peft_config  # and it is not left behind
    assert after > before + 0.5
    assert "forward" not in vars(model.get_base_model())  # TRL's fused-head patch is undone


def test_a_callback_can_stop_training():
    class StopAfterOne(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = True
            return control

    result = train_dpo(lora_model(), TOK, make_rows(16, seed=11), settings(), None, callbacks=[StopAfterOne()])
    assert result.stopped and result.steps == 1


def test_batch_arithmetic_and_quiet_defaults():
    defaults = TrainSettings.for_round(RunConfig(model="m"), 0)  # effective batch 32, micro-batch 8
    args = dpo_config(defaults, n_rows=100, output_dir="unused")
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (8, 4)
    assert args.lr_scheduler_type == "cosine" and args.warmup_steps == 0.1
    assert args.save_strategy == "no" and args.report_to == [] and not args.remove_unused_columns
    assert not args.bf16 and not args.gradient_checkpointing
    small = dpo_config(defaults, n_rows=5, output_dir="unused")
    assert small.per_device_train_batch_size == 5


def test_group_by_length_batches_pairs_of_similar_length_and_keeps_every_pair():
    """transformers' LengthGroupedSampler on the `length` column: every pair once per epoch, with less padding."""
    rows = make_rows(64, seed=5)

    def batches(group: bool) -> list[list[int]]:
        trainer = make_trainer(lora_model(), TOK, rows, settings(group_by_length=group), None)
        return [b["pair_id"].tolist() for b in trainer.get_train_dataloader()]

    def padded_width(grouped: list[list[int]]) -> int:
        length = {
            r.pair_id: len(prompt_ids(TOK, r.prompt))
            + max(len(response_ids(TOK, r.chosen)), len(response_ids(TOK, r.rejected)))
            for r in rows
        }
        return sum(len(b) * max(length[i] for i in b) for b in grouped)

    grouped, shuffled = batches(True), batches(False)
    assert sorted(i for b in grouped for i in b) == sorted(r.pair_id for r in rows)
    assert padded_width(grouped) < 0.9 * padded_width(shuffled)


def test_reference_choice_is_checked(tiny_gpt2):
    rows = make_rows(2)
    with pytest.raises(ValueError, match="PEFT"):
        make_trainer(copy.deepcopy(tiny_gpt2), TOK, rows, settings(), None, reference="adapters_disabled")
    with pytest.raises(ValueError, match="ref_model"):
        make_trainer(copy.deepcopy(tiny_gpt2), TOK, rows, settings(), None, reference="model")
    with pytest.raises(ValueError, match="reference must be"):
        make_trainer(lora_model(), TOK, rows, settings(), None, reference="base")
