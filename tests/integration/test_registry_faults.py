"""The registry under faults and races: consistent aliases, one version per fingerprint.

- MLflow failing between the two alias moves of a promotion: ``champion`` and ``previous`` never
  name the same version, and a rerun finishes the move without registering a duplicate;
- concurrent registrations of one fingerprint: exactly one version survives and is champion.

Each test has a registered model of its own (a breast-cancer pipeline, see
:func:`tests.faults.write_static_pipeline`) and MLflow behind a :class:`tests.faults.FaultProxy`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.faults import FaultProxy, write_static_pipeline
from trainyard import cli

#: A gate any second model passes: these tests are about the registry, not the gate.
LENIENT_GATE = {"max_regression": 1.0}
ALIAS_MOVE = "POST /api/2.0/mlflow/registered-models/alias"


@pytest.fixture
def mlflow_server(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    proxy = FaultProxy(stack.mlflow_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", proxy.url)
    yield proxy
    proxy.close()


def _aliases(name: str) -> dict[str, str | None]:
    from trainyard.core.tracking import alias_version

    found = {alias: alias_version(name, alias) for alias in ("champion", "previous")}
    return {alias: version.version if version else None for alias, version in found.items()}


def _versions(name: str) -> list[str]:
    from mlflow import MlflowClient

    found = MlflowClient().search_model_versions(f"name = '{name}'")
    return sorted((v.version for v in found), key=int)


def test_mlflow_failing_between_the_alias_moves_leaves_them_consistent_and_a_rerun_finishes(
    mlflow_server: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = "faults_alias_moves"
    pipelines = write_static_pipeline(tmp_path, name, gate=LENIENT_GATE)
    monkeypatch.setenv("TRAINYARD_PIPELINES_DIR", str(pipelines))
    assert cli.main(["run", name, "--reason", "first champion"]) == 0
    first = _aliases(name)["champion"]
    assert first is not None

    # Another spec: another fingerprint, so the rerun registers a second model.
    write_static_pipeline(tmp_path, name, gate=LENIENT_GATE, model={"params": {"C": 0.5}})
    mlflow_server.drop_requests(ALIAS_MOVE, after=1)  # the first move passes, the second fails
    capsys.readouterr()
    assert cli.main(["run", name, "--reason", "interrupted"]) == 3
    assert "MLflow unavailable" in capsys.readouterr().err
    assert mlflow_server.dropped >= 1
    mlflow_server.stop_dropping()
    interrupted = _aliases(name)
    versions = _versions(name)
    assert len(versions) == 2
    second = versions[-1]
    # The new champion serves; `previous` has not moved yet, and is not on the champion.
    assert interrupted == {"champion": second, "previous": None}

    assert cli.main(["run", name, "--reason", "rerun after the fault"]) == 0
    assert _aliases(name) == {"champion": second, "previous": first}
    assert _versions(name) == versions  # the rerun reused the version (same fingerprint)


def test_mlflow_failing_at_the_first_alias_move_leaves_the_champion_and_a_rerun_promotes(
    mlflow_server: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = "faults_first_move"
    pipelines = write_static_pipeline(tmp_path, name, gate=LENIENT_GATE)
    monkeypatch.setenv("TRAINYARD_PIPELINES_DIR", str(pipelines))
    assert cli.main(["run", name]) == 0
    first = _aliases(name)["champion"]

    write_static_pipeline(tmp_path, name, gate=LENIENT_GATE, model={"params": {"C": 0.5}})
    mlflow_server.drop_requests(ALIAS_MOVE)
    assert cli.main(["run", name]) == 3
    mlflow_server.stop_dropping()
    assert _aliases(name) == {"champion": first, "previous": None}
    versions = _versions(name)
    assert len(versions) == 2

    assert cli.main(["run", name]) == 0
    assert _aliases(name) == {"champion": versions[-1], "previous": first}
    assert _versions(name) == versions


def test_concurrent_registrations_of_one_fingerprint_keep_one_version(
    mlflow_server: FaultProxy, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs that race (a CLI run and a DAG run, say) all found no version and all registered."""
    from trainyard.core.lineage import RunContext
    from trainyard.core.spec import load_spec
    from trainyard.data.sources import resolve_window
    from trainyard.training import registry, steps

    name = "faults_race"
    pipelines = write_static_pipeline(tmp_path, name)
    monkeypatch.setenv("TRAINYARD_PIPELINES_DIR", str(pipelines))
    spec = load_spec(pipelines / f"{name}.yaml")
    window = resolve_window(spec, date(2026, 6, 1))
    snapshot = steps.ingest(spec, settings, window)
    report = steps.validate(spec, settings, snapshot)
    trained = steps.train(spec, settings, snapshot, report, RunContext.for_cli(name))
    decision = steps.evaluate(spec, settings, snapshot, trained)
    assert decision.passed

    racers = 4
    start = threading.Barrier(racers)
    results: list[Any] = [None] * racers

    def race(index: int) -> None:
        context = RunContext(
            dag_id=f"race:{name}", run_id=f"racer-{index}", trigger_reason="race", git_commit="x"
        )
        start.wait()
        try:
            results[index] = registry.register(
                spec, settings, snapshot, report, trained, decision, context
            )
        except Exception as error:  # noqa: BLE001 (reported below)
            results[index] = error

    # Every racer's lookup answers before any new version reaches the server.
    mlflow_server.delay_requests("model-versions/create", 2.0)
    threads = [threading.Thread(target=race, args=(index,)) for index in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    mlflow_server.stop_dropping()

    errors = [result for result in results if isinstance(result, Exception)]
    assert not errors, errors
    assert len(_versions(name)) == 1
    (version,) = _versions(name)
    assert {result.version for result in results} == {version}
    assert _aliases(name) == {"champion": version, "previous": None}
    assert sum(result.created for result in results) == 1
