"""Noise-aware DPO (SPA's self-refinement, DESIGN.md section 1) as a small subclass of TRL 1.16's DPOTrainer.

TRL's `label_smoothing` is one global number (and ignored by the sigmoid loss), so the per-pair soft labels of
self-refinement need our own loss. How this hooks into TRL 1.16:

- `_prepare_dataset` is a no-op: rows arrive tokenised by method.encoding, the very ids the judge scored, so TRL's
  own extraction, EOS appending and chat-templating must not run (TRL 1.16 has no switch for a pre-tokenised set).
- A left-padding collator (the same layout as method.scoring) puts every response at the end of its row, so the
  model projects only the last (longest response + 1) positions onto the vocabulary (`logits_to_keep`). In one
  process the forward instead runs each prompt once and both answers on its KV cache (same logits, less work).
- `compute_loss` is replaced: one policy forward gives the response logits; their log-probs feed the loss and,
  detached, the de-coupled noise detection (extrapolated logits, rolling-window flags, soft labels). TRL's fused LM
  head returns log-probs only, and extrapolation needs the logits themselves, so it is not used.
- Reference log-probs: stored values (the judge's π_{i-1} log-probs) are used as they are; a reference forward runs
  only for rows without them, or, with λ > 0, to get the reference logits that extrapolation needs.
- The reference model is TRL's and PEFT's own: for a PEFT model passed without `ref_model`, TRL 1.16 copies the
  "default" adapter into a frozen one named "ref" when the trainer is built (π_{i-1} for a round, which starts from
  π_{i-1}'s saved adapter), and the reference forward switches to it with TRL's `use_adapter`; π_init is PEFT's
  `disable_adapter()` (the same `use_adapter` with no name). What stays ours, because TRL 1.16 lacks it: the choice
  between the two (TRL always takes its copy; its `ref_adapter_name` / `model_adapter_name` are gone), deleting
  the copy when adapters-off is the reference (it would cost memory for nothing), and handing the model back
  without it after training, so the same model can be trained again (TRL would refuse to add "ref" twice).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

import torch
from peft import PeftModel
from transformers import PrinterCallback, TrainerCallback
from trl import DPOConfig, DPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import use_adapter

from engine.config import RefineConfig, RunConfig, field_problems
from engine.method.loss import dpo_margin, in_warmup, self_refinement_loss, soft_labels
from engine.method.noise import extrapolated_logits, noise_flags
from engine.method.preference_data import LeftPaddedPreferenceCollator, TrainRow, encode_rows
from engine.method.scoring import (
    NoSharedPromptCache,
    accepts_logits_to_keep,
    response_logps,
    shared_prompt_logits,
)

logger = logging.getLogger(__name__)

Reference = Literal["adapters_disabled", "ref_adapter", "model"]
REFERENCES = get_args(Reference)
TRL_REF_ADAPTER = "ref"  # the frozen copy of "default" that TRL 1.16 adds to a PEFT model passed without ref_model


@dataclass
class RefineSettings(RefineConfig):
    """The run's refine configuration plus this round's λ: the defaults and range checks are the config's own
    (engine.config), stated once on its fields."""

    lam: float = field(default=0.5, metadata={"help": "this round's λ", "check": (lambda v: v >= 0, "at least 0")})

    def __post_init__(self):
        problems = field_problems(self)
        if problems:
            raise ValueError("; ".join(f"refine {key} {message}" for key, message in problems))

    @classmethod
    def for_round(cls, cfg: RunConfig, round_index: int) -> RefineSettings:
        return cls(**asdict(cfg.refine), lam=cfg.lam_for_round(round_index))


@dataclass
class TrainSettings:
    """One DPO training run's arguments (what TRL's DPOConfig gets). `for_round` builds them from the run
    configuration; the fields that come from it have no defaults here, so none can disagree with engine.config."""

    beta: float
    learning_rate: float
    epochs: int
    batch_size: int  # effective: micro_batch_size × gradient accumulation steps × processes
    micro_batch_size: int
    lr_scheduler: str
    warmup_ratio: float
    seed: int
    bf16: bool
    gradient_checkpointing: bool
    group_by_length: bool
    processes: int = 1  # data-parallel ranks; batch_size stays the effective batch over all of them
    output_dir: str = ""
    logging_steps: int = 1
    max_length: int | None = None

    @classmethod
    def for_round(cls, cfg: RunConfig, round_index: int, processes: int = 1) -> TrainSettings:
        """Round 0 is the seed round (epochs at learning_rate); rounds 1..T train round_epochs at their round's
        learning rate. Each round seeds its own run (cfg.seed + round_index); bf16 on a GPU unless dtype says
        otherwise."""
        return cls(
            beta=cfg.beta,
            learning_rate=cfg.learning_rate_for_round(round_index),
            epochs=cfg.epochs if round_index == 0 else cfg.round_epochs,
            batch_size=cfg.batch_size,
            micro_batch_size=cfg.train.micro_batch_size,
            lr_scheduler=cfg.lr_scheduler,
            warmup_ratio=cfg.warmup_ratio,
            seed=cfg.seed + round_index,
            bf16=torch.cuda.is_available() and cfg.dtype in ("auto", "bfloat16"),
            gradient_checkpointing=cfg.train.gradient_checkpointing,
            group_by_length=cfg.train.group_by_length,
            processes=processes,
        )


@dataclass
class PairNoise:
    pair_id: int
    ext_margin: float  # β·h_ḡ, the last value seen for this pair
    noisy: bool  # flagged; during the warm-up the flag changes nothing (ỹ stays 1)
    warmup: bool = False  # the flag was decided during the α = 0 warm-up


@dataclass
class TrainResult:
    noise: list[PairNoise]
    steps: int
    metrics: list[dict]
    stopped: bool
    state_dict: dict | None = None  # the gathered full weights when DeepSpeed ZeRO-3 or FSDP sharded them


@dataclass
class ScoredBatch:
    """Response logits of a batch (chosen rows, then rejected rows) with what `response_logps` needs."""

    logits: torch.Tensor  # (2B, K, V): the last K positions only
    labels: torch.Tensor  # (2B, K)
    mask: torch.Tensor  # (2B, K), 1 on response tokens
    logps: torch.Tensor  # (2B,)


# trainer ---------------------------------------------------------------------------------------------------------


class NoiseAwareDPOTrainer(DPOTrainer):
    """DPO with SPA's self-refinement: per-pair soft labels from de-coupled noise detection inside the step.

    Reference forwards and their cost: with stored reference log-probs and λ = 0 (or refinement off) a step runs the
    policy forward only. With λ > 0 the noise detection needs the reference LOGITS (logits_ḡ = (1+λ)·logits_θ −
    λ·logits_ref), which stored log-probs cannot give, so each step adds one no-grad reference forward for that
    purpose alone; the loss still uses the stored log-probs. λ = 0 means ḡ = θ and needs no reference at all.
    """

    def __init__(self, model, *, reference: Reference, refine: RefineSettings | None, ref_model=None, **kwargs):
        self.reference = reference
        self.refine = refine if refine is not None and refine.enabled else None
        super().__init__(model=model, ref_model=ref_model, **kwargs)
        self.ref_adapter = self._choose_reference_adapter()
        self._history = torch.empty(0, dtype=torch.float64)
        self._noise: dict[int, PairNoise] = {}
        self.share_prompts = self.accelerator.num_processes == 1 and not self.args.gradient_checkpointing

    @property
    def noise(self) -> list[PairNoise]:
        """The last β·h_ḡ and flag seen for every pair with a pair_id, in the order first seen."""
        return list(self._noise.values())

    def _choose_reference_adapter(self) -> str | None:
        """The adapter `use_adapter` switches to for the reference: TRL's "ref" copy, or None (adapters off; the
        copy TRL made is then deleted)."""
        if self.reference == "model":
            return None
        peft_model = self.accelerator.unwrap_model(self.model)
        if self.reference == "ref_adapter":
            if TRL_REF_ADAPTER not in peft_model.peft_config:
                raise ValueError(
                    f"reference='ref_adapter' needs TRL's frozen {TRL_REF_ADAPTER!r} copy of the "
                    "starting adapter, and TRL made none for this model"
                )
            return TRL_REF_ADAPTER
        release_reference_copy(peft_model)
        return None

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """The dataset is already tokenised with engine.method.encoding; TRL's tokenisation would change the ids."""
        return dataset

    def response_forward(self, model, inputs: dict[str, torch.Tensor]) -> ScoredBatch:
        """Logits of the last (longest response + 1) positions, and the summed response log-probs from them.
        In one process each prompt runs once for its two responses (scoring.shared_prompt_logits, gradients
        through the KV cache); gradient checkpointing turns the cache off, and DDP, ZeRO-3 and FSDP expect one
        forward per backward, so those run the concatenated sequences."""
        if self.share_prompts:
            n = inputs["prompt_ids"].shape[0]
            rows = torch.arange(n, device=inputs["prompt_ids"].device).repeat(2)  # chosen rows, then rejected
            try:
                logits = shared_prompt_logits(
                    model,
                    inputs["prompt_ids"],
                    inputs["prompt_mask"],
                    inputs["responses"],
                    inputs["responses_mask"],
                    rows,
                )
            except NoSharedPromptCache as e:
                logger.warning("running whole sequences: %s", e)
                self.share_prompts = False
                return self.response_forward(model, inputs)
            edge = torch.zeros_like(inputs["responses"][:, :1])  # position 0: the prompt's last token, never scored
            labels = torch.cat([edge, inputs["responses"]], dim=1)
            mask = torch.cat([edge, inputs["responses_mask"]], dim=1)
            return ScoredBatch(logits, labels, mask, response_logps(logits, labels, mask))
        keep = int(inputs["response_mask"].sum(-1).max()) + 1
        kwargs = dict(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            position_ids=inputs["position_ids"],
            use_cache=False,
        )
        if accepts_logits_to_keep(self.accelerator.unwrap_model(model)):
            kwargs["logits_to_keep"] = keep
        logits = model(**kwargs).logits[:, -keep:]
        labels, mask = inputs["input_ids"][:, -keep:], inputs["response_mask"][:, -keep:]
        return ScoredBatch(logits, labels, mask, response_logps(logits, labels, mask))

    def reference_forward(self, inputs: dict[str, torch.Tensor]) -> ScoredBatch:
        """The same, under the reference (adapters off, the reference adapter, or ref_model), without gradient."""
        if self.reference == "model":
            model, switch = self.ref_model, contextlib.nullcontext()
        else:
            model, switch = self.model, use_adapter(self.accelerator.unwrap_model(self.model), self.ref_adapter)
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
            switch,
        ):
            return self.response_forward(model, inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Mean over pairs of self_refinement_loss; ỹ = 1 (plain sigmoid DPO) unless refinement is on."""
        mode = "train" if self.model.training else "eval"
        policy = self.response_forward(model, inputs)
        chosen, rejected = policy.logps.chunk(2)
        ref_chosen = inputs["ref_chosen_logps"].to(chosen.dtype)
        ref_rejected = inputs["ref_rejected_logps"].to(chosen.dtype)
        missing = ref_chosen.isnan() | ref_rejected.isnan()
        detect = self.refine is not None and mode == "train"
        ref_logits = None
        if bool(missing.any()) or (detect and self.refine.lam > 0):
            ref = self.reference_forward(inputs)
            ref_c, ref_r = ref.logps.chunk(2)
            ref_chosen = torch.where(missing, ref_c, ref_chosen)
            ref_rejected = torch.where(missing, ref_r, ref_rejected)
            ref_logits = ref.logits
        h = dpo_margin(chosen, rejected, ref_chosen, ref_rejected)
        soft = torch.ones_like(h)
        if detect:
            soft = self._detect_noise(policy, ref_logits, ref_chosen, ref_rejected, inputs)
        loss = self_refinement_loss(h, self.beta, soft).mean()
        self._record_rewards(mode, chosen, rejected, ref_chosen, ref_rejected)
        return (loss, None) if return_outputs else loss

    @torch.no_grad()
    def _detect_noise(
        self,
        policy: ScoredBatch,
        ref_logits: torch.Tensor | None,
        ref_chosen: torch.Tensor,
        ref_rejected: torch.Tensor,
        inputs: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """β·h_ḡ per pair from the step's own logits, rolling-window flags, and the soft labels ỹ."""
        lam = self.refine.lam
        if lam > 0:
            ext_logits = extrapolated_logits(policy.logits.detach().float(), ref_logits.float(), lam)
            ext = response_logps(ext_logits, policy.labels, policy.mask)
        else:
            ext = policy.logps.detach()
        ext_chosen, ext_rejected = ext.chunk(2)
        ext_margin = self.beta * dpo_margin(ext_chosen, ext_rejected, ref_chosen, ref_rejected)
        # The flags are decided on the whole data-parallel batch (every rank's pairs, in rank order), so every
        # rank keeps the same rolling window and a pair's flag does not depend on which rank it landed on.
        local = ext_margin.shape[0]
        ids, margins, trusted = self.accelerator.gather((inputs["pair_id"], ext_margin, inputs["trusted"].long()))
        flags, self._history = noise_flags(
            margins, self._history, self.refine.k_fraction, self.refine.window, trusted.bool()
        )
        warmup = in_warmup(self.state.global_step, self.state.max_steps, self.refine.warmup_fraction)
        for pid, m, f in zip(ids.tolist(), margins.tolist(), flags.tolist()):
            if pid >= 0:
                self._noise[pid] = PairNoise(pair_id=pid, ext_margin=m, noisy=bool(f), warmup=warmup)
        self._metrics["train"]["noise/flagged_fraction"].append(flags.float().mean().item())
        mine = slice(self.accelerator.process_index * local, (self.accelerator.process_index + 1) * local)
        soft = soft_labels(
            flags[mine],
            inputs["trusted"],
            self.refine.alpha,
            self.state.global_step,
            self.state.max_steps,
            self.refine.warmup_fraction,
        )
        return soft.to(ext_margin.dtype)

    def _record_rewards(self, mode: str, chosen, rejected, ref_chosen, ref_rejected) -> None:
        """TRL's reward metrics; DPOTrainer.log averages them over the logging interval."""
        reward_c = self.beta * (chosen - ref_chosen).detach()
        reward_r = self.beta * (rejected - ref_rejected).detach()
        gather = self.accelerator.gather
        metrics = self._metrics[mode]
        metrics["rewards/chosen"].append(gather(reward_c).mean().item())
        metrics["rewards/rejected"].append(gather(reward_r).mean().item())
        metrics["rewards/margins"].append(gather(reward_c - reward_r).mean().item())
        metrics["rewards/accuracies"].append(gather((reward_c > reward_r).float()).mean().item())
        metrics["logps/chosen"].append(gather(chosen.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected.detach()).mean().item())


# entry points ----------------------------------------------------------------------------------------------------


def dpo_config(settings: TrainSettings, n_rows: int, output_dir: str, use_cpu: bool | None = None) -> DPOConfig:
    """TRL/HF arguments: micro batch capped to the data, accumulation up to the effective batch (over every
    data-parallel rank), cosine with
    warm-up, no reports, no checkpoints (the caller saves the adapter), CPU when there is no CUDA (or when asked:
    a model the caller put on the CPU stays there)."""
    if settings.epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {settings.epochs}")
    if not 0.0 <= settings.warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must lie in [0, 1), got {settings.warmup_ratio}")
    micro = max(1, min(settings.micro_batch_size, n_rows))
    return DPOConfig(
        output_dir=output_dir,
        beta=settings.beta,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=max(1, settings.batch_size // (micro * settings.processes)),
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,
        seed=settings.seed,
        bf16=settings.bf16,
        fp16=False,
        logging_steps=settings.logging_steps,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available() if use_cpu is None else use_cpu,
        activation_checkpointing=settings.gradient_checkpointing,
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        max_length=None,
        disable_tqdm=True,
    )


def make_trainer(
    model,
    tokenizer,
    rows: Sequence[TrainRow],
    settings: TrainSettings,
    refine: RefineSettings | None,
    reference: Reference = "adapters_disabled",
    ref_model=None,
    callbacks: Iterable[TrainerCallback] = (),
    output_dir: str | None = None,
) -> NoiseAwareDPOTrainer:
    """The trainer train_dpo runs, built but not started (tests inspect its batches and losses)."""
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    if reference != "model" and not isinstance(model, PeftModel):
        raise ValueError(f"reference={reference!r} needs a PEFT (LoRA) model; a full fine-tune uses 'model'")
    if reference == "model" and ref_model is None:
        raise ValueError("reference='model' needs the frozen reference model as ref_model")
    dataset = encode_rows(tokenizer, rows, settings.max_length)
    on_cpu = not torch.cuda.is_available() or next(model.parameters()).device.type == "cpu"
    args = dpo_config(settings, len(dataset), output_dir or settings.output_dir or tempfile.gettempdir(), on_cpu)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer = NoiseAwareDPOTrainer(
        model,
        reference=reference,
        refine=refine,
        ref_model=ref_model if reference == "model" else None,
        args=args,
        data_collator=LeftPaddedPreferenceCollator(pad_id),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)  # progress and metrics go to storage, not to stdout
    return trainer


class _LogRecorder(TrainerCallback):
    def __init__(self):
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}, step=state.global_step))


def train_dpo(
    model,
    tokenizer,
    rows: Sequence[TrainRow],
    settings: TrainSettings,
    refine: RefineSettings | None,
    reference: Reference = "adapters_disabled",
    ref_model=None,
    callbacks: Iterable[TrainerCallback] = (),
) -> TrainResult:
    """Train `model` in place with noise-aware DPO on `rows`.

    reference: "adapters_disabled" (π_init = the base with adapters off; the seed round), "ref_adapter" (π_{i-1} =
    TRL's frozen "ref" copy of the "default" adapter the model comes with; rounds i ≥ 1, whose model starts as
    π_{i-1}) or "model" (a full fine-tune against the separate frozen `ref_model`). `refine` None or disabled:
    plain sigmoid DPO, no noise records.
    A callback may stop training (control.should_training_stop); the result then says `stopped`."""
    recorder = _LogRecorder()
    with _handed_back(model, ref_model), tempfile.TemporaryDirectory(prefix="spa-dpo-") as scratch:
        trainer = make_trainer(
            model,
            tokenizer,
            rows,
            settings,
            refine,
            reference,
            ref_model,
            [*callbacks, recorder],
            output_dir=settings.output_dir or scratch,
        )
        trainer.train()
        state_dict = None
        if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:  # every rank takes part; rank 0 gets the weights
            state_dict = trainer.accelerator.get_state_dict(
                trainer.deepspeed if trainer.is_deepspeed_enabled else trainer.model
            )
    state = trainer.state
    return TrainResult(
        noise=trainer.noise,
        steps=state.global_step,
        metrics=recorder.logs,
        stopped=state.global_step < state.max_steps,
        state_dict=state_dict,
    )


def release_reference_copy(model) -> None:
    """Delete the "ref" adapter TRL copied into a PEFT model, where there is one."""
    if isinstance(model, PeftModel) and TRL_REF_ADAPTER in model.peft_config:
        model.delete_adapter(TRL_REF_ADAPTER)


@contextlib.contextmanager
def _handed_back(*models) -> Iterator[None]:
    """Hand the caller's models back as they came, so the same object can be trained again: TRL patches `forward`
    on the instances it gets (its fused LM head) and adds its "ref" adapter copy to a PEFT model."""
    modules = [m.get_base_model() if isinstance(m, PeftModel) else m for m in models if m is not None]
    saved = [(m, vars(m).get("forward")) for m in modules]
    try:
        yield
    finally:
        for module, forward in saved:
            if forward is None:
                vars(module).pop("forward", None)
            else:
                module.forward = forward
        for model in models:
            release_reference_copy(model)
