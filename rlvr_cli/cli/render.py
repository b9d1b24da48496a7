"""How the CLI shows results: tables and lines on stderr, next-step hints. Data goes to stdout as
JSON (`rlvr_cli.core.console.print_json`); the commands themselves return data and print nothing
but progress."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from rlvr_cli.core import console
from rlvr_cli.data.layout import SPLITS, split_file

if TYPE_CHECKING:
    from rlvr_cli.cloud.sagemaker.commands import JobStatus, Submission
    from rlvr_cli.core.progress import Progress
    from rlvr_cli.data.prepare import PrepareResult
    from rlvr_cli.evaluation.run import EvalResult
    from rlvr_cli.training.run import TrainResult


# --- progress -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def progress(label: str, *, unit: str = "items", transient: bool = True) -> Iterator[Progress]:
    """The one progress bar (stderr): yields the `Progress` function library code reports to. The bar
    appears at the first report, so a command that fails before its long work draws none.

    `unit` "bytes" shows sizes and speed, "items" a count and the time left.
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bar

    counts = (
        (DownloadColumn(), TransferSpeedColumn())
        if unit == "bytes"
        else (MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    )
    bar = Bar(
        TextColumn(f"[bold]{escape(label)}[/bold] {{task.description}}"),
        BarColumn(),
        *counts,
        console=console.err,
        transient=transient,
    )
    task = bar.add_task("", total=None, start=False)

    def report(description: str, done: float, total: float | None) -> None:
        if not bar.live.is_started:
            bar.start()
            bar.start_task(task)
        bar.update(task, description=escape(description), completed=done, total=total)

    try:
        yield report
    finally:
        if bar.live.is_started:
            bar.stop()


# --- prepare ------------------------------------------------------------------------------------------


def prepare_table(result: PrepareResult) -> Table:
    """`rlvr prepare`: rows, skips and checksums per split, and what made them."""
    from rlvr_cli.tasks import task_from_description

    m, output, state = result.prepared.manifest, result.output, result.state
    title = task_from_description(m.task).title
    table = Table(title=f"{title} prepared ({state}): {output}", title_justify="left")
    table.add_column("split")
    table.add_column("rows", justify="right")
    table.add_column("skipped (no readable answer)", justify="right")
    table.add_column("file")
    table.add_column("sha256", overflow="ellipsis", max_width=16)
    for split in SPLITS:
        rel = split_file(split)
        skipped = m.skipped.get("test" if split == "test" else "train", 0) if split != "val" else ""
        table.add_row(
            split, str(m.counts[split]), str(skipped), str(output / rel), m.files[rel]["sha256"][:12]
        )
    lp = m.longest_prompt
    tokens = f", {lp['tokens']} tokens ({lp['tokenizer']})" if lp["tokens"] is not None else ""
    table.caption = (
        f"source {m.source['name']} · {m.shots} shots · seed {m.seed} · "
        f"longest prompt {lp['chars']} chars{tokens} ({lp['id']})"
    )
    table.caption_justify = "left"
    return table


def recipe_for_task(task: dict[str, Any]) -> str:
    """The shipped recipe that fits data prepared for `task` (the next step `rlvr prepare` names)."""
    name = (task or {}).get("name") or "gsm8k"
    return {
        "gsm8k": "configs/smoke-cpu.yaml",  # SmolLM2 on a CPU; configs/qwen2.5-0.5b-grpo.yaml on a GPU
        "reasoning-gym": "configs/smollm2-reasoning.yaml",  # short answers; chosen on several tasks
    }.get(name, "configs/qwen2.5-0.5b-grpo.yaml")


# --- train -------------------------------------------------------------------------------------------


def train_outcome(result: TrainResult, config_source: str) -> None:
    """How a local run ended, and what to run next."""
    outcome = result.outcome()
    record = result.record
    if record.status == "interrupted":
        config = f"--config {config_source} " if config_source != "<defaults>" else ""
        console.warn(f"{outcome}. Continue with: rlvr train {config}--resume")
    elif outcome:
        console.info(f"[green]{escape(outcome)}[/green]")
        console.info(f"next: rlvr eval --checkpoint {result.output} --baseline")


def submission(result: Submission) -> None:
    """`rlvr train --remote` (the request itself goes to stdout before this)."""
    for line in result.warnings:
        console.warn(line)
    if not result.dry_run:
        console.info(f"[green]submitted[/green] {result.job_name}")
    estimate(result.estimate)
    for line in result.notes:
        console.notice(line)
    if not result.dry_run:
        name = result.job_name
        console.info(f"next: rlvr status {name}   ·   rlvr logs {name}   ·   rlvr stop {name}")


def estimate(cost: dict[str, Any]) -> None:
    if cost["max_cost_on_demand_usd"] is None:
        console.info(f"cost: {cost['note']}")
        return
    spot = (
        f"; spot ceiling ${cost['max_cost_spot_usd']:,.2f}" if cost["max_cost_spot_usd"] is not None else ""
    )
    warm = (
        f"; warm pool up to ${cost['max_warm_pool_cost_usd']:,.2f} more for {cost['keep_alive_hours']} h "
        "after the job"
        if cost.get("max_warm_pool_cost_usd")
        else ""
    )
    console.err.print(  # one line, however narrow the terminal: scripts and people grep it
        f"cost: {cost['instance_count']} x {cost['instance_type']} at ~${cost['price_per_instance_hour_usd']}/h, "
        f"at most ${cost['max_cost_on_demand_usd']:,.2f} on demand for {cost['max_runtime_hours']} h{spot}{warm} "
        f"({escape(cost['note'])})",
        soft_wrap=True,
    )


# --- eval --------------------------------------------------------------------------------------------


def results_table(
    results: list[dict[str, Any]], comparison: dict[str, Any] | None, title: str = "GSM8K"
) -> Table:
    table = Table(title=f"{title} evaluation", title_justify="left")
    for column, justify in (
        ("model", "left"),
        ("n", "right"),
        ("strict [95% CI]", "right"),
        ("flexible [95% CI]", "right"),
        ("format", "right"),
        ("cut", "right"),
        ("tokens", "right"),
        ("problems/s", "right"),
    ):
        table.add_column(column, justify=justify, overflow="fold")
    for r in results:
        s = r["summary"]
        low, high = s["accuracy_ci95"]
        flow, fhigh = s["flexible_accuracy_ci95"]
        table.add_row(
            r["label"],
            str(s["n"]),
            f"{s['accuracy']:.1%} [{low:.1%}, {high:.1%}]",
            f"{s['flexible_accuracy']:.1%} [{flow:.1%}, {fhigh:.1%}]",
            f"{s['format_rate']:.0%}",
            f"{s['cut_rate']:.0%}",
            f"{s['mean_completion_tokens']:.0f}",
            f"{s['problems_per_second']:.2f}",
        )
    caption = (
        "strict: the task's answer line · flexible: its lenient reading (GSM8K: the last number, as "
        "lm-eval's flexible-extract) · format: well-formed answer line · cut: stopped at "
        "--max-new-tokens · tokens: mean per completion"
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


def sampled_table(results: list[dict[str, Any]]) -> Table | None:
    """pass@1..K and maj@K per model, when `--samples K` drew them."""
    rows = [r for r in results if r.get("sampled")]
    if not rows:
        return None
    first = rows[0]["sampled"]
    k = first["samples_per_problem"]
    table = Table(
        title=f"{k} samples per problem at temperature {first['temperature']:g} [95% CI]",
        title_justify="left",
    )
    table.add_column("model")
    names = [*(f"pass@{i}" for i in range(1, k + 1)), f"maj@{k}"]
    for name in names:
        table.add_column(name, justify="right")
    for r in rows:
        cells = []
        for name in names:
            low, high = r["sampled"][f"{name}_ci95"]
            cells.append(f"{r['sampled'][name]:.1%} [{low:.1%}, {high:.1%}]")
        table.add_row(r["label"], *cells)
    return table


def evaluation(result: EvalResult) -> None:
    for line in result.notes:
        console.notice(line)
    summary = result.summary
    console.err.print(results_table(summary["results"], summary["comparison"], result.task_title))
    sampled = sampled_table(summary["results"])
    if sampled is not None:
        console.err.print(sampled)
    if result.interrupted:
        console.warn(
            f"interrupted: the results above cover the {summary['results'][-1]['summary']['n']} problems finished"
        )
    if result.written:
        console.info(f"wrote {' and '.join(str(p) for p in result.written)}")
    for line in result.warnings:
        console.warn(line)


# --- upload, status, logs, stop ------------------------------------------------------------------------


def upload(result: dict[str, Any]) -> None:
    for line in result.get("notes", []):
        console.notice(line)
    table = Table(title=f"upload to {result['s3_uri']}", title_justify="left")
    for column in ("file", "action", "bytes", "sha256", "S3 checked by"):
        table.add_column(column, justify="right" if column == "bytes" else "left")
    for item in result["files"]:
        checks = [c.removeprefix("Checksum") for c in item["verified"] or [] if c != "size"]
        table.add_row(
            item["file"], item["action"], f"{item['bytes']:,}", item["sha256"][:12], ", ".join(checks)
        )
    console.err.print(table)
    console.info(f"next: rlvr train --remote --config RECIPE --data {result['s3_uri']}")


def status(result: JobStatus) -> None:
    view = result.view
    colour = {"Completed": "green", "Failed": "red", "Stopped": "yellow"}.get(view["status"], "cyan")
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("job", view["job_name"]),
        ("status", f"[{colour}]{view['status']}[/{colour}] ({view['secondary_status']})"),
        (
            "instances",
            f"{view['instance_count']} x {view['instance_type']}" + (" (spot)" if view["spot"] else ""),
        ),
        ("elapsed", duration(view["elapsed_seconds"])),
        ("billable", duration(view["billable_seconds"])),
    ]
    if view["failure_reason"]:
        rows.append(("failure", escape(view["failure_reason"])))
    if view["model_artifacts"]:
        rows.append(("model", view["model_artifacts"]))
    if view["checkpoints"]:
        rows.append(("checkpoints", view["checkpoints"]))
    for key, value in rows:
        table.add_row(key, str(value))
    console.err.print(table)
    if view["transitions"]:
        transitions = Table(title="secondary status", title_justify="left", show_edge=False)
        for column in ("status", "start", "message"):
            transitions.add_column(column)
        for t in view["transitions"]:
            transitions.add_row(t["status"] or "", (t["start"] or "")[:19], escape(t["message"] or ""))
        console.err.print(transitions)
    hint = {
        "InProgress": f"rlvr logs {view['job_name']}",
        "Stopping": f"rlvr status {view['job_name']}",
        "Completed": f"rlvr eval --job {view['job_name']} --baseline",
        "Failed": f"rlvr logs {view['job_name']} --no-follow --tail 100",
        "Stopped": f"rlvr logs {view['job_name']} --no-follow --tail 50",
    }.get(view["status"] or "")
    if hint:
        console.info(f"next: {hint}")


def duration(seconds: float | int | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def log_events(events: Iterable[Any]) -> int:
    """Log lines are the data of `rlvr logs`: stdout, one per event; how many were written."""
    import sys

    count = 0
    for event in events:
        sys.stdout.write(event.render() + "\n")
        count += 1
    sys.stdout.flush()
    return count


def stopping(name: str) -> None:
    console.info(f"stopping {name}: the trainer saves a checkpoint, then the job ends as Stopped")
    console.info(f"next: rlvr status {name}")
