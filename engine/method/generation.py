"""Sampling responses with `transformers` generate: the CPU (and fallback GPU) generation backend.

Prompts go through engine.method.encoding.prompt_ids, the same ids the judge and the trainer score, and are
LEFT-padded by hand so the tokenizer is never mutated. Each batch is seeded from settings.seed and its
index, inside a forked RNG, so the same call reproduces the same samples and the caller's RNG is untouched.

Sampling already runs the policy over every response token, so each Sample carries logp(π, x, y) read from the
model's logits on the way (`Sample.logp`): the judge needs π_{i-1}'s log-prob of each response and takes it from
here instead of a second forward pass. The scorer appends EOS to an answer cut at max_new_tokens, so generate
runs one step past the limit (that step's token is dropped) to read the EOS log-prob after the cut. The number
is kept only where it is exactly the scorer's: a float32 model, and the ids the scorer reads (the re-encoded
text plus EOS) equal to the sampled ones (an answer that stopped on another stop token, a non-canonical merge,
a skipped special token or a stripped space get None, and the judge scores those pairs itself)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from peft import PeftModel

from engine.method.encoding import prompt_ids, response_ids
from engine.method.scoring import check_fits, context_window, eval_mode, left_pad
from storage.records import Messages

Progress = Callable[[int, int], None]


@dataclass
class Sample:
    text: str
    n_tokens: int  # generated tokens up to and including the stop token (all of them when unfinished)
    finished: bool  # stopped at EOS within max_new_tokens
    logp: float | None = None  # logp(π, x, y) as engine.method.scoring computes it, when sampling gave exactly that


@dataclass
class SamplingSettings:
    samples_per_prompt: int = 2
    temperature: float = 0.7  # 0 means greedy decoding
    top_p: float = 1.0
    max_new_tokens: int = 300
    batch_size: int = 32  # sequences per generate call, not prompts
    seed: int = 0


def generate(
    model, tokenizer, prompts: list[Messages], settings: SamplingSettings, progress: Progress | None = None
) -> list[list[Sample]]:
    """settings.samples_per_prompt samples for each prompt, in prompt order. Progress counts sequences."""
    if settings.samples_per_prompt < 1 or settings.batch_size < 1 or settings.max_new_tokens < 1:
        raise ValueError("samples_per_prompt, batch_size and max_new_tokens must all be at least 1")
    encoded = [prompt_ids(tokenizer, p) for p in prompts]
    check_fits(model, [len(ids) + 2 for ids in encoded], "prompts (with room for one new token and EOS)")
    window = context_window(model)
    jobs = [(i, k) for i in range(len(prompts)) for k in range(settings.samples_per_prompt)]
    # Longest prompts first so a batch holds similar lengths; the sort is stable, so batches are deterministic.
    jobs.sort(key=lambda job: len(encoded[job[0]]), reverse=True)
    stop_ids = _stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    device = next(model.parameters()).device
    keep_logps = next(model.parameters()).dtype == torch.float32  # reduced precision: the judge rescores
    extra_step = 1 if keep_logps else 0  # for the EOS log-prob after an answer cut at max_new_tokens
    results: list[list[Sample | None]] = [[None] * settings.samples_per_prompt for _ in prompts]
    with eval_mode(model):
        for batch_index, start in enumerate(range(0, len(jobs), settings.batch_size)):
            batch = jobs[start : start + settings.batch_size]
            input_ids, attention_mask = (t.to(device) for t in left_pad([encoded[i] for i, _ in batch], pad_id))
            width = input_ids.shape[1]
            # an answer stops where the context ends, with room for the EOS the scorer appends to a cut answer
            budget = settings.max_new_tokens if window is None else min(settings.max_new_tokens, window - width - 1)
            options = _generate_options(replace(settings, max_new_tokens=budget + extra_step), stop_ids, pad_id)
            recorder = SampledTokenLogps(model, tokenizer.eos_token_id) if keep_logps else None
            try:
                with torch.random.fork_rng(devices=_rng_devices(device)):
                    torch.manual_seed(settings.seed + batch_index)
                    output = model.generate(input_ids=input_ids, attention_mask=attention_mask, **options)
            finally:
                if recorder is not None:
                    recorder.remove()
            new_tokens = output[:, width : width + budget].tolist()
            samples = [_to_sample(tokenizer, tokens, stop_ids) for tokens in new_tokens]
            if recorder is not None:
                _keep_logps(tokenizer, samples, new_tokens, *recorder.finish(output))
            for (i, k), sample in zip(batch, samples):
                results[i][k] = sample
            if progress is not None:
                progress(min(start + settings.batch_size, len(jobs)), len(jobs))
    return results


def _stop_ids(model, tokenizer) -> list[int]:
    """The tokenizer's EOS and every EOS the model's generation config declares (chat models often add one)."""
    declared = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    return merge_stop_ids(tokenizer.eos_token_id, declared)


def merge_stop_ids(tokenizer_eos: int | None, declared: int | list[int] | None) -> list[int]:
    """The tokenizer's EOS first, then each EOS a generation config declares, without repeats."""
    ids = [] if tokenizer_eos is None else [tokenizer_eos]
    for token in [declared] if isinstance(declared, int) else (declared or []):
        if token not in ids:
            ids.append(token)
    if not ids:
        raise ValueError("neither the tokenizer nor the model's generation config names an EOS token")
    return ids


class SampledTokenLogps:
    """A forward hook on the transformers model that generate() calls once per step: takes the log-softmax of
    each step's last-position logits (the model's own output, before temperature, top-p or any penalty), keeps
    the EOS entry, and one step later, when the drawn token comes back as input, that token's log-prob."""

    def __init__(self, model, eos_id: int | None):
        core = model.get_base_model() if isinstance(model, PeftModel) else model
        self.eos_id = eos_id if eos_id is not None else 0
        self.drawn: list[torch.Tensor] = []
        self.eos: list[torch.Tensor] = []
        self._last: torch.Tensor | None = None
        self._handle = core.register_forward_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs, output) -> None:
        if self._last is not None:
            self.drawn.append(self._last.gather(-1, kwargs["input_ids"][:, -1:]).squeeze(-1))
        self._last = output.logits[:, -1].float().log_softmax(-1)
        self.eos.append(self._last[:, self.eos_id])

    def finish(self, sequences: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, steps) each: the log-prob of every drawn token, and of EOS at every step."""
        drawn = self.drawn + [self._last.gather(-1, sequences[:, -1:]).squeeze(-1)]
        return torch.stack(drawn, dim=1).cpu(), torch.stack(self.eos, dim=1).cpu()

    def remove(self) -> None:
        self._handle.remove()


def _generate_options(settings: SamplingSettings, stop_ids: list[int], pad_id: int) -> dict:
    """Sampling exactly as configured: top_k is switched off (transformers would default it to 50), so
    temperature and top_p mean what they mean in the paper's (vLLM) setup."""
    options = dict(
        max_new_tokens=settings.max_new_tokens, eos_token_id=stop_ids, pad_token_id=pad_id, num_return_sequences=1
    )
    if settings.temperature > 0:
        options.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    else:
        options.update(do_sample=False, temperature=1.0, top_p=1.0)
    return options


def _rng_devices(device: torch.device) -> list:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _keep_logps(
    tokenizer, samples: list[Sample], new_tokens: list[list[int]], drawn: torch.Tensor, eos: torch.Tensor
) -> None:
    """Sample.logp = the drawn tokens' log-probs up to the stop, plus EOS after a cut, where that is what the
    scorer reads."""
    for sample, tokens, drawn_row, eos_row in zip(samples, new_tokens, drawn.double().tolist(), eos.double().tolist()):
        if _scored_as_sampled(tokenizer, sample, tokens):
            n = sample.n_tokens
            sample.logp = sum(drawn_row[:n]) + (0.0 if sample.finished else eos_row[n])


def _scored_as_sampled(tokenizer, sample: Sample, tokens: list[int]) -> bool:
    """Whether the ids the scorer reads (engine.method.encoding.response_ids: the text, then EOS) are the sampled ones:
    the tokens up to the stop, or up to the cut plus the EOS the scorer appends."""
    scored = tokens[: sample.n_tokens] if sample.finished else tokens[: sample.n_tokens] + [tokenizer.eos_token_id]
    return response_ids(tokenizer, sample.text) == scored


def _to_sample(tokenizer, tokens: list[int], stop_ids: list[int]) -> Sample:
    """Cut at the first stop token (what follows is padding), decode without special tokens, strip."""
    stop = next((pos for pos, token in enumerate(tokens) if token in stop_ids), None)
    kept = tokens if stop is None else tokens[:stop]
    text = tokenizer.decode(kept, skip_special_tokens=True).strip()
    return Sample(text=text, n_tokens=len(tokens) if stop is None else stop + 1, finished=stop is not None)
