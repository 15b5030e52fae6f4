"""Fingerprint of a fixed-seed demo run: the pairs, their confidences and the final gold score, as digests.

Run it before and after a change that must not change behaviour (a refactor) on the same machine; the digests
must be identical. It runs configs/demo.yaml through `launch.py run` with a smaller overlay (3 rounds of 48
prompts, 64 eval prompts) so it takes a few minutes on two CPU cores:

    SPA_DEMO_DIR=/tmp/demo python benchmarks/same_run.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

OVERLAY = {"rounds": 3, "prompts_per_round": [48, 48, 48], "eval": {"max_prompts": 64}}
TIMING = ("time", "per_s", "seconds", "eta", "_s")


def overlaid_config(folder: Path) -> Path:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    for key, value in OVERLAY.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    data["output_dir"] = str(folder / "out")
    path = folder / "same_run.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def digest(rows) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint(db: Path) -> dict:
    from storage import Store

    store = Store(db)
    job = store.jobs()[0]
    pairs = sorted(store.pairs(job.id), key=lambda p: (p.round, p.id))
    texts = [[p.round, p.prompt, p.response_a, p.response_b, p.judge_label, p.label, p.label_source] for p in pairs]
    scores = [[p.logp_policy_a, p.logp_policy_b, p.logp_init_a, p.logp_init_b, p.confidence] for p in pairs]
    # what the detector said: a flag stored apart as a warm-up flag (no effect on the label) is still its flag
    noise = [[p.ext_margin, True if getattr(p, "warmup_flag", None) else p.noisy] for p in pairs]
    metrics = [
        [m.round, m.stage, m.name, m.step, m.value]
        for m in store.metrics(job.id)
        if not any(t in m.name for t in TIMING)
    ]
    gold = [m.value for m in store.metrics(job.id) if m.name == "eval/gold_score"]
    return {
        "status": job.status,
        "pairs": len(pairs),
        "pairs_digest": digest(texts),
        "confidences_digest": digest(scores),
        "noise_digest": digest(noise),
        "metrics_digest": digest(metrics),
        "warmup_flags": sum(bool(getattr(p, "warmup_flag", None)) for p in pairs),
        "metrics": len(metrics),
        "gold_scores": gold,
        "final_gold_score": gold[-1] if gold else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", default=None, help="folder to keep the database and models in (default: a temp dir)")
    args = ap.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="same_run_"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "same_run.db"
    db.unlink(missing_ok=True)
    # the command line itself, as a person runs it: the fingerprint holds for any layout behind launch.py
    command = [sys.executable, str(ROOT / "launch.py"), "run", str(overlaid_config(folder)), "--db", str(db)]
    rc = subprocess.run(command, cwd=ROOT).returncode
    result = fingerprint(db)
    print(json.dumps(result, indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main())
