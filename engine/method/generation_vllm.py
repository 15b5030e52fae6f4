"""Sampling responses with vLLM: the GPU generation backend (optional; requirements-gpu.txt).

One engine is built per round over the base weights with LoRA enabled, and each round's adapter is served
through a LoRARequest, so nothing is merged. Prompts are passed as token ids from engine.method.encoding.prompt_ids
(vLLM's TokensPrompt form), so vLLM samples from exactly the prompt the judge and the trainer score, and the
answers are cut and decoded the same way as the transformers backend (engine.method.generation), so both backends
return the same kind of `Sample`. vLLM is imported lazily: this module loads on machines without it.
`round_sampler` is the one place a generate stage picks its backend (generation.backend hf | vllm | auto)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.method.encoding import prompt_ids
from engine.method.generation import Sample, SamplingSettings
from engine.method.generation import generate as hf_generate
from storage.records import Messages

BACKENDS = ("hf", "vllm", "auto")
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM's max_lora_rank accepts (MaxLoRARanks)
INSTALL_HINT = "pip install -r requirements-gpu.txt on a machine with an NVIDIA GPU and CUDA"
Progress = Callable[[int, int], None]


def vllm_available() -> tuple[bool, str]:
    """Whether the vLLM backend can run here, and if not, why, in words a person can act on."""
    if importlib.util.find_spec("vllm") is None:
        return False, f"vLLM is not installed ({INSTALL_HINT})"
    import torch

    if not torch.cuda.is_available():
        return False, "vLLM is installed but CUDA is not available on this machine"
    try:
        import vllm
    except Exception as e:  # a broken install (CUDA or torch mismatch) fails at import time
        return False, f"vLLM is installed but does not import: {type(e).__name__}: {e}"
    return True, f"vLLM {getattr(vllm, '__version__', '?')} with {torch.cuda.device_count()} CUDA device(s)"


def pick_backend(requested: str) -> str:
    """hf | vllm | auto -> the backend to use. `auto` takes vLLM when it can run and transformers otherwise;
    asking for vLLM where it cannot run is an error, not a silent fallback."""
    if requested not in BACKENDS:
        raise ValueError(f"generation.backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if requested == "hf":
        return "hf"
    ok, why = vllm_available()
    if ok:
        return "vllm"
    if requested == "vllm":
        raise RuntimeError(
            f"generation.backend is vllm but {why}. vLLM is optional and GPU-only: "
            f"{INSTALL_HINT}, or set generation.backend to hf or auto."
        )
    return "hf"


def sampling_kwargs(settings: SamplingSettings, stop_ids: list[int], seed: int) -> dict:
    """SamplingParams keyword arguments for one prompt, meaning what engine.method.generation's options mean:
    n samples, temperature (0 = greedy), top_p, max new tokens, a seed (vLLM seeds per request, so each
    prompt gets its own), the same stop tokens, and top-k left at vLLM's default, which is off."""
    if settings.samples_per_prompt < 1 or settings.max_new_tokens < 1:
        raise ValueError("samples_per_prompt and max_new_tokens must be at least 1")
    greedy = settings.temperature <= 0
    return dict(
        n=settings.samples_per_prompt,
        temperature=0.0 if greedy else settings.temperature,
        top_p=1.0 if greedy else settings.top_p,
        max_tokens=settings.max_new_tokens,
        seed=seed,
        stop_token_ids=list(stop_ids),
        skip_special_tokens=True,
    )


def lora_rank_limit(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds an adapter of this rank."""
    for allowed in LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ValueError(f"LoRA rank {rank} is above what vLLM serves ({LORA_RANKS[-1]})")


def adapter_rank(adapter_dir: str | Path) -> int:
    """The rank a saved PEFT adapter was trained with (adapter_config.json's r)."""
    config = Path(adapter_dir) / "adapter_config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: not a PEFT adapter folder")
    return int(json.loads(config.read_text())["r"])


def stop_token_ids(tokenizer, model_path: str) -> list[int]:
    """The tokenizer's EOS and every EOS the model's generation config declares, as engine.method.generation uses."""
    from transformers import GenerationConfig

    from engine.method.generation import merge_stop_ids

    try:
        declared = GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:  # no generation_config.json: the tokenizer's EOS is all there is
        declared = None
    return merge_stop_ids(tokenizer.eos_token_id, declared)


def to_sample(tokenizer, token_ids: list[int], finish_reason: str | None, stop_ids: list[int]) -> Sample:
    """One vLLM completion as engine.method.generation would have returned it: cut at the first stop token,
    decoded without special tokens and stripped; n_tokens counts the stop token. vLLM reports a stop
    (finish_reason "stop") whether or not it kept the stop token in token_ids."""
    stop = next((pos for pos, token in enumerate(token_ids) if token in stop_ids), None)
    kept = list(token_ids) if stop is None else list(token_ids[:stop])
    text = tokenizer.decode(kept, skip_special_tokens=True).strip()
    if stop is not None:
        return Sample(text=text, n_tokens=stop + 1, finished=True)
    finished = finish_reason == "stop"
    return Sample(text=text, n_tokens=len(kept) + (1 if finished else 0), finished=finished)


def engine_settings(cfg, model_path: str) -> dict:
    """VLLMGenerator arguments for a run: LoRA at the run's rank (full fine-tune: none), one tensor-parallel
    shard per GPU of train.num_gpus, the run's dtype and seed. When the generate stage also holds a judge's
    models to pick best-of-N (density ratio, or the implicit judge's π_{i-1}), vLLM leaves half the GPU to them."""
    best_of_n = cfg.judge.kind in ("density_ratio", "implicit") and cfg.generation.samples_per_prompt > 2
    return dict(
        model_path=model_path,
        tensor_parallel_size=max(1, cfg.train.num_gpus),
        dtype=cfg.dtype,
        max_lora_rank=cfg.lora.r if cfg.lora.enabled else None,
        gpu_memory_utilization=0.5 if best_of_n else 0.9,
        seed=cfg.seed,
        trust_remote_code=cfg.trust_remote_code,
    )


@dataclass
class VLLMGenerator:
    """One vLLM engine over `model_path` (the base model, or a full fine-tune's weights), built once per
    round. With `max_lora_rank` set, LoRA is enabled and `generate(..., adapter_dir)` serves that adapter;
    tensor_parallel_size spreads the model over that many GPUs."""

    model_path: str
    tensor_parallel_size: int = 1
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32
    max_lora_rank: int | None = None  # None: no LoRA (full fine-tune)
    gpu_memory_utilization: float = 0.9
    seed: int = 0
    trust_remote_code: bool = False
    tokenizer: object = None  # None: loaded from model_path with engine.method.models.load_tokenizer
    _llm: object = field(default=None, init=False, repr=False)
    _adapters: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _stop_ids: list[int] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self):
        ok, why = vllm_available()
        if not ok:
            raise RuntimeError(f"cannot start the vLLM backend: {why}")
        from vllm import LLM

        from engine.method.models import load_tokenizer

        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.model_path, self.trust_remote_code)
        self._stop_ids = stop_token_ids(self.tokenizer, self.model_path)
        lora = (
            {}
            if self.max_lora_rank is None
            else dict(enable_lora=True, max_lora_rank=lora_rank_limit(self.max_lora_rank), max_loras=1)
        )
        self._llm = LLM(
            model=self.model_path,
            tensor_parallel_size=self.tensor_parallel_size,
            dtype=self.dtype,
            gpu_memory_utilization=self.gpu_memory_utilization,
            seed=self.seed,
            trust_remote_code=self.trust_remote_code,
            **lora,
        )

    @classmethod
    def for_run(cls, cfg, model_path: str) -> "VLLMGenerator":
        """The engine a run's generate stage needs (see engine_settings)."""
        return cls(**engine_settings(cfg, model_path))

    def lora_request(self, adapter_dir: str):
        """A LoRARequest per adapter folder; the integer id is stable for this engine (vLLM caches by it)."""
        from vllm.lora.request import LoRARequest

        if self.max_lora_rank is None:
            raise ValueError("this vLLM engine was built without LoRA (max_lora_rank is None)")
        rank = adapter_rank(adapter_dir)
        if rank > lora_rank_limit(self.max_lora_rank):
            raise ValueError(f"{adapter_dir} has LoRA rank {rank}, above this engine's max_lora_rank")
        key = str(Path(adapter_dir).resolve())
        int_id = self._adapters.setdefault(key, len(self._adapters) + 1)
        return LoRARequest(f"adapter-{int_id}", int_id, key)

    def generate(
        self,
        prompts: list[Messages],
        settings: SamplingSettings,
        adapter_dir: str | None = None,
        progress: Progress | None = None,
    ) -> list[list[Sample]]:
        """settings.samples_per_prompt samples per prompt, in prompt order, from the base model or, with
        adapter_dir, from base + that LoRA adapter. Progress counts sequences, as in engine.method.generation."""
        from vllm import SamplingParams

        if not prompts:
            return []
        inputs = [{"prompt_token_ids": prompt_ids(self.tokenizer, p)} for p in prompts]
        params = [
            SamplingParams(**sampling_kwargs(settings, self._stop_ids, settings.seed + i)) for i in range(len(prompts))
        ]
        lora = self.lora_request(adapter_dir) if adapter_dir else None
        outputs = self._llm.generate(inputs, params, lora_request=lora, use_tqdm=False)
        results = [
            [to_sample(self.tokenizer, list(c.token_ids), c.finish_reason, self._stop_ids) for c in out.outputs]
            for out in outputs
        ]
        if progress is not None:
            total = len(prompts) * settings.samples_per_prompt
            progress(total, total)
        return results


Generate = Callable[..., list[list[Sample]]]  # (prompts, settings, progress=None), as generation.generate


@dataclass
class RoundSampler:
    """What a round's generate stage samples π_{i-1} with, whichever backend generation.backend picked."""

    backend: str  # hf | vllm
    generate: Generate
    note: str  # why this backend, for the stage's log


def round_sampler(cfg, base_model_path: str, weights_dir: Path, load_policy: Callable[[], object]) -> RoundSampler:
    """The backend for one generate stage. hf: `load_policy()` (π_{i-1} through transformers). vllm: one
    engine for the stage over the base model with π_{i-1}'s LoRA adapter in `weights_dir` served through a
    LoRARequest (no merge), or over a full fine-tune's weights in `weights_dir`. The policy is not loaded
    for vLLM, so the GPU is vLLM's. Same SamplingSettings either way."""
    backend = pick_backend(cfg.generation.backend)
    if backend == "hf":
        policy = load_policy()
        why = "requested" if cfg.generation.backend == "hf" else vllm_available()[1]
        return RoundSampler(
            "hf",
            lambda prompts, s, progress=None: hf_generate(policy.model, policy.tokenizer, prompts, s, progress),
            f"transformers generate ({why})",
        )
    if cfg.lora.enabled:
        generator = VLLMGenerator.for_run(cfg, base_model_path)
        adapter = str(weights_dir)
        return RoundSampler(
            "vllm",
            lambda prompts, s, progress=None: generator.generate(prompts, s, adapter, progress),
            f"vLLM over {base_model_path} with the LoRA adapter {adapter}",
        )
    generator = VLLMGenerator.for_run(cfg, str(weights_dir))
    return RoundSampler(
        "vllm",
        lambda prompts, s, progress=None: generator.generate(prompts, s, None, progress),
        f"vLLM over {weights_dir}",
    )
