"""Groups that teach: DAPO's dynamic sampling for TRL's GRPOTrainer.

A GRPO group whose completions all earn the same reward has zero advantage everywhere: with no KL
term it adds nothing to the gradient, yet it costs its generation and its forward/backward, and
with a token-averaged loss it dilutes the groups that do teach. `fill` replaces such groups: it
generates more groups (fresh prompts from the train set) until the batch holds only groups whose
rewards differ, or a bound of extra rounds is reached; then the batch is completed with
zero-advantage groups so its shape stays what TRL expects.

The batch it returns is TRL's own output for the groups kept, row for row (prompts re-padded to
the longest kept prompt), so GRPO's loss on it is TRL's loss on those groups
(tests/test_group_filter.py computes both). Each group stays on the rank that generated it; all
ranks decide together how many groups the next round generates (from the gathered counts), so
every rank ends with the same number of groups and calls TRL's collective operations as often as
the others. Prompts for a round are drawn with a seed made of the run's seed, the step, the round
and the rank: a resumed run draws what the first run would have drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

# TRL's output keys that are prompt-side (padded on the left); every other per-row tensor is padded
# on the right, after the completion.
LEFT_PADDED = ("prompt_ids", "prompt_mask")
RECOMPUTED = "num_items_in_batch"  # the loss normaliser of dapo/cispo: tokens of the whole batch


@dataclass
class FillStats:
    """One step's filling, counted over all ranks (groups = prompts)."""

    generated: int = 0  # groups generated this step, the first batch included
    dropped: int = 0  # zero-variance groups generated and left out
    filler: int = 0  # zero-variance groups kept because the bound was reached
    rounds: int = 0  # extra generation rounds
    bound_hit: bool = False

    def metrics(self) -> dict[str, float]:
        return {
            "groups/prompts_generated": float(self.generated),
            "groups/dropped_ratio": self.dropped / self.generated if self.generated else 0.0,
            "groups/zero_std_kept": float(self.filler),
            "groups/extra_rounds": float(self.rounds),
        }


def informative(advantages: torch.Tensor, group_size: int) -> torch.Tensor:
    """Per group: does any completion have a non-zero advantage (the rewards differ)?"""
    return advantages.reshape(-1, group_size).ne(0).any(dim=1)


def next_round_size(missing: int, kept: int, generated: int, cap: int) -> int:
    """Groups to generate next: enough to replace `missing` at the share of informative groups
    seen so far in this step, at most `cap` (one batch); a full batch when none taught yet."""
    if kept == 0:
        return cap
    return max(1, min(cap, math.ceil(missing * generated / kept)))


def fill(
    first: dict[str, Any],
    group_size: int,
    max_rounds: int,
    generate: Callable[[int, int], dict[str, Any]],
    gather: Callable[[torch.Tensor], torch.Tensor],
    pad_token_id: int,
) -> tuple[dict[str, Any], FillStats]:
    """The batch of `first`'s size made of informative groups, generating more where needed.

    generate(groups, round) returns TRL's output for that many new groups on this rank;
    gather(tensor) stacks a tensor from every rank (identity on one process).
    """
    groups = first["advantages"].numel() // group_size
    device = first["advantages"].device

    def across_ranks(*counts: int) -> torch.Tensor:  # (ranks, len(counts))
        return gather(torch.tensor([counts], device=device)).reshape(-1, len(counts))

    outputs = [first]
    masks = [informative(first["advantages"], group_size)]
    stats = FillStats()
    while True:
        kept = sum(int(m.sum()) for m in masks)
        counts = across_ranks(max(groups - kept, 0), kept, sum(m.numel() for m in masks))
        missing = int(counts[:, 0].max())
        if missing == 0:
            break
        if stats.rounds == max_rounds:
            stats.bound_hit = True
            break
        size = next_round_size(missing, int(counts[:, 1].sum()), int(counts[:, 2].sum()), groups)
        output = generate(size, stats.rounds)
        stats.rounds += 1
        outputs.append(output)
        masks.append(informative(output["advantages"], group_size))

    picks = pick_groups(masks, groups)
    batch = take_rows(outputs, [_rows(p, group_size) for p in picks], pad_token_id)
    filler = sum(int((~m[p]).sum()) for m, p in zip(masks, picks, strict=True))
    zero_std = sum(int((~m).sum()) for m in masks)
    totals = across_ranks(sum(m.numel() for m in masks), zero_std, filler).sum(dim=0).tolist()
    stats.generated, stats.filler = int(totals[0]), int(totals[2])
    stats.dropped = int(totals[1]) - stats.filler
    return batch, stats


def pick_groups(masks: Sequence[torch.Tensor], groups: int) -> list[torch.Tensor]:
    """Indices of the groups kept from each output: informative ones in the order generated, then,
    if there are too few, the first zero-variance ones."""
    picks: list[list[int]] = [[] for _ in masks]
    left = groups
    for want in (True, False):
        for i, mask in enumerate(masks):
            for g in range(mask.numel()):
                if left and bool(mask[g]) is want:
                    picks[i].append(g)
                    left -= 1
    return [torch.tensor(sorted(p), dtype=torch.long) for p in picks]


def _rows(group_indices: torch.Tensor, group_size: int) -> torch.Tensor:
    return (group_indices[:, None] * group_size + torch.arange(group_size)).reshape(-1)


def take_rows(
    outputs: Sequence[dict[str, Any]], rows: Sequence[torch.Tensor], pad_token_id: int
) -> dict[str, Any]:
    """The given rows of TRL outputs as one output, padded as TRL pads a batch: prompts on the left
    to the longest prompt kept, completion-side tensors on the right. `num_items_in_batch` is left
    to the caller (it spans all ranks)."""
    merged: dict[str, Any] = {}
    for key, value in outputs[0].items():
        if key == RECOMPUTED:
            continue
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            raise ValueError(f"rows of {key!r} cannot be regrouped (multimodal inputs are not supported)")
        parts = [out[key][r.to(out[key].device)] for out, r in zip(outputs, rows, strict=True) if r.numel()]
        left = key in LEFT_PADDED
        value_pad = pad_token_id if key in ("prompt_ids", "completion_ids") else 0
        merged[key] = _cat_padded(parts, left=left, value=value_pad)
    if "prompt_mask" in merged:  # drop columns that pad every kept prompt
        width = int(merged["prompt_mask"].sum(dim=1).max())
        for key in LEFT_PADDED:
            merged[key] = merged[key][:, merged[key].size(1) - width :]
    return merged


def _cat_padded(parts: list[torch.Tensor], left: bool, value: float) -> torch.Tensor:
    if parts[0].dim() == 1:
        return torch.cat(parts)
    width = max(p.size(1) for p in parts)
    padded = []
    for p in parts:
        extra = width - p.size(1)
        pad = (extra, 0) if left else (0, extra)
        padded.append(torch.nn.functional.pad(p, pad, value=value) if extra else p)
    return torch.cat(padded)


def draw_seed(seed: int, step: int, round_: int, rank: int) -> int:
    """The seed of one round's prompts: a resumed run draws what the first run drew at that step."""
    return (((seed * 1_000_003 + step) * 1_009 + round_) * 101 + rank) % 2**63


def draw_groups(dataset: Any, groups: int, group_size: int, seed: int) -> list[dict[str, Any]]:
    """Rows for `groups` groups of fresh prompts from the train set (each row repeated group_size
    times, as TRL's sampler gives them)."""
    generator = torch.Generator().manual_seed(seed)
    size = len(dataset)
    if size >= groups:
        indices = torch.randperm(size, generator=generator)[:groups]
    else:
        indices = torch.randint(size, (groups,), generator=generator)
    rows = [dataset[int(i)] for i in indices]
    return [row for row in rows for _ in range(group_size)]
