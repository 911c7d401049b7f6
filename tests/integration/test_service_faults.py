"""S3 or MLflow refused, hung or failing mid-step: one line naming the service, exit 3, no loss.

The session's real SeaweedFS and MLflow server sit behind a :class:`~tests.faults.FaultProxy`;
clients are pointed at the proxy, which forwards, refuses, hangs or cuts off some requests. While
a server refuses or hangs, the clients' bounds are short (2 s, one retry) so the tests stay quick;
the benchmark
``benchmarks/fault_time_to_fail.py`` measures the shipped bounds against the clients' defaults.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults import FaultProxy, fast_failures, write_static_pipeline
from trainyard import cli
from trainyard.core import storage
from trainyard.core.errors import ServiceUnavailableError

NAME = "faults_services"


@pytest.fixture(scope="module")
def step_inputs(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The pipeline's folder and the snapshot and validation JSON of a clean ingest + validate."""
    root = tmp_path_factory.mktemp("faults-services")
    pipelines = write_static_pipeline(root, NAME)
    files = {"pipelines": pipelines}
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("TRAINYARD_PIPELINES_DIR", str(pipelines))
        files["snapshot"] = root / "snapshot.json"
        files["validation"] = root / "validation.json"
        for argv, result in (
            (["ingest", NAME], files["snapshot"]),
            (["validate", NAME, "--snapshot", str(files["snapshot"])], files["validation"]),
        ):
            with result.open("w") as out, contextlib.redirect_stdout(out):
                assert cli.main(argv) == 0
    return files


@pytest.fixture
def pipelines(step_inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRAINYARD_PIPELINES_DIR", str(step_inputs["pipelines"]))
    return step_inputs["pipelines"]


@pytest.fixture
def s3(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """S3 behind a fault proxy (the MLflow server keeps its direct access to S3)."""
    proxy = FaultProxy(stack.s3_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    yield proxy
    proxy.close()


@pytest.fixture
def mlflow_server(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The MLflow tracking server behind a fault proxy."""
    proxy = FaultProxy(stack.mlflow_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", proxy.url)
    yield proxy
    proxy.close()


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("trainyard: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _training_runs() -> int:
    from mlflow import MlflowClient

    experiment = MlflowClient().get_experiment_by_name(f"{NAME}-training")
    if experiment is None:
        return 0
    return len(MlflowClient().search_runs([experiment.experiment_id], max_results=1000))


@pytest.mark.parametrize("mode", ["refuse", "hang"])
def test_ingest_with_s3_down_fails_with_one_line_and_exit_3(
    mode: str,
    pipelines: Path,
    s3: FaultProxy,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with fast_failures(), s3.fault(mode):
        code = cli.main(["ingest", NAME])
    out, err = capsys.readouterr()
    assert code == 3
    line = _one_line(err)
    assert line.startswith(f"trainyard: S3 unavailable ({s3.url}): ")
    assert line.endswith("; try again later")
    assert out == ""


@pytest.mark.parametrize("mode", ["refuse", "hang"])
def test_train_with_mlflow_down_fails_with_one_line_and_starts_no_run(
    mode: str,
    step_inputs: dict[str, Path],
    pipelines: Path,
    mlflow_server: FaultProxy,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs_before = _training_runs()
    argv = ["train", NAME, "--snapshot", str(step_inputs["snapshot"])]
    with fast_failures(), mlflow_server.fault(mode):
        code = cli.main([*argv, "--validation", str(step_inputs["validation"])])
    out, err = capsys.readouterr()
    assert code == 3
    line = _one_line(err)
    reason = "connection refused" if mode == "refuse" else "no answer within the timeout"
    assert line.startswith(f"trainyard: MLflow unavailable ({mlflow_server.url}): {reason}")
    assert out == ""
    assert _training_runs() == runs_before


def test_a_snapshot_write_cut_off_leaves_no_object_and_the_rerun_writes_it(
    step_inputs: dict[str, Path],
    pipelines: Path,
    s3: FaultProxy,
    settings: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    snapshot = json.loads(step_inputs["snapshot"].read_text())
    storage.client(settings).delete_object(
        Bucket=settings.artifacts_bucket, Key=snapshot["uri"].split("/", 3)[3]
    )
    s3.drop_requests("PUT /")  # reads pass, every write is cut off mid-request
    assert cli.main(["ingest", NAME]) == 3
    assert "S3 unavailable" in _one_line(capsys.readouterr().err)
    assert s3.dropped >= 1
    assert not storage.exists(settings, snapshot["uri"])

    s3.stop_dropping()
    assert cli.main(["ingest", NAME]) == 0
    rerun = json.loads(capsys.readouterr().out)
    assert (rerun["uri"], rerun["sha256"]) == (snapshot["uri"], snapshot["sha256"])
    assert storage.exists(settings, snapshot["uri"])


def test_the_cli_process_bounds_a_hung_mlflow_by_the_settings(
    step_inputs: dict[str, Path], mlflow_server: FaultProxy
) -> None:
    """In a fresh process, TRAINYARD_SERVICE_* alone bound MLflow's client (no MLFLOW_HTTP_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST_")}
    env.update(
        TRAINYARD_SERVICE_TIMEOUT="2",
        TRAINYARD_SERVICE_RETRIES="1",
        TRAINYARD_PIPELINES_DIR=str(step_inputs["pipelines"]),
    )
    with mlflow_server.fault("hang"):
        done = subprocess.run(
            [sys.executable, "-m", "trainyard", "train", NAME]
            + ["--snapshot", str(step_inputs["snapshot"])]
            + ["--validation", str(step_inputs["validation"])],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    assert done.returncode == 3, done.stderr
    line = _one_line(done.stderr)
    assert "MLflow unavailable" in line and "no answer within the timeout" in line
    assert "(read timeout=2)" in line
    assert done.stdout == ""


def test_registering_when_the_version_lookup_fails_is_an_error_not_a_new_version(
    step_inputs: dict[str, Path],
    pipelines: Path,
    mlflow_server: FaultProxy,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A transient error while looking for an existing version must not register a duplicate."""
    from mlflow import MlflowClient

    inputs = ["--snapshot", str(step_inputs["snapshot"])]
    results: dict[str, Path] = {}
    for step, given in (
        ("training", ["--validation", str(step_inputs["validation"])]),
        ("decision", ["--training"]),
    ):
        argv = [
            "train" if step == "training" else "evaluate",
            NAME,
            *inputs,
            *given,
            *([str(results["training"])] if step == "decision" else []),
        ]
        assert cli.main(argv) == 0
        results[step] = tmp_path / f"{step}.json"
        results[step].write_text(capsys.readouterr().out)
    register = [
        "register",
        NAME,
        *inputs,
        "--validation",
        str(step_inputs["validation"]),
        "--training",
        str(results["training"]),
        "--decision",
        str(results["decision"]),
    ]
    assert cli.main(register) == 0  # the first registration (or the fingerprint's version)
    capsys.readouterr()
    versions = {v.version for v in MlflowClient().search_model_versions(f"name = '{NAME}'")}

    mlflow_server.drop_requests("model-versions/search")
    assert cli.main(register) == 3
    assert "MLflow unavailable" in _one_line(capsys.readouterr().err)
    mlflow_server.stop_dropping()
    after = {v.version for v in MlflowClient().search_model_versions(f"name = '{NAME}'")}
    assert after == versions


def test_a_step_in_airflow_raises_the_retryable_error(
    step_inputs: dict[str, Path], pipelines: Path, s3: FaultProxy
) -> None:
    """Not AirflowFailException: the task's retries (with backoff) take over."""
    from trainyard.core.settings import Settings
    from trainyard.core.spec import load_spec
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.training import tasks

    spec = load_spec(pipelines / f"{NAME}.yaml")
    snapshot = SnapshotRef.model_validate_json(step_inputs["snapshot"].read_text())
    unavailable = pytest.raises(ServiceUnavailableError, match="^S3 unavailable")
    with fast_failures(), s3.fault("refuse"), unavailable:
        tasks.validate(spec, snapshot.model_dump(mode="json"))
    assert Settings.from_env().s3_endpoint_url == s3.url
