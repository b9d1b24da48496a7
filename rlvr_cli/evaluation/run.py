"""`rlvr eval`: accuracy that can be quoted.

    rlvr eval --checkpoint outputs/smoke-cpu --limit 50 --baseline
    rlvr eval --model smollm2-135m --data data --limit 100 --output eval-results/base
    rlvr eval --job --baseline          # the model of the latest SageMaker job (rlvr_cli.cloud.sagemaker.artifacts)

What makes it honest, against the reference's evaluation (../shared/GUIDE.md):
- the test split, never train; base and tuned models on the same problems in the same run;
- greedy decoding, stopped after the answer line, so an invented follow-up question is neither
  generated nor scored;
- the answer read exactly as the correctness reward reads it (the task's `read` and `check`);
- accuracy with a 95 % interval, and the paired fixed/broken counts when comparing.

`run_eval` returns an `EvalResult` and prints nothing but progress; the CLI renders the table.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rlvr_cli import __version__
from rlvr_cli.core import console
from rlvr_cli.core.errors import ExitCode, RlvrError, UsageError
from rlvr_cli.core.files import atomic_write, write_json
from rlvr_cli.core.progress import Progress, silent
from rlvr_cli.evaluation.generators import Generator, HFGenerator, VLLMGenerator, check_generator
from rlvr_cli.evaluation.loading import LoadedModel, check_base, load_model
from rlvr_cli.evaluation.problems import load_problems
from rlvr_cli.evaluation.scoring import Sample, compare, score, summarize, summarize_sampled
from rlvr_cli.models.record import RunRecord


@dataclass
class Checkpoint:
    """A checkpoint to evaluate, on this machine: a local directory, or one fetched from S3."""

    path: str
    label: str | None = None  # what reports call it (a job name or S3 URI) instead of the path
    fetched: dict[str, Any] | None = None  # where it came from, for summary.json (s3_uri, job, ...)


class RemoteCheckpoints(Protocol):
    """How evaluation gets checkpoints that live on S3 (a SageMaker job's model, an S3 URI) without
    calling a cloud service itself: the CLI passes `rlvr_cli.cloud.sagemaker.artifacts.SageMakerCheckpoints`.
    """

    def locate(self) -> None:
        """Cheap checks before the local data is read: the job exists and completed."""

    def fetch(self) -> list[Checkpoint]:
        """Every checkpoint of the request in order, S3 ones downloaded, verified and unpacked."""


@dataclass
class EvalRequest:
    checkpoints: list[str | Path] = field(default_factory=list)  # directories or s3://.../model.tar.gz
    job: str | None = None  # a SageMaker job whose model to evaluate; history.LATEST_JOB for the latest
    remote: RemoteCheckpoints | None = None  # fetches `job` and S3 checkpoints (the CLI's)
    model: str | None = None
    baseline: bool = False
    data: str = "data"
    shots: int | None = None
    limit: int | None = None
    batch_size: int = 64
    max_new_tokens: int = 512
    output: Path | None = None
    track: bool = True
    generator: str = "transformers"  # or vllm (CUDA)
    cuda_graphs: bool = True  # transformers on CUDA: each decoding step a replayed CUDA graph
    progress: Progress | None = None  # reports each model's rows done and running accuracy
    samples: int = 1  # > 1: also K sampled completions per problem, for pass@k and maj@k
    temperature: float = 1.0  # of those samples
    seed: int = 0


@dataclass
class EvalResult:
    summary: dict[str, Any]  # summary.json: data, task, settings, results per model, comparison
    task_title: str
    mlflow: dict[str, Any] | None = None  # the run the results were logged to
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        return bool(self.summary["interrupted"])

    @property
    def exit_code(self) -> int:
        return int(ExitCode.INTERRUPTED if self.interrupted else ExitCode.OK)

    def to_dict(self) -> dict[str, Any]:
        """What `rlvr eval --json` prints."""
        return {**self.summary, "mlflow": self.mlflow, "exit_code": self.exit_code}


def evaluate(
    generator: Generator,
    rows: list[dict[str, Any]],
    batch_size: int,
    label: str,
    task: Any = None,
    progress: Progress | None = None,
) -> tuple[list[Sample], float, bool]:
    """Generate and score every row; returns samples in input order, wall seconds, interrupted.
    Reports `label` and the running accuracy to `progress` after each batch."""
    # Similar lengths together: less padding per batch. Scores are mapped back to input order.
    lengths = [len(r["prompt"]) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: lengths[i])
    done: dict[int, Sample] = {}
    start = time.perf_counter()
    interrupted = False
    report = progress or silent
    report(label, 0, len(rows))
    try:
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            for index, gen in zip(batch, generator.generate([rows[j]["prompt"] for j in batch]), strict=True):
                done[index] = score(rows[index], gen.text, gen.tokens, gen.cut, task)
            correct = sum(s.correct for s in done.values())
            report(f"{label}  acc {correct / len(done):.3f}", len(done), len(rows))
    except KeyboardInterrupt:
        interrupted = True
    return [done[i] for i in sorted(done)], time.perf_counter() - start, interrupted


def _write_outputs(output: Path, summary: dict[str, Any], samples: dict[str, list[Sample]]) -> None:
    write_json(output / "summary.json", summary)
    for name, rows in samples.items():
        with atomic_write(output / name) as fh:
            for s in rows:
                fh.write(json.dumps(s.as_dict(), ensure_ascii=False) + "\n")


def _track(
    request: EvalRequest,
    primary: LoadedModel,
    summary: dict[str, Any],
    output: Path | None,
    result: EvalResult,
) -> dict[str, Any] | None:
    if not request.track:
        return None
    from rlvr_cli.tracking.trackers import MLflowTracker

    mlflow_info = (primary.run.mlflow if primary.run else None) or {}
    try:
        tracker = MLflowTracker(
            tracking_uri=mlflow_info.get("tracking_uri"),
            experiment=mlflow_info.get("experiment") or "rlvr",
            run_id=mlflow_info.get("run_id"),
            run_name=None if mlflow_info.get("run_id") else f"eval-{Path(primary.label).name}",
        )
    except RlvrError as exc:
        result.warnings.append(f"results not logged to MLflow: {exc.message}")
        return None
    except ImportError:
        result.warnings.append(
            "results not logged to MLflow: mlflow is not installed (pip install 'rlvr[train]')"
        )
        return None
    for item in summary["results"]:
        prefix = "eval/" if item is summary["results"][0] else "eval_baseline/"
        tracker.log_metrics(
            {f"{prefix}{k}": v for k, v in item["summary"].items() if isinstance(v, int | float)}
        )
        sampled = item.get("sampled") or {}
        # MLflow metric names take no '@': pass@4 is logged as pass_at_4.
        tracker.log_metrics(
            {f"{prefix}{k.replace('@', '_at_')}": v for k, v in sampled.items() if isinstance(v, int | float)}
        )
    if summary.get("comparison"):
        tracker.log_metrics({f"eval_comparison/{k}": v for k, v in summary["comparison"].items()})
    tracker.log_dict(summary, "eval/summary.json")
    if output:
        tracker.log_artifact(output / "samples.jsonl", "eval")
    tracker.finish("FINISHED")
    return {"tracking_uri": tracker.tracking_uri, "run_id": tracker.run_id}


def check_request(request: EvalRequest) -> None:
    """Refuse a bad request before anything heavy is loaded."""
    if request.limit is not None and request.limit < 1:
        raise UsageError(f"--limit {request.limit}: must be at least 1")
    if request.batch_size < 1 or request.max_new_tokens < 1:
        raise UsageError("--batch-size and --max-new-tokens must be at least 1")
    check_generator(request.generator)
    if request.samples < 1 or request.temperature <= 0:
        raise UsageError(
            f"--samples {request.samples} --temperature {request.temperature}: need at least 1 sample and "
            "a temperature above 0"
        )
    if request.samples > 1 and request.generator == "vllm":
        raise UsageError("--samples draws with rlvr's decoding: use it with --generator transformers")
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
    for checkpoint in request.checkpoints:
        if _is_s3(checkpoint):
            continue
        checkpoint = Path(checkpoint)
        if not checkpoint.is_dir():
            raise UsageError(f"--checkpoint {checkpoint}: directory not found")
        if not (checkpoint / "adapter_config.json").is_file() and not (checkpoint / "config.json").is_file():
            raise UsageError(
                f"--checkpoint {checkpoint}: not a model or adapter directory (no adapter_config.json or config.json)"
            )
        check_base(checkpoint, baseline=request.baseline)
    if request.output is not None and request.output.exists() and not request.output.is_dir():
        raise UsageError(f"--output {request.output}: a file, not a directory; give --output a directory")


def run_eval(request: EvalRequest) -> EvalResult:
    check_request(request)
    remote = request.remote
    if remote is None and (request.job is not None or any(_is_s3(c) for c in request.checkpoints)):
        raise UsageError("--job and S3 checkpoints are fetched by the rlvr command line (EvalRequest.remote)")
    if remote is not None:  # a wrong job name is reported before anything about the local data
        remote.locate()
    problems = load_problems(request.data, request.shots)
    for note in problems.notes:
        console.notice(note)
    rows, where, task = problems.rows, problems.where, problems.task
    if request.limit:
        rows = rows[: request.limit]
    # Models on S3 (a job's model.tar.gz) are fetched into the cache, then evaluated like local ones.
    resolved = remote.fetch() if remote is not None else [Checkpoint(str(c)) for c in request.checkpoints]
    checkpoints = [c.path for c in resolved]
    fetched = {c.path: c for c in resolved if c.fetched is not None}
    for path in fetched:  # checked like local ones, before any model is evaluated
        check_base(Path(path), baseline=request.baseline)
    console.info(f"evaluating on {len(rows)} problems from {where}")

    from rlvr_cli.models.loading import quiet_libraries

    quiet_libraries()
    result = EvalResult(summary={}, task_title=task.title)
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
            loaded.label = source.label or loaded.label  # the job or S3 URI, not the cache path
            if request.track and loaded.run and _mlflow_inside_container(loaded.run):
                uri = (loaded.run.mlflow or {}).get("tracking_uri")
                result.notes.append(
                    f"the job logged to MLflow inside its container ({uri or 'embedded store'}); results go to a new run here"
                )
                loaded.run.mlflow = None
        loaded_first = loaded_first or loaded
        samples, wall, interrupted, sampled = _run_one(loaded, rows, request, task)
        item: dict[str, Any] = {"label": loaded.label, "summary": summarize(samples, wall)}
        if sampled is not None:
            item["sampled"] = sampled
        if source is not None:
            item["checkpoint"] = source.fetched
        results.append(item)
        all_samples.append(samples)
        if interrupted:
            break
        if index == 0 and request.baseline:
            if loaded.base == spec:
                result.notes.append(
                    f"{spec} is a base model: there is no other model to compare it with; --baseline ignored"
                )
                continue
            assert loaded.base, "check_base refused a checkpoint without a known base"
            base = load_model(loaded.base, is_checkpoint=False)
            base.label = f"base: {loaded.base}"
            samples, wall, interrupted, sampled = _run_one(base, rows[: len(samples)], request, task)
            results.append(
                {"label": base.label, "summary": summarize(samples, wall)}
                | ({"sampled": sampled} if sampled is not None else {})
            )
            all_samples.append(samples)
            if interrupted:
                break

    comparison = compare(all_samples[1], all_samples[0]) if len(all_samples) == 2 else None
    result.summary = {
        "data": where,
        "task": task.describe(),
        "shots": problems.shots,
        "rlvr_version": __version__,
        # Scores: strict (the task's answer rule, compared pairwise) and flexible (its lenient reading).
        "decoding": {
            "greedy": True,
            "max_new_tokens": request.max_new_tokens,
            "samples": request.samples,
            "temperature": request.temperature if request.samples > 1 else None,
            "top_p": 1.0 if request.samples > 1 else None,
            "seed": request.seed if request.samples > 1 else None,
        },
        "max_new_tokens": request.max_new_tokens,
        "batch_size": request.batch_size,
        "generator": request.generator,
        "cuda_graphs": request.cuda_graphs if request.generator == "transformers" else None,
        "interrupted": interrupted,
        "results": results,
        "comparison": comparison,
    }
    if request.output:
        names = ["samples.jsonl", "baseline_samples.jsonl" if request.baseline else "compared_samples.jsonl"]
        _write_outputs(request.output, result.summary, dict(zip(names, all_samples, strict=False)))
        result.written = [request.output / "summary.json", request.output / "samples.jsonl"]
    assert loaded_first is not None
    result.mlflow = _track(request, loaded_first, result.summary, request.output, result)
    return result


def _is_s3(checkpoint: str | Path) -> bool:
    return str(checkpoint).startswith("s3://")


def _mlflow_inside_container(run: RunRecord) -> bool:
    """Whether a SageMaker job's run record names an MLflow run that is not reachable from here.

    A job with no tracking server logs to an embedded store on its own disk (sqlite or file): its
    results go to a new run here. A server (http, a SageMaker MLflow ARN) is reachable: the
    evaluation is logged to the job's run there."""
    mlflow_info = run.mlflow or {}
    uri = str(mlflow_info.get("tracking_uri") or "")
    return bool(mlflow_info.get("run_id")) and not (uri and not uri.startswith(("sqlite:", "file:", "/")))


def _run_one(
    loaded: LoadedModel, rows: list[dict[str, Any]], request: EvalRequest, task: Any
) -> tuple[list[Sample], float, bool, dict[str, Any] | None]:
    """Greedy samples, seconds, interrupted, and with `--samples K` the sampled summary
    (pass@1..K, maj@K) from K completions per problem drawn at `--temperature`."""
    if request.generator == "vllm":
        samples, wall, interrupted = _run_vllm(loaded, rows, request, task)
        loaded.model = None
        return samples, wall, interrupted, None
    label = Path(loaded.label).name or loaded.label
    # Greedy and sampled decoding differ only in temperature and seed.
    generator_for = functools.partial(
        HFGenerator,
        loaded.model,
        loaded.tokenizer,
        request.max_new_tokens,
        stop_rule=task.stop_rule,
        cuda_graphs=request.cuda_graphs,
    )
    generator = generator_for()
    samples, wall, interrupted = evaluate(generator, rows, request.batch_size, label, task, request.progress)
    sampled = None
    k = request.samples
    if k > 1 and not interrupted:
        sampler = generator_for(temperature=request.temperature, seed=request.seed)
        repeated = [row for row in rows for _ in range(k)]  # a problem's K rows together: one shared prompt
        drawn, _, interrupted = evaluate(
            sampler, repeated, request.batch_size, f"{label} x{k}", task, request.progress
        )
        if not interrupted:
            sampled = summarize_sampled(
                [drawn[i * k : (i + 1) * k] for i in range(len(rows))], request.temperature
            )
    # Free the model before loading the next one.
    del generator
    loaded.model = None
    return samples, wall, interrupted, sampled


def _run_vllm(
    loaded: LoadedModel, rows: list[dict[str, Any]], request: EvalRequest, task: Any
) -> tuple[list[Sample], float, bool]:
    """vLLM reads a model directory: the loaded model (a trained adapter already merged) is saved to
    a temporary one, freed from the GPU, and served from there."""
    import gc
    import tempfile

    import torch

    with tempfile.TemporaryDirectory(prefix="rlvr-vllm-") as model_dir:
        loaded.model.save_pretrained(model_dir)
        loaded.tokenizer.save_pretrained(model_dir)
        loaded.model = None
        gc.collect()
        torch.cuda.empty_cache()
        generator = VLLMGenerator(
            model_dir,
            loaded.tokenizer,
            request.max_new_tokens,
            stop_rule=task.stop_rule,
            stop_strings=task.stop_strings,
        )
        try:
            # vLLM schedules its own batches: hand it everything at once.
            return evaluate(
                generator,
                rows,
                max(request.batch_size, len(rows)),
                Path(loaded.label).name or loaded.label,
                task,
                request.progress,
            )
        finally:
            del generator
            gc.collect()
