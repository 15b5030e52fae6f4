"""README's judge table: `python benchmarks/judge_eval.py [--limit N] [--judges ...] [--data ...] [--out FILE]` runs
`python launch.py judge-eval` (engine.runtime.judge_eval), with the same output and report file
(benchmarks/results/judge_eval.md by default)."""

from __future__ import annotations

import sys

import launch

if __name__ == "__main__":
    sys.exit(launch.main(["judge-eval", *sys.argv[1:]]))
