"""GSM8K preparation: load a source, build few-shot prompts, split, write datasets and a manifest.

    rlvr prepare --shots 8 --source ../shared/data/gsm8k --output data/

Sources (`--source`):
- a Hugging Face Hub dataset id (default `openai/gsm8k`, config `main`), through `datasets`;
- a local directory holding `train*` and `test*` files in GSM8K's format (JSON lines, a JSON
  array, or parquet, with `question` and `answer` columns), e.g. ../shared/data/gsm8k;
- `reasoning-gym[:DATASET]`: GSM-style problems generated offline by the reasoning-gym library
  (default dataset `gsm_symbolic`), for machines without the Hub.

Output, all JSON lines that `datasets.load_dataset("json", ...)` reads:
`train/dataset.json`, `val/dataset.json`, `test/dataset.json`, each row with `id`, `question`,
`answer`, `final_answer` (gold number as text) and `prompt`; `manifest.json` with counts, seed,
shots and the sha256 of each file. Same inputs give byte-identical files.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlvr_cli import __version__
from rlvr_cli.core.errors import RlvrError, UsageError
from rlvr_cli.core.files import sha256_bytes, sha256_file
from rlvr_cli.tasks.base import PROMPT_TAIL, Problem, SourceData, Task
from rlvr_cli.tasks.gsm8k.answers import normalize_gold

HUB_DEFAULT = "openai/gsm8k"
GENERATOR = "reasoning-gym"
MAX_SHOTS = 32
SPLITS = ("train", "val", "test")
DATA_EXTENSIONS = (".jsonl", ".json", ".parquet")
_CALCULATOR = re.compile(r"<<[^<>\n]{0,500}>>")

Progress = Callable[[str, int, int], None]


@dataclass
class Prepared:
    rows: dict[str, list[dict[str, Any]]]
    manifest: dict[str, Any]
    payloads: dict[str, bytes]  # relative path -> exact bytes to write


# --- prompts -----------------------------------------------------------------------------------------


def clean_solution(answer: str) -> str:
    """A GSM8K solution without calculator annotations (`48/2 = <<48/2=24>>24` -> `48/2 = 24`)."""
    return _CALCULATOR.sub("", answer)


def exemplar_text(problem: Problem) -> str:
    """One solved example in the reference layout, ending `#### The final answer is N`."""
    steps = clean_solution(problem.answer)
    steps = steps[: steps.rfind("####")].strip() if "####" in steps else steps.strip()
    return f"Question: {problem.question.strip()}\n{PROMPT_TAIL} {steps}\n#### The final answer is {problem.final_answer}"


# --- sources -----------------------------------------------------------------------------------------


def _rows_from_file(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """Yield (line number or row index, row) from a JSONL, JSON-array or parquet file."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise RlvrError(f"{path}: reading parquet needs pyarrow: pip install 'rlvr[train]'") from None
        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield i, row
        return
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RlvrError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None
        for i, row in enumerate(data, start=1):
            yield i, row
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise RlvrError(
                f"{path}:{lineno}: malformed JSON line: {exc.msg}; fix or remove that line"
            ) from None


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


def _find_split_file(directory: Path, split: str) -> Path | None:
    candidates = [
        p
        for d in (directory, directory / "main")
        if d.is_dir()
        for p in sorted(d.iterdir())
        if p.is_file() and p.name.startswith(split) and any(p.name.endswith(ext) for ext in DATA_EXTENSIONS)
    ]
    return candidates[0] if candidates else None


def load_local(path: Path, strict: bool) -> SourceData:
    if not path.exists():
        raise UsageError(
            f"{path}: source not found; give a directory with train.jsonl and test.jsonl (e.g. ../shared/data/gsm8k)"
        )
    if not path.is_dir():
        raise UsageError(f"{path}: give the directory that holds the train and test files, not a single file")
    files = {split: _find_split_file(path, split) for split in ("train", "test")}
    missing = [s for s, f in files.items() if f is None]
    if missing:
        raise UsageError(
            f"{path}: no {' or '.join(missing)} file (expected names like train.jsonl and test.jsonl; .json and .parquet work too)"
        )
    source = SourceData(name=str(path), kind="local", train=[], test=[])
    for split, file in files.items():
        assert file is not None
        problems, skipped = _problems(_rows_from_file(file), split, str(file), strict)
        setattr(source, split, problems)
        source.skipped[split] = skipped
        source.files[str(file)] = sha256_file(file)
    return source


def load_hub(name: str, strict: bool) -> SourceData:
    try:
        import datasets
    except ImportError:
        raise RlvrError(
            f"loading {name} from the Hugging Face Hub needs `datasets`: pip install 'rlvr[train]', "
            "or use --source DIR (a local GSM8K copy) or --source reasoning-gym"
        ) from None
    try:
        ds = datasets.load_dataset(name, "main")
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RlvrError(
            f"could not load {name} from the Hugging Face Hub ({reason}); without the Hub use "
            "--source DIR (a local GSM8K copy such as ../shared/data/gsm8k) or --source reasoning-gym (offline generator)"
        ) from None
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
    except ImportError:
        raise RlvrError(
            "--source reasoning-gym needs the reasoning-gym package: pip install 'rlvr[train]'"
        ) from None
    test_size = max(50, size // 10)

    def generate(n: int, split_seed: int) -> list[tuple[int, dict[str, Any]]]:
        try:
            ds = reasoning_gym.create_dataset(dataset_name, size=n, seed=split_seed)
        except Exception as exc:
            raise UsageError(
                f"--source {spec}: reasoning-gym cannot create {dataset_name!r}: {exc}"
            ) from None
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


def split_problems(
    train: list[Problem], shots: int, val_fraction: float, seed: int
) -> tuple[list[Problem], list[Problem], list[Problem]]:
    """Choose exemplars by seed and remove them; split the rest into train/val (val rounded up)."""
    if shots > len(train):
        raise UsageError(f"--shots {shots}: the source has only {len(train)} usable train rows")
    rng = random.Random(seed)
    exemplar_idx = sorted(rng.sample(range(len(train)), shots))
    exemplar_set = set(exemplar_idx)
    rest = [p for i, p in enumerate(train) if i not in exemplar_set]
    n_val = math.ceil(len(rest) * val_fraction)
    order = list(range(len(rest)))
    rng.shuffle(order)
    val_set = set(order[:n_val])
    val = [p for i, p in enumerate(rest) if i in val_set]
    train_rows = [p for i, p in enumerate(rest) if i not in val_set]
    if not train_rows or not val:
        raise UsageError(
            f"--val-fraction {val_fraction}: leaves {len(train_rows)} train and {len(val)} val rows; both must be non-empty"
        )
    return [train[i] for i in exemplar_idx], train_rows, val


def longest_by_chars(prompts: list[str], k: int = 64) -> list[str]:
    """The k longest prompts by characters. Token counts follow character counts closely, so
    tokenizing these finds the longest prompt in tokens without tokenizing every prompt."""
    return sorted(prompts, key=len, reverse=True)[:k]


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def prepare(
    source: SourceData,
    *,
    shots: int,
    val_fraction: float,
    seed: int,
    count_tokens: Callable[[list[str]], list[int]] | None = None,
    tokenizer_name: str | None = None,
    progress: Progress | None = None,
    task: Task | None = None,
) -> Prepared:
    """Build the three datasets and the manifest in memory (nothing is written here).

    `task` writes the exemplars and prompts (default GSM8K) and is recorded in the manifest, so
    that train and eval score the data as it was meant to be scored.
    """
    if task is None:
        from rlvr_cli.tasks import get_task

        task = get_task()
    if not 0 <= shots <= MAX_SHOTS:
        raise UsageError(f"--shots {shots}: must be between 0 and {MAX_SHOTS}")
    if not 0 < val_fraction < 1:
        raise UsageError(f"--val-fraction {val_fraction}: must be strictly between 0 and 1, e.g. 0.1")
    exemplars, train, val = split_problems(source.train, shots, val_fraction, seed)
    splits = {"train": train, "val": val, "test": source.test}
    if not source.test:
        raise RlvrError(f"{source.name}: the test split has no usable rows")
    total = sum(len(v) for v in splits.values())
    done = 0
    # Every prompt shares the same exemplar prefix: build it once.
    prefix = "".join(task.exemplar_text(e) + "\n\n" for e in exemplars)
    rows: dict[str, list[dict[str, Any]]] = {}
    for split, problems in splits.items():
        out = []
        for p in problems:
            row = {
                "id": p.id,
                "question": p.question,
                "answer": p.answer,
                "final_answer": p.final_answer,
                "prompt": prefix + task.prompt_text(p),
            }
            if p.metadata is not None:
                # One JSON string per row: Arrow (datasets) needs one type per column.
                row["metadata"] = json.dumps(p.metadata, ensure_ascii=False, sort_keys=True)
            out.append(row)
            done += 1
            if progress and done % 500 == 0:
                progress("building prompts", done, total)
        rows[split] = out
    if progress:
        progress("building prompts", total, total)

    longest = max((r for split_rows in rows.values() for r in split_rows), key=lambda r: len(r["prompt"]))
    longest_info: dict[str, Any] = {
        "id": longest["id"],
        "chars": len(longest["prompt"]),
        "tokens": None,
        "tokenizer": None,
    }
    if count_tokens is not None:
        by_prompt = {r["prompt"]: r["id"] for split_rows in rows.values() for r in split_rows}
        candidates = longest_by_chars(list(by_prompt))
        counts = count_tokens(candidates)
        best = max(range(len(candidates)), key=lambda i: counts[i])
        longest_info.update(id=by_prompt[candidates[best]], tokens=counts[best], tokenizer=tokenizer_name)

    payloads = {f"{split}/dataset.json": _jsonl(split_rows) for split, split_rows in rows.items()}
    manifest = {
        "rlvr_version": __version__,
        "source": {"name": source.name, "kind": source.kind, "files": source.files},
        "task": task.describe(),
        "shots": shots,
        "seed": seed,
        "val_fraction": val_fraction,
        "exemplar_ids": [e.id for e in exemplars],
        "counts": {split: len(split_rows) for split, split_rows in rows.items()},
        "skipped": source.skipped,
        "longest_prompt": longest_info,
        "files": {
            rel: {"sha256": sha256_bytes(data), "bytes": len(data), "rows": len(rows[rel.split("/")[0]])}
            for rel, data in payloads.items()
        },
    }
    payloads["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    return Prepared(rows=rows, manifest=manifest, payloads=payloads)


def existing_differs(output: Path, payloads: dict[str, bytes]) -> list[str]:
    """Files under `output` that exist with content different from what would be written."""
    changed = []
    for rel, data in payloads.items():
        target = output / rel
        if target.exists() and (
            target.stat().st_size != len(data) or sha256_file(target) != sha256_bytes(data)
        ):
            changed.append(rel)
    return changed


def write_prepared(output: Path, prepared: Prepared) -> None:
    """Write every file atomically; the manifest last, so a manifest always describes complete files."""
    from rlvr_cli.core.files import atomic_write

    for rel in sorted(prepared.payloads, key=lambda r: r == "manifest.json"):
        with atomic_write(output / rel, "wb") as fh:
            fh.write(prepared.payloads[rel])


def read_manifest(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
