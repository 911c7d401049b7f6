"""``model.max_training_rows``: a spec that caps its training rows trains, and says what it
sampled in MLflow (param, run tag, dataset input), on the registered version and its model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_reruns import _partitioned_pipeline
from tests.support import champion_of
from trainyard import cli


def test_a_spec_with_max_training_rows_trains_on_a_recorded_sample(
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlflow import MlflowClient

    from trainyard.governance.model_card import read_card

    name = "sampled_training"
    pipelines = _partitioned_pipeline(tmp_path, settings, name)
    path = pipelines / f"{name}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["model"]["max_training_rows"] = 500
    path.write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("TRAINYARD_PIPELINES_DIR", str(pipelines))

    assert cli.main(["run", name, "--window-end", "2026-06-05"]) == 0
    assert "REGISTERED" in capsys.readouterr().out

    champion = champion_of(name)
    run = MlflowClient().get_run(champion.run_id)
    note = run.data.tags["training_sample"]
    available = int(note.split(" of ")[1].split()[0])
    assert note == f"500 of {available} training rows (model.max_training_rows, seed 42)"
    assert available > 500  # 1,200 rows in the window, about 80% of them on the training side
    assert run.data.params["max_training_rows"] == "500"
    assert run.data.tags["rows_train"] == "500"
    assert int(run.data.tags["rows_holdout"]) == 1200 - available  # the holdout is not sampled
    (dataset,) = run.inputs.dataset_inputs
    assert json.loads(dataset.dataset.profile)["num_rows"] == 500
    assert champion.tags["training_sample"] == note
    card = read_card(settings, name, champion.version)
    assert card is not None and f"- Training sample: `{note}`" in card
