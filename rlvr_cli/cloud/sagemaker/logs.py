"""A SageMaker job's CloudWatch logs: every instance's stream, merged in time order, no duplicates.

A job writes one stream per instance, `<job>/algo-N-<epoch>`, into `/aws/sagemaker/TrainingJobs`.
Streams appear only once their instance starts, so the reader re-lists them on every poll and
tolerates a log group or stream that does not exist yet. Each stream is read forward with its own
token; events of one poll are merged across streams by timestamp.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


@dataclass(order=True)
class LogEvent:
    timestamp: int
    stream: str = field(compare=True)
    sequence: int = field(compare=True)
    message: str = field(compare=False)

    def render(self) -> str:
        from datetime import datetime, timezone

        when = datetime.fromtimestamp(self.timestamp / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        host = self.stream.split("/", 1)[-1].rsplit("-", 1)[0]  # job/algo-1-1700000000 -> algo-1
        return f"[{host}] {when} {self.message.rstrip()}"


class JobLogReader:
    def __init__(self, logs: Any, job_name: str):
        self.logs = logs
        self.job_name = job_name
        self.tokens: dict[str, str | None] = {}
        self.counter = 0

    def _streams(self) -> list[str]:
        import botocore.exceptions

        names: list[str] = []
        kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{self.job_name}/"}
        try:
            while True:
                page = self.logs.describe_log_streams(**kwargs)
                names.extend(s["logStreamName"] for s in page.get("logStreams", []))
                if not page.get("nextToken"):
                    return names
                kwargs["nextToken"] = page["nextToken"]
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return []  # the job has not logged anything yet
            raise

    def _read_stream(self, stream: str) -> list[LogEvent]:
        events: list[LogEvent] = []
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": LOG_GROUP,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if self.tokens.get(stream):
                kwargs["nextToken"] = self.tokens[stream]
            page = self.logs.get_log_events(**kwargs)
            for e in page.get("events", []):
                self.counter += 1
                events.append(LogEvent(e["timestamp"], stream, self.counter, e.get("message", "")))
            token = page.get("nextForwardToken")
            # The forward token repeats once the end of the stream is reached.
            if not token or token == self.tokens.get(stream):
                self.tokens[stream] = token
                return events
            self.tokens[stream] = token

    def poll(self) -> list[LogEvent]:
        """Events that appeared since the last poll, in time order (ties: stream, then arrival)."""
        batches = [self._read_stream(stream) for stream in self._streams()]
        return list(heapq.merge(*batches))


def tail(events: list[LogEvent], n: int | None) -> Iterator[LogEvent]:
    return iter(events if n is None else events[-n:] if n > 0 else [])
