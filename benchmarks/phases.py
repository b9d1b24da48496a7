"""Run `rlvr train` in this process and record, per phase of a GRPO step, its time and peak memory.

    python benchmarks/phases.py OUT.json train --data ... --set ...

Phases (the methods of TRL's GRPOTrainer / accelerate they wrap):
- generation: sampling the completions (`_generate_single_turn`), KV cache included;
- old/reference log-probs: the forward passes without gradients (reference model for the KL term);
- policy forward: the forward with gradients, whose activations are kept for the backward;
- backward, optimizer step;
- other: everything else (rewards, logging, loading, saving).

Peak resident memory is sampled every 10 ms (plus ru_maxrss for the whole run, which misses
nothing). A phase's peak includes memory its predecessors left allocated, so the table also shows
the resident memory when each phase started. bench_train.py runs every configuration through this.
"""

from __future__ import annotations

import atexit
import collections
import json
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PHASES = ("generation", "old/reference log-probs", "policy forward", "backward", "optimizer", "other")


def main() -> None:
    out = Path(sys.argv[1])
    import psutil

    process = psutil.Process()
    current = {"phase": "other"}
    peak: dict[str, float] = collections.defaultdict(float)
    start_rss: dict[str, float] = {}
    seconds: dict[str, float] = collections.defaultdict(float)

    def rss() -> float:
        return process.memory_info().rss / 2**30

    def sample() -> None:
        while True:
            phase = current["phase"]
            peak[phase] = max(peak[phase], rss())
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()

    def timed(owner: Any, name: str, label: Any) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            phase = label() if callable(label) else label
            previous, current["phase"] = current["phase"], phase
            start_rss.setdefault(phase, rss())
            peak[phase] = max(peak[phase], rss())
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[phase] += time.perf_counter() - start
                current["phase"] = previous

        setattr(owner, name, wrapper)

    import accelerate
    import torch
    from accelerate.optimizer import AcceleratedOptimizer

    from rlvr_cli.training.trainer import RlvrGRPOTrainer

    timed(RlvrGRPOTrainer, "_generate_single_turn", "generation")
    timed(
        RlvrGRPOTrainer,
        "_get_per_token_logps_and_entropies",
        lambda: "policy forward" if torch.is_grad_enabled() else "old/reference log-probs",
    )
    timed(accelerate.Accelerator, "backward", "backward")
    timed(AcceleratedOptimizer, "step", "optimizer")

    def report() -> None:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        phases = {
            p: {
                "seconds": seconds.get(p, 0.0),
                "peak_rss_gb": peak.get(p, 0.0),
                "start_rss_gb": start_rss.get(p),
            }
            for p in PHASES
        }
        out.write_text(json.dumps({"phases": phases, "max_rss_gb": maxrss}, indent=2) + "\n")

    atexit.register(report)
    from rlvr_cli.cli.app import app

    sys.argv = ["rlvr", *sys.argv[2:]]
    app()


if __name__ == "__main__":
    main()
