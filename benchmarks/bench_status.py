"""Start-up time of `rlvr status` (what CI scripts poll), against its floors, in one run.

    python benchmarks/bench_status.py       # ~1 minute; needs moto[server] (the dev extra)

A local moto server plays SageMaker. Each command runs 15 times as a fresh process; the table gives
the median and the best. Baselines in the same run: the Python interpreter alone, `rlvr --version`
(Python + Typer + Rich), and a bare botocore DescribeTrainingJob with the full SageMaker model.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import environment, write_section

RUNS = 15


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    state = tempfile.mkdtemp()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "RLVR_STATE_DIR": state,
    }
    try:
        import boto3

        # Submitting checks the bucket's region (HeadBucket): it has to exist.
        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        ).create_bucket(Bucket="bench-bucket")
        rlvr = [sys.executable, "-m", "rlvr_cli"]
        # A job is submitted only for data uploaded whole (its manifest is checked): a tiny set.
        data = Path(state) / "data"
        fixture = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "gsm8k"
        for step in (
            ["prepare", "--source", str(fixture), "--shots", "1", "--output", str(data)],
            ["upload", "--data", str(data), "--s3", "s3://bench-bucket/p/data"],
        ):
            subprocess.run([*rlvr, *step], env=env, check=True, capture_output=True)
        subprocess.run(
            [
                *rlvr,
                "train",
                "--remote",
                "--job-name",
                "bench-job",
                "--set",
                "remote.role_arn=arn:aws:iam::123456789012:role/R",
                "--set",
                "remote.image_uri=123456789012.dkr.ecr.us-east-1.amazonaws.com/r:1",
                "--set",
                "remote.s3_prefix=s3://bench-bucket/p",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        bare = (
            "import botocore.session as s; c = s.get_session().create_client('sagemaker'); "
            "c.describe_training_job(TrainingJobName='bench-job')"
        )
        rows = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("rlvr --version (Python + Typer + Rich)", [*rlvr, "--version"]),
            ("bare botocore DescribeTrainingJob (full model)", [sys.executable, "-c", bare]),
            ("rlvr status", [*rlvr, "status"]),
            ("rlvr status --json", [*rlvr, "status", "--json"]),
        ]
        table = ["| command | median | best |", "| --- | ---: | ---: |"]
        figures = {}
        for label, command in rows:
            med, best = timed(command, env)
            table.append(f"| {label} | {med:.2f} s | {best:.2f} s |")
            figures[label] = {"median_s": med, "best_s": best}
    finally:
        server.stop()
    write_section(
        "rlvr status start-up",
        f"Fresh process per run, {RUNS} runs each, against a local moto server.\n\n"
        + "\n".join(table)
        + "\n\n`rlvr status` imports no ML library (a test checks `sys.modules`) and loads a trimmed SageMaker "
        "API model; what is left is the interpreter, Typer/Rich and botocore. Target: under 0.5 s.\n\n"
        "Reproduce: `python benchmarks/bench_status.py`.",
    )

    results = Path(__file__).resolve().parent / "results" / "status.json"
    results.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps({**environment(), "runs": RUNS, "commands": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
