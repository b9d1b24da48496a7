"""GSM8K's verifiable rewards: plain functions with TRL's reward signature.

GRPO samples a group of completions per prompt and compares their rewards within the group, so a
reward only has to be *checkable by program*: no reward model, no human labels. Both rewards read
the answer with `rlvr_cli.tasks.gsm8k.answers.extract_answer`, the same function evaluation uses, so training
optimises exactly what `rlvr eval` measures.

Recipes name rewards (`reward_funcs: [format, correctness]`) and may weight them
(`reward_weights: [1.0, 1.0]`); TRL sums `weight * reward` per completion. A custom reward with
the same signature can be named by import path, `package.module:function` (`rlvr_cli.tasks.rewards`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlvr_cli.tasks.base import CORRECTNESS_REWARD, FORMAT_REWARD, RewardFunc
from rlvr_cli.tasks.gsm8k.answers import extract_answer, is_correct, parse_number


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """0.5 when the completion's first answer line is `#### The final answer is N`, else 0.0.

    Only the first answer line counts, and not when it stands inside an invented follow-up
    `Question:`.

    Example:
        >>> format_reward(["3 + 4 = 7\\n#### The final answer is 7", "It is 7."])
        [0.5, 0.0]
    """
    return [FORMAT_REWARD if extract_answer(c).format_ok else 0.0 for c in completions]


def correctness_reward(
    completions: Sequence[Any], final_answer: Sequence[Any], **kwargs: Any
) -> list[float | None]:
    """1.0 when the number on the first answer line equals the gold `final_answer` (within 1e-3).

    The gold answer comes from the dataset's `final_answer` column. When it cannot be read as one
    number the reward is None, which TRL treats as "not scored" instead of a false 0.

    Example:
        >>> correctness_reward(["#### The final answer is -1,250.5", "#### 3"], final_answer=["-1250.5", "4"])
        [1.0, 0.0]
    """
    rewards: list[float | None] = []
    for completion, gold_text in zip(completions, final_answer, strict=True):
        gold = parse_number(gold_text)
        if gold is None:
            rewards.append(None)
            continue
        rewards.append(CORRECTNESS_REWARD if is_correct(extract_answer(completion).value, gold) else 0.0)
    return rewards


REWARDS: dict[str, RewardFunc] = {
    "format": format_reward,
    "correctness": correctness_reward,
}
