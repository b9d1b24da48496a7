"""Generators for evaluation: prompts in, completions out. `HFGenerator` (transformers, CPU or GPU)
and `VLLMGenerator` (`rlvr eval --generator vllm`, CUDA only) implement the same `generate`;
scoring and reporting do not know which one ran.

`greedy_generate` is its decoding loop: greedy (or sampled, for `rlvr eval --samples`), the shared
prompt prefix run once, finished rows dropped from the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from rlvr_cli.decoding.generation import decode_rows, prefill_shared
from rlvr_cli.tasks.base import StopRule


@dataclass
class Generation:
    text: str
    tokens: int
    cut: bool


class Generator(Protocol):
    name: str

    def generate(self, prompts: list[str]) -> list[Generation]: ...


class HFGenerator:
    """Batched transformers decoding (`greedy_generate` below), greedy unless a `temperature` is
    given: stops after the answer line, runs the shared prompt prefix once, drops finished rows."""

    name = "transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_new_tokens: int,
        suppress_tokens: list[int] | None = None,
        stop_rule: Any = None,
        temperature: float | None = None,
        seed: int = 0,
        cuda_graphs: bool = True,
    ):
        from rlvr_cli.decoding.stopping import TokenText

        self.model = model.eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.max_new_tokens = max_new_tokens
        self.suppress_tokens = suppress_tokens  # token ids never generated (benchmarks/gpu_check.py)
        self.stop = TokenText(tokenizer)  # the answer-line stop reads each token's text
        self.stop_rule = stop_rule  # the task's (default: after the first answer line)
        self.temperature = temperature  # None: greedy; else sampled at this temperature (top-p 1)
        self.static = None if cuda_graphs else False  # decode_rows' default: CUDA graphs on a CUDA GPU
        self.sampler = None
        if temperature is not None:
            self.sampler = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)

    def generate(self, prompts: list[str]) -> list[Generation]:
        rows = [self.tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
        outputs = greedy_generate(
            self.model,
            rows,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_id=self.tokenizer.pad_token_id,
            token_text=self.stop,
            suppress_tokens=self.suppress_tokens,
            stop_rule=self.stop_rule,
            temperature=self.temperature,
            sampler=self.sampler,
            static=self.static,
        )
        return [
            Generation(
                text=self.tokenizer.decode(ids, skip_special_tokens=True),
                tokens=len(ids),
                cut=not ended and len(ids) >= self.max_new_tokens,
            )
            for ids, ended in outputs
        ]


GENERATORS = ("transformers", "vllm")


def check_generator(name: str) -> None:
    """Refuse a generator this machine cannot run, before any model is loaded."""
    import importlib.util

    from rlvr_cli.core.errors import RlvrError, UsageError

    if name not in GENERATORS:
        raise UsageError(f"--generator {name}: unknown; use one of {', '.join(GENERATORS)}")
    if name == "vllm":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--generator vllm needs a CUDA GPU; use --generator transformers (the default)")
        if importlib.util.find_spec("vllm") is None:
            raise RlvrError("--generator vllm: vLLM is not installed: pip install 'rlvr[vllm]'")


class VLLMGenerator:
    """Greedy vLLM decoding on a GPU, as lighteval and open-r1 evaluate.

    vLLM's prefix caching keeps the shared exemplars once; the task's stop strings end invented
    questions, and each completion is then cut where the task's stop rule ends it (after the first
    answer line), token by token as `HFGenerator` does, so both are scored on the same text.
    `model_dir` is a model directory (a trained adapter is merged and saved first, by the caller).
    """

    name = "vllm"

    def __init__(
        self,
        model_dir: str,
        tokenizer: Any,
        max_new_tokens: int,
        stop_rule: Any = None,
        stop_strings: list[str] | None = None,
    ):
        from vllm import LLM, SamplingParams

        from rlvr_cli.decoding.stopping import TokenText

        self.llm = LLM(model=model_dir, tokenizer=model_dir, enable_prefix_caching=True, seed=0)
        self.params = SamplingParams(
            temperature=0.0,
            max_tokens=max_new_tokens,
            stop=list(stop_strings or []),
            include_stop_str_in_output=False,
        )
        self.tokenizer = tokenizer
        self.token_text = TokenText(tokenizer)
        self.stop_rule = stop_rule or StopRule
        self.max_new_tokens = max_new_tokens

    def generate(self, prompts: list[str]) -> list[Generation]:
        outputs = self.llm.generate(prompts, self.params, use_tqdm=False)
        results = []
        for output in outputs:
            ids = list(output.outputs[0].token_ids)
            rule = self.stop_rule()
            ended = output.outputs[0].finish_reason == "stop"
            for k, token in enumerate(ids):
                if token == self.tokenizer.eos_token_id or rule.feed(self.token_text(token)):
                    ids, ended = ids[: k + (token != self.tokenizer.eos_token_id)], True
                    break
            results.append(
                Generation(
                    text=self.tokenizer.decode(ids, skip_special_tokens=True),
                    tokens=len(ids),
                    cut=not ended and len(ids) >= self.max_new_tokens,
                )
            )
        return results


def greedy_generate(
    model: Any,
    rows: list[list[int]],
    *,
    max_new_tokens: int,
    eos_token_id: int,
    pad_id: int,
    token_text: Any = None,
    suppress_tokens: list[int] | None = None,
    stop_rule: Any = None,
    temperature: float | None = None,
    sampler: torch.Generator | None = None,
    static: bool | None = None,
) -> list[tuple[list[int], bool]]:
    """Greedy decoding for evaluation: shared prefix run once, finished rows dropped from the batch.
    With `temperature`, each token is sampled instead (from `sampler`, for `rlvr eval --samples`);
    `static` is `decode_rows`' (`--no-cuda-graphs`: False).

    Returns, per row, the completion's token ids (EOS excluded) and whether it ended (EOS, or the
    answer line done when `token_text` is given) rather than hitting `max_new_tokens`.

    `generate` keeps every row in the batch until the longest one ends; with a few-shot model a
    single rambling completion then sets the cost of all. Here a row leaves the batch, and its KV
    cache is dropped, the moment it ends, so the work is the sum of the completions' lengths, not
    their maximum times the batch size. Same tokens as `generate` with `AnswerStop` (tested).
    """
    stop_rule = stop_rule or StopRule  # the task's: ends a row after its answer line
    completions: list[list[int]] = [[] for _ in rows]
    ended = [False] * len(rows)
    states = [stop_rule() for _ in rows]
    suppressed = None

    def choose(logits: torch.Tensor) -> torch.Tensor:
        if suppressed is not None:
            logits[:, suppressed] = torch.finfo(logits.dtype).min
        if temperature is None:
            return logits.argmax(-1)
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=sampler)[:, 0]

    def take(row: int, token: int, step: int) -> bool:
        if token == eos_token_id:
            ended[row] = True
            return True
        completions[row].append(token)
        if token_text is not None and states[row].feed(token_text(token)):
            ended[row] = True
            return True
        return False

    # The exemplars common to the batch run once and stay in the cache once (cascade attention).
    prefill = prefill_shared(model, rows, pad_id)
    if suppress_tokens:
        suppressed = torch.tensor(suppress_tokens, device=prefill.ids.device)
    decode_rows(model, prefill, max_new_tokens, choose, take, static=static)
    return list(zip(completions, ended, strict=True))
