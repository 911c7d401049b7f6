"""The git hooks of .pre-commit-config.yaml, installed and run as a developer would.

A throw-away git repository gets this repository's .pre-commit-config.yaml and pyproject.toml
(the ruff rules, including Airflow's AIR rules) and a `.venv/bin/ruff` pointing at this
virtualenv's; `pre-commit install` then a `git commit` must refuse an Airflow 2 style DAG file
and an unformatted one, and accept them once fixed. Needs git and the dev lock's pre-commit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent

AIRFLOW_2_DAG = '''"""A DAG written for Airflow 2."""

from airflow.datasets import Dataset
from airflow.sdk import dag, task

orders = Dataset("s3://raw/orders")


@dag(schedule=[orders], tags=["example"])
def example():
    @task
    def hello():
        return 1

    hello()


example()
'''
AIRFLOW_3_DAG = (
    AIRFLOW_2_DAG.replace("from airflow.datasets import Dataset\n", "")
    .replace("from airflow.sdk import dag, task", "from airflow.sdk import Asset, dag, task")
    .replace('Dataset("s3://raw/orders")', 'Asset("s3://raw/orders")')
)
UNFORMATTED = "values = {'a':1,\n  'b':2}\n"
FORMATTED = 'values = {"a": 1, "b": 2}\n'


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the dev lock (make test does)")
    return path


@pytest.fixture
def clone(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A git repository with the hooks' configuration and the hooks installed."""
    work = tmp_path / "clone"
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / ".venv" / "bin" / "ruff").symlink_to(_tool("ruff"))
    for name in (".pre-commit-config.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, work / name)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,  # no core.hooksPath or template from this machine
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-cache"),
    }
    git = _tool("git")
    subprocess.run([git, "init", "--quiet", "-b", "main"], cwd=work, env=env, check=True)
    subprocess.run([git, "add", "."], cwd=work, env=env, check=True)
    subprocess.run([git, "commit", "--quiet", "-m", "config"], cwd=work, env=env, check=True)
    installed = subprocess.run(
        [_tool("pre-commit"), "install"], cwd=work, env=env, capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return work, env


def _commit(work: Path, env: dict[str, str], files: dict[str, str]) -> subprocess.CompletedProcess:
    for relative, text in files.items():
        path = work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git = _tool("git")
    subprocess.run([git, "add", *files], cwd=work, env=env, check=True)
    return subprocess.run(
        [git, "commit", "-m", "change"], cwd=work, env=env, capture_output=True, text=True
    )


def test_hook_ruff_is_the_locked_ruff() -> None:
    locked = re.search(r"^ruff==([^\s\\]+)", (REPO / "requirements-dev.lock").read_text(), re.M)
    assert locked, "ruff is not in requirements-dev.lock"
    version = subprocess.run([_tool("ruff"), "--version"], capture_output=True, text=True)
    assert version.stdout.split() == ["ruff", locked.group(1)]
    config = (REPO / ".pre-commit-config.yaml").read_text()
    assert "entry: .venv/bin/ruff check" in config and "entry: .venv/bin/ruff format" in config


def test_commit_is_refused_on_air_rules_and_formatting_then_accepted(clone) -> None:
    work, env = clone
    refused = _commit(work, env, {"dags/example.py": AIRFLOW_2_DAG, "include/m.py": UNFORMATTED})
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output
    assert "AIR311" in output  # airflow.datasets.Dataset: the pyproject rules apply
    assert "ruff format" in output and "files were modified by this hook" in output
    assert (work / "include" / "m.py").read_text() == FORMATTED  # the hook reformatted it
    log = subprocess.run(["git", "log", "--oneline"], cwd=work, env=env, capture_output=True)
    assert len(log.stdout.splitlines()) == 1, "the refused commit must not exist"

    accepted = _commit(work, env, {"dags/example.py": AIRFLOW_3_DAG, "include/m.py": FORMATTED})
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert re.search(r"ruff check\.+Passed", accepted.stdout + accepted.stderr)
