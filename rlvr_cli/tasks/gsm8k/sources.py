"""Where GSM8K problems come from: the Hugging Face Hub, a local copy, or an offline generator.

Sources (`--source`):
- a Hugging Face Hub dataset id (default `openai/gsm8k`, config `main`), through `datasets`;
- a local directory holding `train*` and `test*` files in GSM8K's format (JSON lines, a JSON
  array, or parquet, with `question` and `answer` columns), such as a downloaded copy of GSM8K;
- `reasoning-gym[:DATASET]`: GSM-style problems generated offline by the reasoning-gym library
  (default dataset `gsm_symbolic`), for machines without the Hub.

Each problem keeps GSM8K's worked solution (exemplars show it, calculator annotations removed) and
its gold number as text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rlvr_cli.core.errors import RlvrError, UsageError, first_line
from rlvr_cli.core.files import sha256_file
from rlvr_cli.tasks.base import PROMPT_TAIL, Problem, SourceData
from rlvr_cli.tasks.files import find_split_file, rows_from_file
from rlvr_cli.tasks.gsm8k.answers import normalize_gold

GENERATOR = "reasoning-gym"
_CALCULATOR = re.compile(r"<<[^<>\n]{0,500}>>")


def clean_solution(answer: str) -> str:
    """A GSM8K solution without calculator annotations (`48/2 = <<48/2=24>>24` -> `48/2 = 24`)."""
    return _CALCULATOR.sub("", answer)


def exemplar_text(problem: Problem) -> str:
    """One solved example in the reference layout, ending `#### The final answer is N`."""
    steps = clean_solution(problem.answer)
    steps = steps[: steps.rfind("####")].strip() if "####" in steps else steps.strip()
    return f"Question: {problem.question.strip()}\n{PROMPT_TAIL} {steps}\n#### The final answer is {problem.final_answer}"


# -----------------------------------------------------------------------------------------


def _problems(
    rows: Iterable[tuple[int, dict[str, Any]]], split: str, where: str, strict: bool
) -> tuple[list[Problem], int]:
    problems, skipped = [], 0
    for index, (pos, row) in enumerate(rows):
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("question"), str)
            or not isinstance(row.get("answer"), str)
        ):
            raise RlvrError(f"{where}:{pos}: expected an object with string fields 'question' and 'answer'")
        gold = normalize_gold(row["answer"])
        if gold is None:
            if strict:
                raise RlvrError(
                    f"{where}:{pos}: answer has no readable '#### N' line; drop --strict to skip such rows"
                )
            skipped += 1
            continue
        problems.append(
            Problem(id=f"{split}-{index}", question=row["question"], answer=row["answer"], final_answer=gold)
        )
    return problems, skipped


def load_local(path: Path, strict: bool) -> SourceData:
    if not path.exists():
        raise UsageError(
            f"{path}: source not found; give a directory with train.jsonl and test.jsonl (a local GSM8K copy)"
        )
    if not path.is_dir():
        raise UsageError(f"{path}: give the directory that holds the train and test files, not a single file")
    files = {split: find_split_file(path, split) for split in ("train", "test")}
    missing = [s for s, f in files.items() if f is None]
    if missing:
        raise UsageError(
            f"{path}: no {' or '.join(missing)} file (expected names like train.jsonl and test.jsonl; .json and .parquet work too)"
        )
    source = SourceData(name=str(path), kind="local", train=[], test=[])
    for split, file in files.items():
        assert file is not None
        problems, skipped = _problems(rows_from_file(file), split, str(file), strict)
        setattr(source, split, problems)
        source.skipped[split] = skipped
        source.files[str(file)] = sha256_file(file)
    return source


def load_hub(name: str, strict: bool) -> SourceData:
    try:
        import datasets
    except ImportError as exc:
        raise RlvrError(
            f"loading {name} from the Hugging Face Hub needs `datasets`: pip install 'rlvr[train]', "
            "or use --source DIR (a local GSM8K copy) or --source reasoning-gym"
        ) from exc
    try:
        ds = datasets.load_dataset(name, "main")
    except Exception as exc:
        reason = first_line(exc)
        raise RlvrError(
            f"could not load {name} from the Hugging Face Hub ({reason}); without the Hub use "
            "--source DIR (a local GSM8K copy: train.jsonl and test.jsonl) or --source reasoning-gym (offline generator)"
        ) from exc
    source = SourceData(name=name, kind="hub", train=[], test=[])
    for split in ("train", "test"):
        rows = ((i + 1, row) for i, row in enumerate(ds[split]))
        problems, skipped = _problems(rows, split, f"{name}[{split}]", strict)
        setattr(source, split, problems)
        source.skipped[split] = skipped
    return source


def load_generator(spec: str, size: int, seed: int, strict: bool) -> SourceData:
    dataset_name = spec.split(":", 1)[1] if ":" in spec else "gsm_symbolic"
    try:
        import reasoning_gym
    except ImportError as exc:
        raise RlvrError(
            "--source reasoning-gym needs the reasoning-gym package: pip install 'rlvr[train]'"
        ) from exc
    test_size = max(50, size // 10)

    def generate(n: int, split_seed: int) -> list[tuple[int, dict[str, Any]]]:
        try:
            ds = reasoning_gym.create_dataset(dataset_name, size=n, seed=split_seed)
        except Exception as exc:
            raise UsageError(f"--source {spec}: reasoning-gym cannot create {dataset_name!r}: {exc}") from exc
        rows = []
        for i, item in enumerate(ds, start=1):
            cot = item.get("metadata", {}).get("answer_cot")
            answer = cot if isinstance(cot, str) and "####" in cot else f"#### {item['answer']}"
            rows.append((i, {"question": item["question"], "answer": answer}))
        return rows

    source = SourceData(name=f"{GENERATOR}:{dataset_name}", kind="generator", train=[], test=[])
    # Different seeds per split so that test problems are not copies of train problems.
    source.train, source.skipped["train"] = _problems(generate(size, seed), "train", source.name, strict)
    source.test, source.skipped["test"] = _problems(
        generate(test_size, seed + 1_000_003), "test", source.name, strict
    )
    return source


def load_source(spec: str, *, strict: bool = False, size: int = 2000, seed: int = 42) -> SourceData:
    """Resolve `--source`: a generator name, an existing local path, or a Hub dataset id."""
    if spec == GENERATOR or spec.startswith(GENERATOR + ":"):
        return load_generator(spec, size, seed, strict)
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        return load_local(path, strict)
    return load_hub(spec, strict)


# --- splits and files --------------------------------------------------------------------------------
