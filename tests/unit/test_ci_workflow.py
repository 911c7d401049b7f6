"""Static checks of the GitHub Actions workflow (.github/workflows/ci.yml) and the coverage floor.

GitHub Actions cannot run here, so the workflow is read as data and checked against what it must
agree with: the test command of the README, .ci/run and the Makefile, the Python version of
pyproject.toml, the server images of docker-compose.yaml, the variables the local tooling reads
(TRAINYARD_POSTGRES_URL / TRAINYARD_REDIS_URL) and the Dockerfile's build argument.
"""

from __future__ import annotations

import re
import shlex
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
MAKE_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def _commands(step: dict[str, Any]) -> list[list[str]]:
    """Each non-empty, non-comment line of a step's ``run`` script, split like a shell would."""
    lines = [line.strip() for line in step.get("run", "").splitlines()]
    return [shlex.split(line) for line in lines if line and not line.startswith("#")]


def _index_of(job: dict[str, Any], predicate: Any) -> int:
    """Index of the first step with a command matching ``predicate`` (fails when there is none)."""
    for index, step in enumerate(_steps(job)):
        if any(predicate(command) for command in _commands(step)):
            return index
    pytest.fail(f"no step of job {job.get('name')!r} runs the expected command")


def _index_of_action(job: dict[str, Any], action: str) -> int:
    for index, step in enumerate(_steps(job)):
        if step.get("uses", "").split("@")[0] == action:
            return index
    pytest.fail(f"job {job.get('name')!r} does not use {action}")


def _readme_test_command() -> list[str]:
    """The first backticked ``make`` command of the README's Tests section."""
    section = re.search(r"^## Tests\n(.*?)^## ", (REPO / "README.md").read_text(), re.M | re.S)
    assert section, "README.md has no '## Tests' section"
    command = re.search(r"`(make [^`]+)`", section.group(1))
    assert command, "the README's Tests section names no `make ...` command"
    return shlex.split(command.group(1))


def _ci_run_command() -> list[str]:
    """The last command of .ci/run (after `set` and `cd`), the CI entry point."""
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = [shlex.split(line) for line in lines if line and not line.startswith("#")]
    return commands[-1]


def _make_recipe(target: str) -> list[str]:
    """The recipe lines of one Makefile target."""
    match = re.search(
        rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", (REPO / "Makefile").read_text(), re.M
    )
    assert match, f"the Makefile has no {target!r} target"
    return [line.strip() for line in match.group(1).splitlines()]


def _runs_make(command: list[str], goal: list[str]) -> bool:
    """``command`` is ``goal`` (e.g. ``make test``), optionally with ``NAME=value`` overrides."""
    head, rest = command[: len(goal)], command[len(goal) :]
    return head == goal and all(MAKE_VARIABLE.match(token) for token in rest)


def _job_running(goal: list[str]) -> dict[str, Any]:
    for job in _workflow()["jobs"].values():
        for step in _steps(job):
            if any(_runs_make(command, goal) for command in _commands(step)):
                return job
    pytest.fail(f"no job of {WORKFLOW.name} runs {shlex.join(goal)!r}")


def _compose_services() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())["services"]


def test_workflow_runs_on_push_and_pull_request() -> None:
    workflow = _workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    names = set(triggers) if isinstance(triggers, dict | list) else {triggers}
    assert {"push", "pull_request"} <= names


def test_the_readme_test_command_is_what_ci_runs_and_the_workflow_runs_it() -> None:
    command = _readme_test_command()
    assert command == ["make", "test"]
    assert _ci_run_command() == command, ".ci/run and the README disagree on the test command"
    job = _job_running(command)
    assert "ubuntu" in job["runs-on"]
    # With CI=true the PostgreSQL/Redis/psql tests fail instead of skipping (see README).
    assert str(job.get("env", {}).get("CI")).lower() == "true"


def test_the_test_job_sets_up_python_of_pyproject_and_psql_before_the_tests() -> None:
    job = _job_running(["make", "test"])
    make_test = _index_of(job, lambda c: _runs_make(c, ["make", "test"]))
    checkout = _index_of_action(job, "actions/checkout")
    setup_python = _index_of_action(job, "actions/setup-python")
    psql = _index_of(job, lambda c: "apt-get" in c and "install" in c and "postgresql-client" in c)
    assert checkout < setup_python < make_test
    assert psql < make_test

    version = _steps(job)[setup_python]["with"]["python-version"]
    # A YAML float would turn "3.10" into 3.1: the version must be a string.
    assert isinstance(version, str), f"python-version {version!r} must be quoted"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(version), f"{version} is outside {requires}"


def test_services_match_compose_images_and_the_urls_the_tooling_reads() -> None:
    from trainyard_dev.config import StackConfig

    job = _job_running(["make", "test"])
    services = job["services"]
    compose = _compose_services()
    # CI tests against the same server versions the deployment runs.
    assert services["postgres"]["image"] == compose["postgres"]["image"]
    assert services["redis"]["image"] == compose["redis"]["image"]

    config = StackConfig.from_env({k: str(v) for k, v in job["env"].items()})
    postgres = urllib.parse.urlsplit(config.postgres_url)
    redis = urllib.parse.urlsplit(config.redis_url)
    published = {
        name: {str(port).split(":")[-1]: str(port).split(":")[0] for port in spec["ports"]}
        for name, spec in services.items()
    }
    assert str(postgres.port) == published["postgres"]["5432"]
    assert str(redis.port) == published["redis"]["6379"]
    assert postgres.hostname in {"127.0.0.1", "localhost"}
    assert redis.hostname in {"127.0.0.1", "localhost"}
    # The postgres image requires a password over TCP: the URL must carry the service's.
    service_env = services["postgres"]["env"]
    assert postgres.username == service_env.get("POSTGRES_USER", "postgres")
    assert postgres.password == service_env["POSTGRES_PASSWORD"]
    for name in ("postgres", "redis"):
        assert "--health-cmd" in services[name].get("options", ""), f"{name} has no healthcheck"


def test_the_workflow_validates_compose_and_builds_the_image() -> None:
    jobs = list(_workflow()["jobs"].values())

    def compose_config(command: list[str]) -> bool:
        return command[:2] == ["docker", "compose"] and "config" in command

    def docker_build(command: list[str]) -> bool:
        return command[:2] == ["docker", "build"]

    job = next(j for j in jobs if any(docker_build(c) for s in _steps(j) for c in _commands(s)))
    config_step = _steps(job)[_index_of(job, compose_config)]
    build_step = _steps(job)[_index_of(job, docker_build)]
    assert _index_of_action(job, "actions/checkout") < _index_of(job, docker_build)

    (config,) = [c for c in _commands(config_step) if compose_config(c)]
    env_file = config[config.index("--env-file") + 1]
    assert (REPO / env_file).is_file(), f"{env_file} does not exist"

    (build,) = [c for c in _commands(build_step) if docker_build(c)]
    assert build[-1] == ".", "the build context must be the repository (.dockerignore applies)"
    assert "-f" not in build and (REPO / "Dockerfile").is_file()
    build_args = [build[i + 1] for i, token in enumerate(build) if token == "--build-arg"]
    assert any(arg.startswith("GIT_COMMIT=") for arg in build_args), "lineage needs GIT_COMMIT"
    assert re.search(r"^ARG GIT_COMMIT\b", (REPO / "Dockerfile").read_text(), re.M)


def test_actions_are_pinned_to_a_release() -> None:
    for job in _workflow()["jobs"].values():
        for step in _steps(job):
            if "uses" in step:
                _, _, ref = step["uses"].partition("@")
                assert re.fullmatch(r"v\d+(\.\d+)*|[0-9a-f]{40}", ref), step["uses"]


def test_make_test_enforces_the_coverage_floor_and_test_unit_does_not() -> None:
    coverage = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["coverage"]
    assert coverage["run"]["source"] == ["include/trainyard"]
    assert float(coverage["report"]["fail_under"]) > 0

    def pytest_lines(target: str) -> list[list[str]]:
        lines = [shlex.split(line) for line in _make_recipe(target)]
        return [line for line in lines if line and Path(line[0]).name == "pytest"]

    (test_pytest,) = pytest_lines("test")
    assert "--cov" in test_pytest  # pytest-cov then fails the run under fail_under
    for line in pytest_lines("test-unit"):
        assert not any(token.startswith("--cov") for token in line), "test-unit covers less"
