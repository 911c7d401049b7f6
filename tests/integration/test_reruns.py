"""Reruns: what makes a model new (the code's identity, not the commit) and older windows.

- Same data, spec and code: a rerun reuses the registered version. The same commit with other
  code (the installed package changed, as in an image built without git): a rerun trains and
  registers a new version instead of re-promoting the one the old code trained.
- A rerun or backfill of a window older than the champion's is refused (outcome
  ``refused_older_window``, champion unchanged) unless the run asks (``--allow-older-window``),
  which the new version's lineage records.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.faults import write_static_pipeline
from tests.support import REPO, champion_of, model_versions
from trainyard import cli
from trainyard.core import storage
from trainyard.core.lineage import git_commit
from trainyard_dev.churn import generate_day


def _run(name: str, *extra: str) -> int:
    return cli.main(["run", name, *extra])


def test_changed_code_under_the_same_commit_registers_a_new_version(
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import trainyard

    name = "reruns_code"
    pipelines = write_static_pipeline(tmp_path, name)
    monkeypatch.setenv("TRAINYARD_PIPELINES_DIR", str(pipelines))
    assert _run(name) == 0
    assert _run(name) == 0  # same data, spec and code: the version is reused
    assert "existing version (same fingerprint)" in capsys.readouterr().out
    assert model_versions(name) == {"1"}

    # The same package with one changed line, run as its own process (as a new image would).
    copy = tmp_path / "site" / "trainyard"
    shutil.copytree(Path(trainyard.__file__).parent, copy)
    gate = copy / "training" / "gate.py"
    gate.write_text(gate.read_text() + "\n# a change that keeps the model but is other code\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(copy.parent),
        "TRAINYARD_EXPECTATIONS_DIR": str(REPO / "include" / "expectations"),
        "TRAINYARD_REQUIREMENTS_LOCK": str(REPO / "requirements.lock"),
        "TRAINYARD_GIT_COMMIT": git_commit(),  # the commit does not tell the two apart
    }
    done = subprocess.run(
        [sys.executable, "-m", "trainyard", "run", name],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    assert "(new version)" in done.stdout
    assert model_versions(name) == {"1", "2"}
    new = champion_of(name)
    assert new.version == "2"
    from mlflow import MlflowClient

    old = MlflowClient().get_model_version(name, "1")
    assert new.tags["git_commit"] == old.tags["git_commit"]
    assert new.tags["code_sha256"] != old.tags["code_sha256"]
    assert new.tags["fingerprint"] != old.tags["fingerprint"]


# ---- older windows -------------------------------------------------------------------------------


def _partitioned_pipeline(root: Path, settings: Any, name: str) -> Path:
    """A churn-like pipeline ``name`` on four days of its own raw data (2026-06-02 .. 05)."""
    spec = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    spec.update(name=name, schedule=None)
    spec["source"] = {"kind": "partitioned_parquet", "prefix": name}
    spec["window"] = {"days": 3, "end_offset_days": 1}
    spec["model"]["registered_name"] = name
    spec["gate"].update(floors={}, max_regression=1.0)  # about windows, not metrics
    folder = root / "pipelines"
    folder.mkdir(parents=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    for day in range(2, 6):
        frame = generate_day(date(2026, 6, day), 400)
        key = f"s3://{settings.raw_bucket}/{name}/date=2026-06-{day:02d}/part-0000.parquet"
        storage.put_bytes(settings, key, storage.parquet_bytes(frame))
    return folder


def test_an_older_window_is_refused_unless_the_run_asks(
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = "reruns_window"
    pipelines = _partitioned_pipeline(tmp_path, settings, name)
    monkeypatch.setenv("TRAINYARD_PIPELINES_DIR", str(pipelines))
    assert _run(name, "--window-end", "2026-06-05") == 0
    assert champion_of(name).version == "1"
    capsys.readouterr()

    assert _run(name, "--window-end", "2026-06-04") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"pipeline {name}: REFUSED OLDER WINDOW")
    assert (
        "[FAIL] older window: this run's window ends 2026-06-04, before champion v1's "
        "(2026-06-05) (to replace it anyway, run with allow_older_window)"
    ) in out
    assert "champion unchanged: v1" in out
    assert model_versions(name) == {"1"} and champion_of(name).version == "1"

    assert _run(name, "--window-end", "2026-06-04", "--allow-older-window") == 0
    assert "REGISTERED" in capsys.readouterr().out
    champion = champion_of(name)
    assert champion.version == "2"
    assert champion.tags["allowed_older_window"] == (
        "older window: this run's window ends 2026-06-04, before champion v1's (2026-06-05)"
    )
    assert champion.tags["window_end"] == "2026-06-04"
