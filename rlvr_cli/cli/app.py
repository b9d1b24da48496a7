"""The `rlvr` command line: one small function per subcommand that parses, calls a quiet function
(which returns data), and renders its result (`rlvr_cli.cli.render`: tables, --json, next steps).

Heavy libraries (torch, transformers, trl, datasets, mlflow, boto3) are imported inside the
commands that need them, so `rlvr --help` and `rlvr status` start fast. Expected failures are
`RlvrError`s, raised anywhere below and printed here as one `error:` line each; `RLVR_DEBUG=1`
re-raises them instead, with the traceback and its causes, for bug reports.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from rlvr_cli import __version__
from rlvr_cli.cli import jobs
from rlvr_cli.cli.options import ConfigOpt, JsonOpt, ProfileOpt, RegionOpt, SetOpt, load_recipe_option
from rlvr_cli.core import console
from rlvr_cli.core.errors import ExitCode, RlvrError, error_lines, first_line

app = typer.Typer(
    name="rlvr",
    help="GRPO with verifiable rewards (GSM8K, reasoning-gym, math, your JSONL): prepare data, train locally or on SageMaker, evaluate honestly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rlvr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    pass


@app.command()
def prepare(
    shots: Annotated[int, typer.Option(help="Solved examples before each question (0-32).")] = 8,
    source: Annotated[
        str,
        typer.Option(
            help="Hub dataset id, a local directory (train*/test* files), or reasoning-gym[:DATASET] (offline generator)."
        ),
    ] = "openai/gsm8k",
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory for train/ val/ test/ and manifest.json.")
    ] = Path("data"),
    val_fraction: Annotated[float, typer.Option(help="Share of train rows kept for validation.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed for exemplar choice and the train/val split.")] = 42,
    config: ConfigOpt = None,
    strict: Annotated[
        bool, typer.Option(help="Fail on rows without a '#### N' answer instead of skipping them.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace a different dataset already in --output.")] = False,
    size: Annotated[
        int, typer.Option(help="reasoning-gym only: train problems to generate (test gets a tenth, >= 50).")
    ] = 2000,
    task: Annotated[
        str | None,
        typer.Option(
            help="How problems are prompted and scored: gsm8k (default), math, custom, or a plugin's task; "
            "a reasoning-gym:NAME source implies its own."
        ),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(help="Task or generator option KEY=VALUE (repeatable), e.g. --option max_digits=2."),
    ] = None,
    compare: Annotated[
        str | None, typer.Option(help="--task custom: how answers are compared: numeric, exact, math-verify.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Build few-shot train/val/test sets with gold answers for a verifiable task (GSM8K by default).

    Example: rlvr prepare --shots 8 --source reasoning-gym
    """
    from rlvr_cli.cli import render
    from rlvr_cli.data.prepare import parse_options, run_prepare

    options = parse_options(option or [])
    if compare is not None:
        options["compare"] = compare

    tokenizer_model = load_recipe_option(config, None).recipe.model_name_or_path if config else None
    with render.progress("prepare") as progress:
        result = run_prepare(
            source=source,
            output=output,
            shots=shots,
            val_fraction=val_fraction,
            seed=seed,
            strict=strict,
            force=force,
            size=size,
            tokenizer_model=tokenizer_model,
            task_name=task,
            options=options,
            progress=progress,
        )
    for line in result.notes:
        console.notice(line)
    console.err.print(render.prepare_table(result))
    if json_out:
        console.print_json(result.prepared.manifest.to_dict())
    recipe = render.recipe_for_task(result.prepared.manifest.task)
    console.info(f"next: rlvr train --config {recipe} --data {output}   (or rlvr upload --data {output})")


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="Recipe YAML to check.")],
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a recipe and print it fully resolved (YAML, or JSON with --json).

    Example: rlvr validate configs/qwen2.5-0.5b-grpo.yaml --set learning_rate=1e-5
    """
    from rlvr_cli.config.loading import recipe_to_yaml

    loaded = load_recipe_option(config, overrides)
    if json_out:
        console.print_json(loaded.recipe.model_dump(mode="json"))
    else:
        sys.stdout.write(recipe_to_yaml(loaded.recipe))
    console.info(f"[green]ok[/green]: {escape(str(config))} is a valid recipe")


@app.command()
def train(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    data: Annotated[
        str | None,
        typer.Option(
            metavar="DIR|S3_URI",
            help="Prepared data directory (sets train_dataset_path and test_dataset_path); with "
            "--remote, the s3://bucket/prefix that `rlvr upload` printed (sets remote.s3_data).",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output directory (sets output_dir).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue from the latest checkpoint in the output directory.")
    ] = False,
    force: Annotated[
        bool, typer.Option(help="Replace a different run already in the output directory.")
    ] = False,
    merge: Annotated[bool, typer.Option(help="Also write a merged full model to OUTPUT/merged.")] = False,
    remote: Annotated[
        bool, typer.Option(help="Submit as a SageMaker training job instead of training here.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="--remote: print the request and cost estimate; call nothing.")
    ] = False,
    wait: Annotated[
        bool, typer.Option(help="--remote: follow the logs until the job ends; exit with its status.")
    ] = False,
    job_name: Annotated[
        str | None,
        typer.Option(help="--remote: the job name (default: derived from the recipe and the time)."),
    ] = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train with GRPO here (GPU, or CPU for small models), or on SageMaker with --remote.

    Example: rlvr train --config configs/smoke-cpu.yaml
    """
    from rlvr_cli.cli import render

    if data and data.startswith("s3://") and not remote:
        raise RlvrError(
            f"--data {data} is S3: add --remote to train there, or pass a prepared directory to train here",
            ExitCode.USAGE,
        )
    if remote:
        _check_remote_flags(data, output=output, resume=resume, force=force, merge=merge)
    loaded = load_recipe_option(config, _path_overrides(overrides, data, output))
    if remote:
        from rlvr_cli.cloud.sagemaker.commands import submit

        submitted = submit(loaded, dry_run=dry_run, profile=profile, region=region, name=job_name)
        if json_out:
            console.print_json(submitted.to_dict())
        elif submitted.dry_run:  # the dry run's data: the exact request
            console.print_json(submitted.request)
        render.submission(submitted)
        if wait and not submitted.dry_run:
            raise typer.Exit(jobs.follow_job(submitted.job_name, True, None, profile, region))
        raise typer.Exit(0)
    if dry_run or wait or job_name:
        raise RlvrError(
            "--dry-run, --wait and --job-name apply to --remote jobs; drop them or add --remote",
            ExitCode.USAGE,
        )
    from rlvr_cli.training.run import run_training

    with render.progress("train", transient=False) as progress:
        result = run_training(loaded, resume=resume, force=force, merge=merge, progress=progress)
    if json_out:
        console.print_json(result.to_dict())
    render.train_outcome(result, loaded.source)
    raise typer.Exit(result.exit_code)


def _check_remote_flags(data: str | None, **local: Any) -> None:
    """Flags of training here that a SageMaker job cannot honour are refused, not dropped."""
    if data and not data.startswith("s3://"):
        raise RlvrError(
            f"--data {data}: a SageMaker job reads its data from S3; `rlvr upload --data {data}` puts it "
            "there, then pass the s3:// URI it prints (or no --data: the last upload)",
            ExitCode.USAGE,
        )
    given = [f"--{name}" for name, value in local.items() if value]
    if given:
        raise RlvrError(
            f"{', '.join(given)}: for training here, not with --remote (a job writes its model to "
            "remote.s3_output and resumes from its own checkpoints); drop them",
            ExitCode.USAGE,
        )


def _path_overrides(overrides: list[str] | None, data: str | None, output: Path | None) -> list[str]:
    from rlvr_cli.data.layout import PreparedDir

    items = list(overrides or [])
    if data and data.startswith("s3://"):
        items.append(f"remote.s3_data={data}")
    elif data is not None:
        prepared = PreparedDir(Path(data))
        items += [
            f"train_dataset_path={prepared.split('train')}",
            f"test_dataset_path={prepared.split('val')}",
        ]
    if output is not None:
        items.append(f"output_dir={output}")
    return items


@app.command("eval")
def eval_(
    checkpoint: Annotated[
        list[str] | None,
        typer.Option(
            metavar="DIR|S3_URI",
            help="Trained output dir (LoRA adapter or merged model), or s3://.../model.tar.gz. Twice: compare two.",
        ),
    ] = None,
    job: Annotated[
        str | None,
        typer.Option(
            metavar="[NAME]",
            help="Evaluate a completed SageMaker job's model (fetched from S3 once); no NAME: the latest job.",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Evaluate a base model: Hub id, local dir, or offline name.")
    ] = None,
    baseline: Annotated[
        bool, typer.Option(help="Also evaluate the checkpoint's base model on the same problems and compare.")
    ] = False,
    data: Annotated[
        str, typer.Option(help="Prepared dataset file or directory (uses test/), or a source as in prepare.")
    ] = "data",
    shots: Annotated[
        int | None, typer.Option(help="Rebuild prompts with this many shots (default: as prepared).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N problems.")] = None,
    batch_size: Annotated[
        int, typer.Option(help="Prompts generated together (the shared exemplars are cached once per batch).")
    ] = 64,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens per completion.")] = 512,
    generator: Annotated[
        str, typer.Option(help="transformers (CPU or GPU) or vllm (a CUDA GPU and the vllm extra).")
    ] = "transformers",
    cuda_graphs: Annotated[
        bool,
        typer.Option(help="On a CUDA GPU, replay each decoding step as one CUDA graph (transformers)."),
    ] = True,
    samples: Annotated[
        int,
        typer.Option(
            "--samples",
            help="Also draw K completions per problem: pass@1..K and maj@K, beside greedy pass@1.",
        ),
    ] = 1,
    temperature: Annotated[float, typer.Option(help="Sampling temperature for --samples.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the --samples draws.")] = 0,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write summary.json and samples.jsonl here.")
    ] = None,
    track: Annotated[
        bool, typer.Option(help="Log results to MLflow (the checkpoint's run when known).")
    ] = True,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Measure a task's accuracy (strict and flexible): greedy, batched, stopped after the answer line.

    Example: rlvr eval --checkpoint outputs/smoke-cpu --limit 50 --baseline
    (a SageMaker job's model: rlvr eval --job --baseline)
    """
    from rlvr_cli.cli import render
    from rlvr_cli.evaluation.run import EvalRequest, run_eval

    checkpoints = list(checkpoint or [])
    remote = None
    if job is not None or any(c.startswith("s3://") for c in checkpoints):
        from rlvr_cli.cli.checkpoints import SageMakerCheckpoints

        remote = SageMakerCheckpoints(checkpoints, job, profile=profile, region=region)
    request = EvalRequest(
        checkpoints=checkpoints,
        job=job,
        remote=remote,
        model=model,
        baseline=baseline,
        data=data,
        shots=shots,
        limit=limit,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        output=output,
        track=track,
        generator=generator,
        cuda_graphs=cuda_graphs,
        samples=samples,
        temperature=temperature,
        seed=seed,
    )
    with render.progress("eval") as progress:
        request.progress = progress
        result = run_eval(request)
    render.evaluation(result)
    if json_out:
        console.print_json(result.to_dict())
    raise typer.Exit(result.exit_code)


# The SageMaker commands live in rlvr_cli.cli.jobs; registered here, in the order --help lists them.
for command in (jobs.upload, jobs.status, jobs.logs, jobs.stop):
    app.command()(command)


def _optional_job_name(args: list[str]) -> list[str]:
    """`rlvr eval --job` with no name means the latest job. Typer options cannot have an optional
    value, so a bare `--job` (last, or followed by another option) gets the latest-job marker."""
    if not args or args[0] != "eval":
        return args
    from rlvr_cli.cloud.sagemaker.history import LATEST_JOB

    out = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--job" and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out.append(LATEST_JOB)  # job names start with a letter or digit, never "-"
    return out


def _error(line: str) -> None:
    console.err.print(f"[red]error:[/red] {escape(line)}", soft_wrap=True)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; expected errors become one line each on stderr."""
    try:
        args = _optional_job_name(list(sys.argv[1:] if argv is None else argv))
        result = app(args=args, prog_name="rlvr", standalone_mode=False)
        return int(result) if isinstance(result, int) else 0
    except RlvrError as exc:
        if os.environ.get("RLVR_DEBUG") == "1":
            raise  # the traceback, with the exceptions that caused this one
        for line in error_lines(exc):
            _error(line)
        return int(exc.code)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:  # usage errors from the argument parser
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            ctx = getattr(exc, "ctx", None)
            message = " ".join(exc.format_message().split()).rstrip(".")
            if ctx is not None:
                message += f"{' ' if message.endswith('?') else '; '}see `{ctx.command_path} --help`"
            _error(message)
        return int(getattr(exc, "exit_code", ExitCode.USAGE))
    except OSError as exc:
        # What the checks before could not foresee (permissions, a full disk, a path that changed
        # meanwhile, a connection): what the system said, and on which file.
        if os.environ.get("RLVR_DEBUG") == "1":
            raise
        if exc.filename:
            _error(f"{exc.filename}: {exc.strerror or exc}; check the path and its permissions")
        else:
            _error(f"{first_line(exc)} (RLVR_DEBUG=1 shows where)")
        return int(ExitCode.ERROR)
    except (typer.Abort, KeyboardInterrupt):
        console.err.print("interrupted")
        return int(ExitCode.INTERRUPTED)


def main() -> None:
    sys.exit(run())
