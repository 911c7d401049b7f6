"""Test session: a throw-away AIRFLOW_HOME and pipelines folder, and the real services.

Airflow reads its configuration when first imported, so the environment is set in
``pytest_configure``, before any test module is collected. Services (SeaweedFS S3, the MLflow
tracking server, an Airflow metadata DB) start lazily, once per session, on free ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SESSION_DIR = Path(tempfile.mkdtemp(prefix="trainyard-tests-"))
PIPELINES_DIR = SESSION_DIR / "pipelines"


def pytest_configure(config: pytest.Config) -> None:
    """Point Airflow and trainyard at session-private folders before anything imports them."""
    PIPELINES_DIR.mkdir(parents=True, exist_ok=True)
    for source in (REPO / "include" / "pipelines", REPO / "tests" / "pipelines"):
        for spec in source.glob("*.yaml"):
            shutil.copy(spec, PIPELINES_DIR / spec.name)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(SESSION_DIR / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "TRAINYARD_PIPELINES_DIR": str(PIPELINES_DIR),
            "GX_ANALYTICS_ENABLED": "False",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    """SeaweedFS (S3) and an MLflow tracking server on free ports, for the whole session."""
    from trainyard_dev.devstack import Stack
    from trainyard_dev.services import Ports

    services = Stack(state_dir=SESSION_DIR / "stack", ports=Ports.free())
    try:
        services.up(airflow=False)
        os.environ.update(services.client_env())
        yield services
    finally:
        services.down()


@pytest.fixture(scope="session")
def settings(stack: Any) -> Any:
    """Settings read from the environment the stack exported."""
    from trainyard.core.settings import Settings

    return Settings.from_env()


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated SQLite metadata DB in the session's AIRFLOW_HOME."""
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=300)


def spec_named(name: str) -> Any:
    """A spec from the session's pipelines folder."""
    from trainyard.core.spec import load_spec

    return load_spec(PIPELINES_DIR / f"{name}.yaml")


def repo_spec(name: str) -> Any:
    """A spec as shipped in include/pipelines."""
    from trainyard.core.spec import load_spec

    return load_spec(REPO / "include" / "pipelines" / f"{name}.yaml")
