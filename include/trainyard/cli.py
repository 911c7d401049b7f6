"""Command line: every pipeline step without Airflow, plus the embedded stack and the demo.

    trainyard specs                                   validate every spec (and its estimator)
    trainyard generate --start D --end D [knobs]      land synthetic churn partitions
    trainyard ingest PIPELINE [--window-end D]        snapshot a window -> JSON reference
    trainyard validate PIPELINE --snapshot REF.json   run the GX suite
    trainyard train PIPELINE --snapshot ... --validation ...
    trainyard evaluate PIPELINE --snapshot ... --training ...
    trainyard register PIPELINE --snapshot ... --validation ... --training ... --decision ...
    trainyard run PIPELINE [--window-end D]           all steps in one process
    trainyard drift PIPELINE [--window-end D]         drift check vs the champion (no retrain)
    trainyard stack up|down|status                    the embedded stack
    trainyard demo                                    what `make demo` runs

Step commands print their JSON result on stdout, so they chain through files.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any


def _spec(name: str):
    from trainyard.settings import Settings
    from trainyard.spec import load_spec

    return load_spec(Settings.from_env().pipelines_dir / f"{name}.yaml")


def _read(path: str, model: type) -> Any:
    return model.model_validate_json(Path(path).read_text())


def _emit(result: Any) -> None:
    print(result.model_dump_json(indent=2))


def _window(args: argparse.Namespace, spec):
    from trainyard.ingest import resolve_window

    return resolve_window(
        spec,
        datetime.now(UTC).date(),
        window_end=date.fromisoformat(args.window_end) if args.window_end else None,
        window_days=args.window_days,
    )


def cmd_specs(args: argparse.Namespace) -> int:
    from trainyard.modeling import resolve_estimator
    from trainyard.settings import Settings
    from trainyard.spec import load_all_specs
    from trainyard.validation import load_suite_json

    settings = Settings.from_env()
    for spec in load_all_specs(settings.pipelines_dir):
        resolve_estimator(spec.model.estimator)
        load_suite_json(settings, spec.validation.suite)
        print(f"{spec.name}: ok (spec sha256 {spec.sha256()[:12]})")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from trainyard.churn_generator import Knobs, land_days
    from trainyard.settings import Settings

    drift = {}
    for item in args.covariate_drift or []:
        column, _, strength = item.partition("=")
        drift[column] = float(strength or 1.0)
    knobs = Knobs(
        covariate_drift=drift,
        concept_drift=args.concept_drift,
        labels_missing=args.labels_missing,
        corruption=tuple(args.corrupt or ()),
    )
    uris = land_days(
        Settings.from_env(),
        date.fromisoformat(args.start),
        date.fromisoformat(args.end),
        args.rows_per_day,
        knobs,
        prefix=args.prefix,
        seed=args.seed,
    )
    print(f"wrote {len(uris)} partition(s): {uris[0]} .. {uris[-1]}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from trainyard.ingest import ingest
    from trainyard.settings import Settings

    spec = _spec(args.pipeline)
    _emit(ingest(spec, Settings.from_env(), _window(args, spec)))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from trainyard.ingest import SnapshotRef
    from trainyard.settings import Settings
    from trainyard.validation import validate_snapshot

    report = validate_snapshot(
        _spec(args.pipeline), Settings.from_env(), _read(args.snapshot, SnapshotRef)
    )
    _emit(report)
    if not report.success:
        print(report.failure_message(), file=sys.stderr)
        return 1
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from trainyard.ingest import SnapshotRef
    from trainyard.lineage import RunContext
    from trainyard.settings import Settings
    from trainyard.training import train
    from trainyard.validation import ValidationReport

    spec = _spec(args.pipeline)
    _emit(
        train(
            spec,
            Settings.from_env(),
            _read(args.snapshot, SnapshotRef),
            _read(args.validation, ValidationReport),
            RunContext.for_cli(spec.name, args.reason),
        )
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from trainyard.ingest import SnapshotRef
    from trainyard.settings import Settings
    from trainyard.training import TrainingResult, evaluate

    decision = evaluate(
        _spec(args.pipeline),
        Settings.from_env(),
        _read(args.snapshot, SnapshotRef),
        _read(args.training, TrainingResult),
    )
    _emit(decision)
    print(decision.summary(), file=sys.stderr)
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from trainyard.gate import GateDecision
    from trainyard.ingest import SnapshotRef
    from trainyard.lineage import RunContext
    from trainyard.registry import lineage_tags, register
    from trainyard.training import TrainingResult
    from trainyard.validation import ValidationReport

    spec = _spec(args.pipeline)
    training = _read(args.training, TrainingResult)
    decision = _read(args.decision, GateDecision)
    if not decision.passed:
        print(decision.summary(), file=sys.stderr)
        return 1
    tags = lineage_tags(
        spec,
        _read(args.snapshot, SnapshotRef),
        _read(args.validation, ValidationReport),
        training,
        decision,
        RunContext.for_cli(spec.name, args.reason),
    )
    _emit(register(spec, training, decision, tags))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from trainyard.lineage import RunContext
    from trainyard.pipeline import ValidationFailed, run_pipeline
    from trainyard.settings import Settings

    spec = _spec(args.pipeline)
    try:
        result = run_pipeline(
            spec,
            Settings.from_env(),
            _window(args, spec),
            RunContext.for_cli(spec.name, args.reason),
        )
    except ValidationFailed as error:
        print(error, file=sys.stderr)
        return 1
    print(result.describe())
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    from trainyard import drift_policy
    from trainyard.drift import NoChampionError, run_check
    from trainyard.lineage import RunContext
    from trainyard.pipeline import ValidationFailed
    from trainyard.settings import Settings

    spec = _spec(args.pipeline)
    settings = Settings.from_env()
    context = RunContext.for_cli(spec.name, args.reason)
    try:
        # MLflow prints "View run ..." on stdout; stdout carries only the JSON summary.
        with contextlib.redirect_stdout(sys.stderr):
            summary, mlflow_run_id = run_check(
                spec,
                settings,
                datetime.now(UTC).date(),
                context,
                window_end=date.fromisoformat(args.window_end) if args.window_end else None,
                window_days=args.window_days,
            )
    except NoChampionError as error:
        print(error, file=sys.stderr)
        return 0
    except ValidationFailed as error:
        print(f"data-quality failure, no drift verdict:\n{error}", file=sys.stderr)
        return 1
    _emit(summary)
    print(summary.describe(), file=sys.stderr)
    print(f"  mlflow run: {mlflow_run_id} (experiment {spec.name}-monitoring)", file=sys.stderr)
    decision = drift_policy.decide(
        summary.reference_for_xcom(),
        now=datetime.now(UTC),
        cooldown_hours=spec.drift.cooldown_hours,
        last_retrain=drift_policy.last_retrain(settings, spec.name),
        active_training_runs=0,
        drift_run_id=context.run_id,
        training_dag_id=spec.training_dag_id,
    )
    print(
        f"  in Airflow this verdict would give: {decision.message} (the CLI never triggers "
        "training and cannot see queued or running training runs)",
        file=sys.stderr,
    )
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    from trainyard.demo import default_stack, print_access

    stack = default_stack()
    if args.action == "up":
        stack.up()
        print_access(stack)
    elif args.action == "down":
        stopped = stack.down()
        print(
            f"stopped: {', '.join(stopped) or 'nothing was running'}; "
            f"state kept in {stack.state_dir}"
        )
    else:
        for name, pid in stack.status().items():
            print(f"{name:8} {'running (pid ' + str(pid) + ')' if pid else 'stopped'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from trainyard.demo import run_demo

    return run_demo()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``trainyard``."""
    parser = argparse.ArgumentParser(prog="trainyard", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("specs", help="validate every pipeline spec").set_defaults(func=cmd_specs)

    generate = commands.add_parser("generate", help="land synthetic churn partitions")
    generate.add_argument("--start", required=True, help="first date, YYYY-MM-DD")
    generate.add_argument("--end", required=True, help="last date, YYYY-MM-DD")
    generate.add_argument("--rows-per-day", type=int, default=2000)
    generate.add_argument("--prefix", default="churn")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument(
        "--covariate-drift", nargs="*", metavar="COLUMN=STRENGTH", help="e.g. monthly_charges=1.5"
    )
    generate.add_argument("--concept-drift", type=float, default=0.0)
    generate.add_argument("--labels-missing", action="store_true")
    generate.add_argument(
        "--corrupt", nargs="*", choices=["out_of_range", "bad_category", "nulls", "missing_column"]
    )
    generate.set_defaults(func=cmd_generate)

    def step(name: str, func, *inputs: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=f"the {name} step")
        sub.add_argument("pipeline")
        for item in inputs:
            sub.add_argument(f"--{item}", required=True, help=f"JSON file from the {item} step")
        sub.add_argument("--reason", default="cli")
        sub.set_defaults(func=func)
        return sub

    for sub in (step("ingest", cmd_ingest), step("run", cmd_run), step("drift", cmd_drift)):
        sub.add_argument("--window-end", help="last partition date, YYYY-MM-DD")
        sub.add_argument("--window-days", type=int)
    step("validate", cmd_validate, "snapshot")
    step("train", cmd_train, "snapshot", "validation")
    step("evaluate", cmd_evaluate, "snapshot", "training")
    step("register", cmd_register, "snapshot", "validation", "training", "decision")

    stack = commands.add_parser("stack", help="the embedded stack")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.set_defaults(func=cmd_stack)
    commands.add_parser("demo", help="run the demo").set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``trainyard`` and ``python -m trainyard``."""
    from trainyard.devstack import StackError
    from trainyard.spec import SpecError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (StackError, SpecError) as error:
        print(f"trainyard: {error}", file=sys.stderr)
        return 2
