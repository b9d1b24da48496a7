"""`rlvr eval`: GSM8K accuracy that can be quoted.

    rlvr eval --checkpoint outputs/smoke-cpu --limit 50 --baseline
    rlvr eval --model smollm2-135m --data data --limit 100 --output eval-results/base
    rlvr eval --job --baseline          # the model of the latest SageMaker job (rlvr_cli.cloud.sagemaker.artifacts)

What makes it honest, against the reference's evaluation (../shared/GUIDE.md):
- the test split, never train; base and tuned models on the same problems in the same run;
- greedy decoding, stopped after the answer line, so an invented follow-up question is neither
  generated nor scored;
- the answer read exactly as the correctness reward reads it (`rlvr_cli.tasks.gsm8k.answers`);
- accuracy with a 95 % interval, and the paired fixed/broken counts when comparing.

Generation sits behind the small `Generator` interface; `HFGenerator` is the one implemented
(transformers, CPU or GPU). A vLLM generator would implement the same `generate` and leave scoring
and reporting untouched.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from rlvr_cli.core import console
from rlvr_cli.core.errors import ExitCode, RlvrError, UsageError
from rlvr_cli.core.files import atomic_write, write_json
from rlvr_cli.evaluation.scoring import Sample, compare, score, summarize


@dataclass
class EvalRequest:
    checkpoints: list[str | Path] = field(default_factory=list)  # directories or s3://.../model.tar.gz
    job: str | None = None  # a SageMaker job whose model to evaluate; history.LATEST_JOB for the latest
    profile: str | None = None  # AWS, for --job and S3 checkpoints
    region: str | None = None
    model: str | None = None
    baseline: bool = False
    data: str = "data"
    shots: int | None = None
    limit: int | None = None
    batch_size: int = 16
    max_new_tokens: int = 512
    output: Path | None = None
    track: bool = True


@dataclass
class Generation:
    text: str
    tokens: int
    cut: bool


class Generator(Protocol):
    name: str

    def generate(self, prompts: list[str]) -> list[Generation]: ...


# --- data ----------------------------------------------------------------------------------------------


def load_problems(
    spec: str, shots: int | None, task_name: str | None = None, options: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], str, Any]:
    """Test problems, where they came from, and the task that scores them.

    From a prepared file or directory the task is the one its manifest names (GSM8K for sets
    prepared before tasks existed); from a source, prompts are built here for `task_name`.
    """
    from rlvr_cli.data.build import prepare, read_manifest
    from rlvr_cli.tasks import get_task, task_for_source, task_from_manifest

    path = Path(spec)
    if path.is_file():
        rows, manifest, where = _read_prepared(path), read_manifest(path.parent.parent), str(path)
    elif (path / "test" / "dataset.json").is_file():
        rows, manifest, where = (
            _read_prepared(path / "test" / "dataset.json"),
            read_manifest(path),
            str(path / "test" / "dataset.json"),
        )
    elif path.exists() or "/" in spec or spec.startswith("reasoning-gym"):
        name, task_options = task_for_source(spec, task_name, dict(options or {}))
        task = get_task(name, task_options)
        source = task.load(spec, size=2000, seed=42, strict=False)
        n = 8 if shots is None else shots
        prepared = prepare(source, shots=n, val_fraction=0.1, seed=42, task=task)
        return prepared.rows["test"], f"{spec} (test, {n} shots)", task
    else:
        raise UsageError(
            f"--data {spec}: not found; give a prepared directory (rlvr prepare), a dataset.json, or a source"
        )
    task = task_from_manifest(manifest)
    if shots is not None and manifest and manifest.get("shots") != shots:
        source = task.load(manifest["source"]["name"], size=2000, seed=manifest["seed"], strict=False)
        prepared = prepare(
            source, shots=shots, val_fraction=manifest["val_fraction"], seed=manifest["seed"], task=task
        )
        console.notice(f"prompts rebuilt with {shots} shots (prepared with {manifest.get('shots')})")
        return prepared.rows["test"], f"{manifest['source']['name']} (test, {shots} shots)", task
    if shots is not None and not manifest:
        raise UsageError(
            f"--shots {shots}: {where} has no manifest.json naming its source; prepare it again with --shots {shots}"
        )
    return rows, where, task


def _read_prepared(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise RlvrError(f"{path}:{lineno}: malformed JSON line ({exc.msg})") from None
    if not rows:
        raise RlvrError(f"{path}: no problems")
    missing = [c for c in ("prompt", "final_answer") if c not in rows[0]]
    if missing:
        raise RlvrError(f"{path}: rows lack {', '.join(missing)}; evaluate a set written by `rlvr prepare`")
    return rows


# --- models --------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    label: str  # what the report calls it
    model: Any
    tokenizer: Any
    base: str | None  # base model name, for --baseline
    run: dict[str, Any] | None  # rlvr_run.json of a checkpoint


def _device_and_dtype() -> tuple[str, Any]:
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.float32  # bf16 matmuls are slow or unsupported on most CPUs


def load_model(spec: str, *, is_checkpoint: bool) -> LoadedModel:
    from rlvr_cli.models.loading import load_causal_lm, load_tokenizer, resolve_model
    from rlvr_cli.training.output_dir import read_run

    device, dtype = _device_and_dtype()
    path = Path(spec)
    if not is_checkpoint:
        resolved = resolve_model(spec)
        model = load_causal_lm(resolved, dtype=dtype).to(device)
        # A merged model written by `rlvr train --merge` keeps its run manifest one level up.
        run = None
        if path.is_dir():
            run = read_run(path) or (read_run(path.parent) if path.name == "merged" else None)
        base = (run or {}).get("model", {}).get("name") or spec
        tokenizer = load_tokenizer(spec, padding_side="left")
        return LoadedModel(label=spec, model=model, tokenizer=tokenizer, base=base, run=run)
    if not path.is_dir():
        raise UsageError(f"--checkpoint {spec}: directory not found")
    run = read_run(path)
    if (path / "adapter_config.json").is_file():
        config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        # The run manifest keeps the name the user trained from (e.g. an offline model's short name).
        base = (run or {}).get("model", {}).get("name") or config.get("base_model_name_or_path")
        if not base:
            raise RlvrError(f"{spec}: adapter_config.json names no base model; pass the base with --model")
        try:
            resolved = resolve_model(base)
            base_model = load_causal_lm(resolved, dtype=dtype)
        except RlvrError as exc:
            raise RlvrError(f"{spec}: the adapter's base model cannot be loaded ({exc.message})") from None
        from peft import PeftModel

        # Merging the adapter makes inference as fast as the base model's.
        model = PeftModel.from_pretrained(base_model, str(path)).merge_and_unload().to(device)
        return LoadedModel(
            label=spec, model=model, tokenizer=load_tokenizer(spec, padding_side="left"), base=base, run=run
        )
    if (path / "config.json").is_file():
        resolved = resolve_model(spec)
        model = load_causal_lm(resolved, dtype=dtype).to(device)
        base = (run or {}).get("model", {}).get("name")
        return LoadedModel(
            label=spec, model=model, tokenizer=load_tokenizer(spec, padding_side="left"), base=base, run=run
        )
    raise UsageError(
        f"--checkpoint {spec}: not a model or adapter directory (no adapter_config.json or config.json)"
    )


# --- generation ----------------------------------------------------------------------------------------


class HFGenerator:
    """Greedy, batched transformers decoding (`rlvr_cli.training.generation.greedy_generate`): stops after the
    answer line, runs the shared prompt prefix once, drops finished rows from the batch."""

    name = "transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_new_tokens: int,
        suppress_tokens: list[int] | None = None,
        stop_rule: Any = None,
    ):
        from rlvr_cli.training.stopping import TokenText

        self.model = model.eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.max_new_tokens = max_new_tokens
        self.suppress_tokens = suppress_tokens  # token ids never generated (benchmarks/bench_gpu.py)
        self.stop = TokenText(tokenizer)  # the answer-line stop reads each token's text
        self.stop_rule = stop_rule  # the task's (default: after the first answer line)

    def generate(self, prompts: list[str]) -> list[Generation]:
        from rlvr_cli.training.generation import greedy_generate

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
        )
        return [
            Generation(
                text=self.tokenizer.decode(ids, skip_special_tokens=True),
                tokens=len(ids),
                cut=not ended and len(ids) >= self.max_new_tokens,
            )
            for ids, ended in outputs
        ]


def evaluate(
    generator: Generator, rows: list[dict[str, Any]], batch_size: int, label: str, task: Any = None
) -> tuple[list[Sample], float, bool]:
    """Generate and score every row; returns samples in input order, wall seconds, interrupted."""
    # Similar lengths together: less padding per batch. Scores are mapped back to input order.
    lengths = [len(r["prompt"]) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: lengths[i])
    done: dict[int, Sample] = {}
    start = time.perf_counter()
    interrupted = False
    with Progress(
        TextColumn(f"[bold]{label}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console.err,
    ) as bar:
        bar_task = bar.add_task("eval", total=len(rows), status="")
        try:
            for i in range(0, len(order), batch_size):
                batch = order[i : i + batch_size]
                for index, gen in zip(
                    batch, generator.generate([rows[j]["prompt"] for j in batch]), strict=True
                ):
                    done[index] = score(rows[index], gen.text, gen.tokens, gen.cut, task)
                correct = sum(s.correct for s in done.values())
                bar.update(bar_task, completed=len(done), status=f"acc {correct / len(done):.3f}")
        except KeyboardInterrupt:
            interrupted = True
    return [done[i] for i in sorted(done)], time.perf_counter() - start, interrupted


# --- reporting ----------------------------------------------------------------------------------------


def results_table(
    results: list[dict[str, Any]], comparison: dict[str, Any] | None, title: str = "GSM8K"
) -> Table:
    table = Table(title=f"{title} evaluation", title_justify="left")
    for column, justify in (
        ("model", "left"),
        ("n", "right"),
        ("accuracy [95% CI]", "right"),
        ("format", "right"),
        ("cut", "right"),
        ("tokens", "right"),
        ("problems/s", "right"),
    ):
        table.add_column(column, justify=justify, overflow="fold")
    for r in results:
        s = r["summary"]
        low, high = s["accuracy_ci95"]
        table.add_row(
            r["label"],
            str(s["n"]),
            f"{s['accuracy']:.1%} [{low:.1%}, {high:.1%}]",
            f"{s['format_rate']:.0%}",
            f"{s['cut_rate']:.0%}",
            f"{s['mean_completion_tokens']:.0f}",
            f"{s['problems_per_second']:.2f}",
        )
    caption = (
        "format: well-formed answer line · cut: stopped at --max-new-tokens · tokens: mean per completion"
    )
    if comparison:
        caption = (
            f"difference {comparison['accuracy_difference']:+.1%} on {comparison['n']} paired problems: "
            f"{comparison['fixed']} fixed, {comparison['broken']} broken (McNemar exact p = {comparison['mcnemar_p']:.3g})\n"
            + caption
        )
    table.caption = caption
    table.caption_justify = "left"
    return table


def _write_outputs(output: Path, summary: dict[str, Any], samples: dict[str, list[Sample]]) -> None:
    write_json(output / "summary.json", summary)
    for name, rows in samples.items():
        with atomic_write(output / name) as fh:
            for s in rows:
                fh.write(json.dumps(s.as_dict(), ensure_ascii=False) + "\n")


def _track(
    request: EvalRequest, primary: LoadedModel, summary: dict[str, Any], output: Path | None
) -> dict[str, Any] | None:
    if not request.track:
        return None
    from rlvr_cli.tracking.trackers import MLflowTracker

    mlflow_info = (primary.run or {}).get("mlflow") or {}
    try:
        tracker = MLflowTracker(
            tracking_uri=mlflow_info.get("tracking_uri"),
            experiment=mlflow_info.get("experiment") or "rlvr",
            run_id=mlflow_info.get("run_id"),
            run_name=None if mlflow_info.get("run_id") else f"eval-{Path(primary.label).name}",
        )
    except RlvrError as exc:
        console.warn(f"results not logged to MLflow: {exc.message}")
        return None
    except ImportError:
        console.warn("results not logged to MLflow: mlflow is not installed (pip install 'rlvr[train]')")
        return None
    for result in summary["results"]:
        prefix = "eval/" if result is summary["results"][0] else "eval_baseline/"
        tracker.log_metrics(
            {f"{prefix}{k}": v for k, v in result["summary"].items() if isinstance(v, int | float)}
        )
    if summary.get("comparison"):
        tracker.log_metrics({f"eval_comparison/{k}": v for k, v in summary["comparison"].items()})
    tracker.log_dict(summary, "eval/summary.json")
    if output:
        tracker.log_artifact(output / "samples.jsonl", "eval")
    tracker.finish("FINISHED")
    return {"tracking_uri": tracker.tracking_uri, "run_id": tracker.run_id}


def run_eval(request: EvalRequest) -> dict[str, Any]:
    if request.limit is not None and request.limit < 1:
        raise UsageError(f"--limit {request.limit}: must be at least 1")
    if request.batch_size < 1 or request.max_new_tokens < 1:
        raise UsageError("--batch-size and --max-new-tokens must be at least 1")
    count = len(request.checkpoints) + (request.job is not None)
    if not count and not request.model:
        raise UsageError(
            "nothing to evaluate: pass --checkpoint DIR (a trained output), --job (a SageMaker job) or --model NAME"
        )
    if count > 2 or (request.model and count > 1):
        raise UsageError(
            "compare at most two models: two --checkpoint (or --job and a --checkpoint), or one with --baseline"
        )
    if request.baseline and count == 2:
        raise UsageError(
            "--baseline compares a checkpoint with its base; with two --checkpoint drop --baseline"
        )
    for checkpoint in request.checkpoints:  # fail on a bad path before loading anything heavy
        if _is_s3(checkpoint):
            continue
        checkpoint = Path(checkpoint)
        if not checkpoint.is_dir():
            raise UsageError(f"--checkpoint {checkpoint}: directory not found")
        if not (checkpoint / "adapter_config.json").is_file() and not (checkpoint / "config.json").is_file():
            raise UsageError(
                f"--checkpoint {checkpoint}: not a model or adapter directory (no adapter_config.json or config.json)"
            )

    rows, where, task = load_problems(request.data, request.shots)
    if request.limit:
        rows = rows[: request.limit]
    # Models on S3 (a job's model.tar.gz) are fetched into the cache, then evaluated like local ones.
    from rlvr_cli.cloud.sagemaker.artifacts import FetchedCheckpoint, resolve_remote

    checkpoints: list[str] = []
    fetched: dict[str, FetchedCheckpoint] = {}
    for item in resolve_remote(
        [str(c) for c in request.checkpoints], request.job, profile=request.profile, region=request.region
    ):
        if isinstance(item, FetchedCheckpoint):
            fetched[str(item.path)] = item
            item = str(item.path)
        checkpoints.append(item)
    console.info(f"evaluating on {len(rows)} problems from {where}")

    from rlvr_cli.training.run import quiet_libraries

    quiet_libraries()
    # What to evaluate, in report order: the model of interest first, then the one it is compared with.
    specs: list[tuple[str, bool]] = [(c, True) for c in checkpoints]
    if request.model:
        specs.insert(0, (request.model, False))
    results, all_samples, loaded_first = [], [], None
    interrupted = False
    for index, (spec, is_checkpoint) in enumerate(specs):
        loaded = load_model(spec, is_checkpoint=is_checkpoint)
        source = fetched.get(spec)
        if source is not None:
            loaded.label = source.label  # the job or S3 URI, not the cache path
            if request.track:
                loaded.run = _without_container_mlflow(loaded.run)
        loaded_first = loaded_first or loaded
        samples, wall, interrupted = _run_one(loaded, rows, request, task)
        result: dict[str, Any] = {"label": loaded.label, "summary": summarize(samples, wall)}
        if source is not None:
            result["checkpoint"] = source.as_dict()
        results.append(result)
        all_samples.append(samples)
        if interrupted:
            break
        if index == 0 and request.baseline:
            if loaded.base == spec:
                console.notice(
                    f"{spec} is a base model: there is no other model to compare it with; --baseline ignored"
                )
                continue
            if not loaded.base:
                raise RlvrError(
                    f"{spec}: its base model is unknown (no rlvr_run.json or adapter config); pass --model BASE instead of --baseline"
                )
            base = load_model(loaded.base, is_checkpoint=False)
            base.label = f"base: {loaded.base}"
            samples, wall, interrupted = _run_one(base, rows[: len(samples)], request, task)
            results.append({"label": base.label, "summary": summarize(samples, wall)})
            all_samples.append(samples)
            if interrupted:
                break

    comparison = compare(all_samples[1], all_samples[0]) if len(all_samples) == 2 else None
    summary: dict[str, Any] = {
        "data": where,
        "task": task.describe(),
        "max_new_tokens": request.max_new_tokens,
        "batch_size": request.batch_size,
        "generator": HFGenerator.name,
        "interrupted": interrupted,
        "results": results,
        "comparison": comparison,
    }
    console.err.print(results_table(results, comparison, task.title))
    if interrupted:
        console.warn(
            f"interrupted: the results above cover the {results[-1]['summary']['n']} problems finished"
        )
    if request.output:
        names = ["samples.jsonl", "baseline_samples.jsonl" if request.baseline else "compared_samples.jsonl"]
        _write_outputs(request.output, summary, dict(zip(names, all_samples, strict=False)))
        console.info(f"wrote {request.output / 'summary.json'} and {request.output / 'samples.jsonl'}")
    assert loaded_first is not None
    summary["mlflow"] = _track(request, loaded_first, summary, request.output)
    summary["exit_code"] = int(ExitCode.INTERRUPTED if interrupted else ExitCode.OK)
    return summary


def _is_s3(checkpoint: str | Path) -> bool:
    return str(checkpoint).startswith("s3://")


def _without_container_mlflow(run: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run manifest of a SageMaker job's model, minus an MLflow run that is not reachable from here.

    A job with no tracking server logs to an embedded store on its own disk (sqlite or file): its
    results go to a new run here. A server (http, a SageMaker MLflow ARN) is kept: the evaluation is
    logged to the job's run there."""
    mlflow_info = (run or {}).get("mlflow") or {}
    uri = str(mlflow_info.get("tracking_uri") or "")
    if (
        run is None
        or not mlflow_info.get("run_id")
        or (uri and not uri.startswith(("sqlite:", "file:", "/")))
    ):
        return run
    console.notice(
        f"the job logged to MLflow inside its container ({uri or 'embedded store'}); results go to a new run here"
    )
    return {**run, "mlflow": None}


def _run_one(
    loaded: LoadedModel, rows: list[dict[str, Any]], request: EvalRequest, task: Any
) -> tuple[list[Sample], float, bool]:
    generator = HFGenerator(loaded.model, loaded.tokenizer, request.max_new_tokens, stop_rule=task.stop_rule)
    samples, wall, interrupted = evaluate(
        generator, rows, request.batch_size, Path(loaded.label).name or loaded.label, task
    )
    # Free the model before loading the next one.
    del generator
    loaded.model = None
    return samples, wall, interrupted
