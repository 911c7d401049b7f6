"""Command line: every pipeline step without Airflow (the same functions the DAG tasks call).

    trainyard init NAME --source S3URI --target COL   draft a spec and suite from a sample
    trainyard specs                                   validate every spec (and its estimator)
    trainyard buckets                                 create the buckets the settings name
    trainyard ingest PIPELINE [--window-end D]        snapshot a window -> JSON reference
    trainyard validate PIPELINE --snapshot REF.json   run the GX suite
    trainyard train PIPELINE --snapshot ... --validation ...
    trainyard evaluate PIPELINE --snapshot ... --training ...
    trainyard register PIPELINE --snapshot ... --validation ... --training ... --decision ...
    trainyard run PIPELINE [--window-end D]           all steps in one process
    trainyard drift PIPELINE [--window-end D]         drift check vs the champion (no retrain)
    trainyard score PIPELINE [--date D]               batch-score partitions with the champion
    trainyard monitor PIPELINE [--window-end D]       realised performance on delayed labels
    trainyard history PIPELINE [--json]               the model's alias moves (audit trail)
    trainyard card PIPELINE [--version N]             a version's model card (default: champion)
    trainyard rollback PIPELINE [--to N] --reason R   make an earlier version champion again
    trainyard restore-aliases PIPELINE --reason R     rebuild the aliases from the audit trail
    trainyard serve [--host H] [--port P]             the model server (TRAINYARD_SERVING_*)

Step commands print only their JSON result on stdout, so they chain through files; everything
else (logs, MLflow's messages, human-readable summaries) goes to stderr. A refused input ends
with one line naming what is wrong and a non-zero exit; ``--debug`` adds the traceback.
The local stack, the demo and the data generator are in ``trainyard-dev`` (tools/).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import traceback
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from trainyard.core.errors import DeterministicError, NothingToDoError, ServiceUnavailableError
from trainyard.core.services import EXIT_UNAVAILABLE, service_errors

#: Exit codes: a data-quality verdict, an unexpected error (a bug), an input refused before any
#: work, and S3 or MLflow unavailable (``trainyard.core.services.EXIT_UNAVAILABLE``: try later).
EXIT_VALIDATION_FAILED = 1
EXIT_FAILED = 1
EXIT_REFUSED = 2


class ArgumentError(DeterministicError):
    """A command-line argument or an input file it names is wrong."""


def _spec(name: str) -> Any:
    """The named spec, loaded with all the others as Airflow loads them.

    So what Airflow refuses is refused here too, e.g. a registered model name claimed twice.
    """
    from trainyard.core.settings import Settings
    from trainyard.core.spec import load_all_specs

    directory = Settings.from_env().pipelines_dir
    specs = {spec.name: spec for spec in load_all_specs(directory)}
    if name not in specs:
        raise ArgumentError(f"no pipeline {name!r} in {directory}; known: {sorted(specs)}")
    return specs[name]


def _settings() -> Any:
    from trainyard.core.settings import Settings

    return Settings.from_env()


def _read(path: str, model: type, option: str) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate_json(Path(path).read_text())
    except OSError as error:
        raise ArgumentError(f"--{option} {path}: cannot read it: {error.strerror}") from None
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "<top level>"
        raise ArgumentError(
            f"--{option} {path}: not the JSON the {option} step writes: field {field!r}: "
            f"{first['msg']}"
        ) from None


def _emit(out: IO[str], result: Any) -> None:
    print(result.model_dump_json(indent=2), file=out, flush=True)


def _window_end(args: argparse.Namespace) -> date | None:
    if not args.window_end:
        return None
    try:
        return date.fromisoformat(args.window_end)
    except ValueError:
        raise ArgumentError(
            f"--window-end {args.window_end!r} is not a date (YYYY-MM-DD)"
        ) from None


def _window(args: argparse.Namespace, spec: Any) -> Any:
    from trainyard.data.sources import resolve_window

    now = datetime.now(UTC).replace(tzinfo=None)
    return resolve_window(
        spec, now.date(), window_end=_window_end(args), window_days=args.window_days, run_time=now
    )


def cmd_specs(args: argparse.Namespace) -> int:
    from trainyard.training.preflight import check_pipelines

    for spec, _ in check_pipelines(_settings()):
        print(f"{spec.name}: ok (spec sha256 {spec.sha256()[:12]})", file=args.out)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from trainyard.data.draft import draft

    drafted = draft(
        _settings(),
        args.name,
        args.source,
        args.target,
        partitioning=args.partitioning,
        sample_rows=args.sample_rows,
    )
    located = drafted.located
    layout = located.partitioning or "none (a static source: the window is ignored)"
    lines = [
        f"read {drafted.sample_rows} sample rows of {located.format} from "
        f"s3://{located.bucket}/{located.prefix} ({len(located.keys)} file(s); partitioning: "
        f"{layout})",
        *[f"  {reason}" for reason in drafted.guess.reasons],
        f"wrote {drafted.spec_path}",
        f"wrote {drafted.suite_path}",
        f"next: review both, then `trainyard specs` and `trainyard run {args.name}`",
    ]
    print("\n".join(lines), file=args.out)
    return 0


def cmd_buckets(args: argparse.Namespace) -> int:
    from trainyard.core import storage

    settings = _settings()
    created = storage.ensure_buckets(settings, settings.buckets, wait_seconds=args.wait)
    print(
        f"buckets ready: {', '.join(settings.buckets)} (created: {', '.join(created) or 'none'})",
        file=args.out,
    )
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from trainyard.training import steps

    spec = _spec(args.pipeline)
    _emit(args.out, steps.ingest(spec, _settings(), _window(args, spec)))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.data.validation import validate_snapshot

    snapshot = _read(args.snapshot, SnapshotRef, "snapshot")
    report = validate_snapshot(_spec(args.pipeline), _settings(), snapshot)
    _emit(args.out, report)
    if not report.success:
        print(report.failure_message(), file=sys.stderr)
        return EXIT_VALIDATION_FAILED
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from trainyard.core.lineage import RunContext
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.data.validation import ValidationReport
    from trainyard.training import steps

    spec = _spec(args.pipeline)
    result = steps.train(
        spec,
        _settings(),
        _read(args.snapshot, SnapshotRef, "snapshot"),
        _read(args.validation, ValidationReport, "validation"),
        RunContext.for_cli(spec.name, args.reason),
    )
    _emit(args.out, result)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.training import steps

    decision = steps.evaluate(
        _spec(args.pipeline),
        _settings(),
        _read(args.snapshot, SnapshotRef, "snapshot"),
        _read(args.training, steps.TrainingResult, "training"),
        replace_incompatible_champion=args.replace_incompatible_champion,
        allow_older_window=args.allow_older_window,
    )
    _emit(args.out, decision)
    print(decision.summary(), file=sys.stderr)
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from trainyard.core.lineage import RunContext
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.data.validation import ValidationReport
    from trainyard.training.gate import GateDecision
    from trainyard.training.registry import register
    from trainyard.training.steps import TrainingResult

    spec = _spec(args.pipeline)
    decision = _read(args.decision, GateDecision, "decision")
    if not decision.passed:
        print(decision.summary(), file=sys.stderr)
        return 1
    registration = register(
        spec,
        _settings(),
        _read(args.snapshot, SnapshotRef, "snapshot"),
        _read(args.validation, ValidationReport, "validation"),
        _read(args.training, TrainingResult, "training"),
        decision,
        RunContext.for_cli(spec.name, args.reason),
    )
    _emit(args.out, registration)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from trainyard.core.lineage import RunContext
    from trainyard.training import steps

    spec = _spec(args.pipeline)
    result = steps.run(
        spec,
        _settings(),
        _window(args, spec),
        RunContext.for_cli(spec.name, args.reason),
        replace_incompatible_champion=args.replace_incompatible_champion,
        allow_older_window=args.allow_older_window,
    )
    print(result.describe(), file=args.out)
    return 0


def _print_retrain_decision(
    spec: Any,
    settings: Any,
    summary: dict[str, Any],
    run_id: str,
    signal: str = "drift",
    conf: dict[str, Any] | None = None,
) -> None:
    """What the monitors' storm protection would decide in Airflow for this verdict."""
    from trainyard.drift import ledger, policy

    decision = policy.decide(
        summary,
        now=datetime.now(UTC),
        cooldown_hours=spec.drift.cooldown_hours,
        last_retrain=ledger.last_retrain(settings, spec.name),
        active_training_runs=0,
        monitor_run_id=run_id,
        training_dag_id=spec.training_dag_id,
        signal=signal,
        conf=conf,
    )
    print(
        f"  in Airflow this verdict would give: {decision.message} (the CLI never triggers "
        "training and cannot see queued or running training runs)",
        file=sys.stderr,
    )


def cmd_drift(args: argparse.Namespace) -> int:
    from trainyard.core.lineage import RunContext
    from trainyard.drift.steps import run_check

    spec = _spec(args.pipeline)
    settings = _settings()
    context = RunContext.for_cli(spec.name, args.reason)
    summary, mlflow_run_id = run_check(
        spec,
        settings,
        datetime.now(UTC).date(),
        context,
        window_end=_window_end(args),
        window_days=args.window_days,
    )
    _emit(args.out, summary)
    print(summary.describe(), file=sys.stderr)
    print(
        f"  mlflow run: {mlflow_run_id} (experiment {spec.monitoring_experiment})", file=sys.stderr
    )
    _print_retrain_decision(spec, settings, summary.reference_for_xcom(), context.run_id)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from trainyard.core.lineage import RunContext
    from trainyard.scoring import steps

    spec = _spec(args.pipeline)
    if spec.scoring is None:
        raise ArgumentError(f"pipeline {spec.name!r} has no scoring section in its spec")
    record = steps.run(
        spec,
        _settings(),
        datetime.now(UTC).date(),
        RunContext.for_cli(spec.name).run_id,
        datetime.now(UTC),
        window_end=_window_end(args),
        days=args.window_days,
    )
    _emit(args.out, record)
    print(record.describe(), file=sys.stderr)
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from trainyard.core.lineage import RunContext
    from trainyard.monitoring.steps import decay_conf, run_check

    spec = _spec(args.pipeline)
    if spec.performance is None:
        raise ArgumentError(f"pipeline {spec.name!r} has no performance section in its spec")
    settings = _settings()
    context = RunContext.for_cli(spec.name, args.reason)
    summary, mlflow_run_id = run_check(
        spec, settings, datetime.now(UTC).date(), context, window_end=_window_end(args)
    )
    _emit(args.out, summary)
    print(summary.describe(), file=sys.stderr)
    print(
        f"  mlflow run: {mlflow_run_id} (experiment {spec.monitoring_experiment})", file=sys.stderr
    )
    conf = decay_conf(summary) if summary.verdict == "decay" else None
    _print_retrain_decision(
        spec, settings, summary.reference_for_xcom(), context.run_id, "decay", conf
    )
    return 0


def _cli_cause(spec: Any, reason: str) -> Any:
    from trainyard.core.lineage import RunContext
    from trainyard.governance.audit import Cause

    return Cause.of_run(RunContext.for_cli(spec.name, reason.strip()))


def cmd_history(args: argparse.Namespace) -> int:
    from trainyard.governance import audit

    spec = _spec(args.pipeline)
    events = audit.read_events(_settings(), spec.registered_model_name)
    if args.json:
        print(json.dumps([e.model_dump(mode="json") for e in events], indent=1), file=args.out)
    else:
        print(audit.timeline(spec.registered_model_name, events), file=args.out)
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from trainyard.core.tracking import champion_version
    from trainyard.governance.model_card import read_card

    spec = _spec(args.pipeline)
    name = spec.registered_model_name
    version = (args.version or "").strip().removeprefix("v")
    if not version:
        champion = champion_version(name)
        if champion is None:
            raise ArgumentError(f"{name} has no champion; name a version with --version N")
        version = str(champion.version)
    card = read_card(_settings(), name, version)
    if card is None:
        raise ArgumentError(
            f"{name} v{version} has no model card (no such version, or "
            "registered before cards were written)"
        )
    print(card, file=args.out, end="")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from trainyard.governance.rollback import rollback

    spec = _spec(args.pipeline)
    event = rollback(
        _settings(), spec.registered_model_name, args.to, _cli_cause(spec, args.reason)
    )
    print(event.describe(), file=args.out)
    return 0


def cmd_restore_aliases(args: argparse.Namespace) -> int:
    from trainyard.governance.aliases import restore

    spec = _spec(args.pipeline)
    if not args.reason.strip():
        raise ArgumentError("--reason must say why the aliases are rebuilt")
    changed = restore(_settings(), spec.registered_model_name, _cli_cause(spec, args.reason))
    print(json.dumps(changed), file=args.out)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    # One OpenMP thread per prediction, set before scikit-learn loads its OpenMP runtime: a
    # request of a few rows gains nothing from threads, and on a busy host their spin-waiting
    # made a one-row HistGradientBoosting prediction 25-50x slower (measured, load 20).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import uvicorn

    from trainyard.core.settings import ServingSettings
    from trainyard.core.spec import load_all_specs
    from trainyard.serving.app import create_app

    settings = _settings()
    try:
        serving = ServingSettings.from_env()
    except ValueError as error:
        raise ArgumentError(str(error)) from None
    serving = dataclasses.replace(
        serving, host=args.host or serving.host, port=args.port or serving.port
    )
    specs = load_all_specs(settings.pipelines_dir)
    if serving.pipelines:
        unknown = sorted(set(serving.pipelines) - {spec.name for spec in specs})
        if unknown:
            raise ArgumentError(
                f"TRAINYARD_SERVING_PIPELINES names unknown pipelines {unknown}; "
                f"known: {sorted(spec.name for spec in specs)}"
            )
        specs = [spec for spec in specs if spec.name in serving.pipelines]
    app = create_app(settings, serving, specs)
    # One worker: the alias follower and the prediction log live in the process. Uvicorn turns
    # SIGTERM into a graceful shutdown, whose last step flushes the log.
    uvicorn.run(
        app,
        host=serving.host,
        port=serving.port,
        workers=1,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``trainyard``."""
    parser = argparse.ArgumentParser(prog="trainyard", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("specs", help="validate every pipeline spec").set_defaults(func=cmd_specs)
    init = commands.add_parser(
        "init", help="draft a spec and an expectation suite from a sample of the data"
    )
    init.add_argument("name", help="the pipeline's name (also its suite's)")
    init.add_argument("--source", required=True, help="s3://bucket/prefix or s3://bucket/file.csv")
    init.add_argument("--target", required=True, help="the column to predict")
    init.add_argument(
        "--partitioning", help="the partition layout, e.g. dt=YYYYMMDD, when not recognised"
    )
    init.add_argument("--sample-rows", type=int, default=50_000, help="rows to sample")
    init.set_defaults(func=cmd_init)
    buckets = commands.add_parser("buckets", help="create the buckets the settings name")
    buckets.add_argument(
        "--wait", type=float, default=120.0, help="seconds to wait for S3 to answer"
    )
    buckets.set_defaults(func=cmd_buckets)

    def step(name: str, func: Any, *inputs: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=f"the {name} step")
        sub.add_argument("pipeline")
        for item in inputs:
            sub.add_argument(f"--{item}", required=True, help=f"JSON file from the {item} step")
        sub.add_argument("--reason", default="cli")
        sub.set_defaults(func=func)
        return sub

    for sub in (step("ingest", cmd_ingest), step("run", cmd_run), step("drift", cmd_drift)):
        sub.add_argument(
            "--window-end",
            help="last day of the window, YYYY-MM-DD (its partitions, its hours up to 23:00, "
            "or its rows of a SQL query); default: the spec's offset before today",
        )
        sub.add_argument("--window-days", type=int)
    monitor = step("monitor", cmd_monitor)
    monitor.add_argument("--window-end", help="last day of the newest window, YYYY-MM-DD")
    score = step("score", cmd_score)
    score.add_argument(
        "--date", "--window-end", dest="window_end", help="last partition date to score"
    )
    score.add_argument("--window-days", type=int, help="days to score (default: the spec's)")
    step("validate", cmd_validate, "snapshot")
    step("train", cmd_train, "snapshot", "validation")
    evaluate = step("evaluate", cmd_evaluate, "snapshot", "training")
    for sub in (evaluate, commands.choices["run"]):
        sub.add_argument(
            "--replace-incompatible-champion",
            action="store_true",
            help="let a challenger replace a champion that cannot be scored on its holdout "
            "(other columns, classes or task); recorded in the new version's lineage",
        )
        sub.add_argument(
            "--allow-older-window",
            action="store_true",
            help="let a run of a window older than the champion's replace it (a rerun or "
            "backfill); recorded in the new version's lineage",
        )
    step("register", cmd_register, "snapshot", "validation", "training", "decision")

    history = commands.add_parser("history", help="the model's alias moves, oldest first")
    history.add_argument("pipeline")
    history.add_argument("--json", action="store_true", help="print the events as JSON")
    history.set_defaults(func=cmd_history)
    card = commands.add_parser("card", help="a registered version's model card (Markdown)")
    card.add_argument("pipeline")
    card.add_argument("--version", help="version N (default: the champion)")
    card.set_defaults(func=cmd_card)
    rollback = commands.add_parser("rollback", help="make an earlier version champion again")
    rollback.add_argument("pipeline")
    rollback.add_argument("--to", help="version N (default: the one holding 'previous')")
    rollback.add_argument("--reason", required=True, help="why; kept in the audit trail")
    rollback.set_defaults(func=cmd_rollback)
    restore = commands.add_parser(
        "restore-aliases", help="set champion/previous/challenger as the audit trail says"
    )
    restore.add_argument("pipeline")
    restore.add_argument("--reason", required=True, help="why; kept in the audit trail")
    restore.set_defaults(func=cmd_restore_aliases)
    serve = commands.add_parser("serve", help="serve every pipeline's champion over HTTP")
    serve.add_argument("--host", help="listen address (default TRAINYARD_SERVING_HOST)")
    serve.add_argument("--port", type=int, help="listen port (default TRAINYARD_SERVING_PORT)")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``trainyard`` and ``python -m trainyard``.

    Returns:
        0 on success (or nothing to do), 1 for a failed data validation or an unexpected error
        (a bug), 2 for input refused before any work, 3 when S3 or MLflow is unavailable (after
        bounded client retries; running it again later may succeed). Errors print one line (a
        few for a list of problems) and no traceback unless ``--debug`` is given.
    """
    from trainyard.data.validation import ValidationFailed

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # GX logs a line per internal function it registers at import; its warnings still show.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    args.out = sys.stdout
    try:
        # Libraries (MLflow's "View run ...") print to stdout; only results go there.
        with contextlib.redirect_stdout(sys.stderr), service_errors(_settings()):
            return args.func(args)
    except NothingToDoError as error:
        print(f"trainyard: {error}", file=sys.stderr)
        return 0
    except ValidationFailed as error:
        print(f"trainyard: {error}", file=sys.stderr)
        return EXIT_VALIDATION_FAILED
    except DeterministicError as error:
        if args.debug:
            traceback.print_exc()
        print(f"trainyard: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except ServiceUnavailableError as error:
        if args.debug:
            traceback.print_exc()
        print(f"trainyard: {error}; try again later", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except Exception as error:  # noqa: BLE001 (the one place that turns any error into a line)
        if args.debug:
            traceback.print_exc()
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(
            f"trainyard: unexpected {type(error).__name__}: {reason} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED
