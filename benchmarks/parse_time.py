"""Benchmark (a): parse time of each DAG file against a trivial DAG file of the same size.

For every file in dags/, a trivial file is generated with the same number of DAGs and the same
number of tasks per DAG (chained no-op @task functions), and a second one that also declares the
same Params and default_args. Each file is parsed three ways:

- fork per parse, the way Airflow 3.3's dag-processor parses: a helper interpreter loads what
  ``airflow dag-processor`` has loaded when it forks (the CLI, the manager with its in-process
  execution API, processor.py, DagBag, serialization, the ORM models, the task SDK supervisor;
  checked never to import ``trainyard``), then parses each file through Airflow's own
  ``DagFileProcessorProcess.start`` (airflow/dag_processing/processor.py): it pre-imports the
  *Airflow* modules the file names (``_pre_import_airflow_modules``; our ``trainyard`` package is
  never imported in the parent), forks (``WatchedSubprocess.start`` / ``_fork_main``), and the
  child runs ``_parse_file_entrypoint`` → ``_parse_file`` (``BundleDagBag`` + serialization) and
  sends the result back. The child times ``_parse_file`` and writes it to a pipe; the parent
  also times fork → result received (end to end).
- warm: ``DagBag(safe_mode=False)`` repeatedly in one process where everything the file imports
  is already imported (what a parse costs with nothing left to import).
- cold: once in a fresh interpreter (Airflow's import and all).

Fork and warm parses of all files are interleaved round by round (the order rotates each round),
with the same number of repetitions, so drift in machine load hits every file alike. Subprocesses
use bytecode caches, as a deployed image does (see --no-bytecode-cache). A separate
pass repeats the fork parse under ``python -X importtime`` and cProfile to show what the forked
child spends its time on. Goal: median ratio <= 2.

Usage: python benchmarks/parse_time.py [--repeats N] [--profile-repeats K]
Writes benchmarks/results/parse_time.json.
"""

from __future__ import annotations

import argparse
import ast
import gc
import json
import os
import re
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
OUR_PACKAGE = "trainyard"

TRIVIAL_TEMPLATE = '''"""Trivial airflow DAG file: {dags} DAGs x {tasks} chained no-op tasks."""
from datetime import datetime, timedelta, timezone
from airflow.sdk import DAG, Param, task


def on_failure(context):
    return None


for index in range({dags}):
    with DAG(f"trivial_{{index}}", schedule=None,
             start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False, {extras}) as dag:
        previous = None
        for number in range({tasks}):
            @task(task_id=f"step_{{number}}")
            def step():
                return None
            current = step()
            if previous is not None:
                previous >> current
            previous = current
    globals()[dag.dag_id] = dag
'''
# The trivial file "with the same Params" gets the Params (names, defaults, schemas,
# descriptions) and default_args of the DAG file's first DAG: Airflow copies the Params into every
# task and checks their schemas, a cost of the feature rather than of our code.


def _literal(value: object) -> str:
    if isinstance(value, timedelta):
        return f"timedelta(seconds={value.total_seconds()!r})"
    if isinstance(value, list) and value and all(callable(item) for item in value):
        # Failure notifiers (trainyard.alerts): as many plain callbacks, defined in the file.
        return "[" + ", ".join("on_failure" for _ in value) + "]"
    if callable(value):
        return "on_failure"
    ast.literal_eval(text := repr(value))  # anything else must be a plain literal
    return text


def same_params_extras(path: Path) -> str:
    """The ``params=..., default_args=...`` arguments of the file's first DAG, as source."""
    from airflow.dag_processing.dagbag import DagBag

    dag = next(iter(DagBag(dag_folder=str(path), safe_mode=False).dags.values()))
    params = [(name, dag.params.get_param(name)) for name in dag.params]
    rendered = ", ".join(
        f"{name!r}: Param({_literal(p.value)}, description={p.description!r}, **{p.schema!r})"
        for name, p in params
    )
    default_args = ", ".join(f"{k!r}: {_literal(v)}" for k, v in dag.default_args.items())
    return f"params={{{rendered}}},\n    default_args={{{default_args}}}"


VARIANTS = ("ours", "trivial", "trivial_params")


def parse_once(path: Path) -> tuple[float, dict[str, int]]:
    """Parse one file with a fresh DagBag; return seconds and {dag_id: task count}."""
    from airflow.dag_processing.dagbag import DagBag

    start = time.perf_counter()
    bag = DagBag(dag_folder=str(path), safe_mode=False)
    elapsed = time.perf_counter() - start
    if bag.import_errors:
        raise RuntimeError(f"import errors parsing {path}: {bag.import_errors}")
    return elapsed, {dag_id: len(dag.tasks) for dag_id, dag in bag.dags.items()}


def cold_parse(path: Path, env: dict[str, str]) -> float:
    """Seconds for a fresh interpreter to import Airflow and parse the file."""
    code = (
        "import time; t=time.perf_counter();"
        "from airflow.dag_processing.dagbag import DagBag;"
        f"b=DagBag(dag_folder={str(path)!r}, safe_mode=False);"
        "assert not b.import_errors, b.import_errors;"
        "print(time.perf_counter()-t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return float(out.stdout.strip().splitlines()[-1])


# ---- fork per parse: the helper process (the "dag-processor") and its forked children ----

# Set by the helper before each fork; the forked child inherits them.
_REPORT_FD = -1
_PROFILE: dict[str, str] = {}


def _child_entrypoint() -> None:
    """Target of the forked child: Airflow's own ``_parse_file_entrypoint``, ``_parse_file`` timed.

    Runs after ``_fork_main`` has reset signals, routed logs over the JSON channel and blocked
    ORM access, exactly as for the default target.
    """
    from airflow.dag_processing import processor

    real_parse_file = processor._parse_file

    def timed_parse_file(msg, log):
        if _PROFILE.get("importtime"):  # -X importtime writes to fd 2
            fd = os.open(_PROFILE["importtime"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 2)
            os.close(fd)
        profiler = None
        if _PROFILE.get("cprofile"):
            import cProfile

            profiler = cProfile.Profile()
        preloaded = sorted(m for m in sys.modules if m.split(".")[0] == OUR_PACKAGE)
        modules_before = len(sys.modules)
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = real_parse_file(msg, log)
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - start
        if profiler is not None:
            profiler.dump_stats(_PROFILE["cprofile"])
        report = {
            "parse_s": elapsed,
            "modules_imported": len(sys.modules) - modules_before,
            "our_modules_preloaded": preloaded,
        }
        os.write(_REPORT_FD, json.dumps(report).encode())
        return result

    processor._parse_file = timed_parse_file
    processor._parse_file_entrypoint()


def fork_server(log_dir: Path) -> None:
    """Helper process: load Airflow as ``airflow dag-processor`` does, then parse on request.

    Reads one JSON request per line on stdin and answers one JSON line on (the original) stdout.
    """
    global _REPORT_FD, _PROFILE
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else written to stdout goes to stderr, not into the protocol

    # What `airflow dag-processor` has loaded before it forks: airflow/__main__.py builds the CLI
    # parser; airflow/cli/commands/dag_processor_command.py imports the manager (and with it
    # processor.py, DagBag, serialization, the task SDK supervisor) and, through
    # @providers_configuration_loaded, loads the providers' configuration; the job's database
    # set-up imports every ORM model; the manager loads the dags-folder bundle class. Checked
    # against a real `airflow dag-processor` 3.3.2 (sys.modules dumped by os.register_at_fork):
    # the same modules at fork time, bar alembic, migrations and CLI-only ones no child imports.
    import airflow.cli.commands.dag_processor_command  # noqa: F401
    import airflow.dag_processing.bundles.local  # noqa: F401
    import structlog
    from airflow.cli import cli_parser
    from airflow.dag_processing.manager import _make_execution_api
    from airflow.dag_processing.processor import DagFileProcessorProcess
    from airflow.models import import_all_models
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk import SecretCache
    from airflow.sdk.api.client import Client
    from airflow.sdk.log import logging_processors
    from airflow.utils.file import iter_airflow_imports

    cli_parser.get_parser()
    import_all_models()
    ProvidersManager().initialize_providers_configuration()
    # DagFileProcessorManager: its in-process execution API and the client on top of it (the
    # `_api_server` field and the `client` property), prepare_server_process_context(),
    # _run_parsing_loop()'s SecretCache.init() and before_run()'s gc.freeze() "to prevent COW in
    # forked process parsing dag file".
    client = Client(
        base_url=None, token="", dry_run=True, transport=_make_execution_api().transport
    )
    client.base_url = "http://in-process.invalid./"
    os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "server"
    SecretCache.init()
    gc.freeze()
    selector = selectors.DefaultSelector()

    def loaded_ours() -> list[str]:
        return sorted(m for m in sys.modules if m.split(".")[0] == OUR_PACKAGE)

    protocol.write(json.dumps({"ready": True, "our_modules_loaded": loaded_ours()}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        path = Path(request["path"])
        _PROFILE = {k: request[k] for k in ("importtime", "cprofile") if request.get(k)}
        modules_before = set(sys.modules)
        read_fd, _REPORT_FD = os.pipe()
        log_file = (log_dir / f"{path.name}.log").open("ab")  # as _get_logger_for_dag_file
        logger = structlog.wrap_logger(
            structlog.BytesLogger(log_file),
            processors=logging_processors(json_output=True),
            logger_name="processor",
        ).bind()
        start = time.perf_counter()
        # As DagFileProcessorManager._create_process; start() runs _pre_import_airflow_modules
        # in this process and forks the child.
        proc = DagFileProcessorProcess.start(
            id=uuid.uuid4(),
            path=str(path),
            bundle_path=path.parent,
            bundle_name="dags-folder",
            dag_file_rel_path=path.name,
            callbacks=[],
            target=_child_entrypoint,
            selector=selector,
            logger=logger,
            logger_filehandle=log_file,
            client=client,
        )
        os.close(_REPORT_FD)
        while not proc.is_ready:  # as the manager's _service_processor_sockets + _collect_results
            for key, _ in selector.select(timeout=0.005):
                handler, on_close = key.data
                try:
                    need_more = handler(key.fileobj)
                except (BrokenPipeError, ConnectionResetError):
                    need_more = False
                if not need_more:
                    on_close(key.fileobj)
                    key.fileobj.close()
        total = time.perf_counter() - start
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
        os.close(read_fd)
        result = proc.parsing_result
        proc.close()
        if not chunks or result is None or result.import_errors:
            errors = result.import_errors if result is not None else "no parsing result"
            reply = {"error": f"parsing {path} in a forked child failed: {errors}"}
        else:
            reply = json.loads(b"".join(chunks))
            reply.update(
                total_s=total,
                dags=len(result.serialized_dags),
                pre_imported=sorted(iter_airflow_imports(str(path))),
                parent_new_modules=sorted(set(sys.modules) - modules_before),
                our_modules_loaded_in_parent=loaded_ours(),
            )
        protocol.write(json.dumps(reply) + "\n")


class ForkParser:
    """Client of a fork_server helper process."""

    def __init__(self, workdir: Path, env: dict[str, str], importtime: bool = False) -> None:
        log_dir = Path(tempfile.mkdtemp(prefix="logs-", dir=workdir))
        self.stderr_path = log_dir / "server.stderr"
        flags = ["-X", "importtime"] if importtime else []
        with self.stderr_path.open("w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, *flags, __file__, "--fork-server", str(log_dir)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=env,
            )
        ready = self._read()
        if ready["our_modules_loaded"]:
            raise RuntimeError(f"the fork parent imported {ready['our_modules_loaded']}")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            tail = self.stderr_path.read_text()[-3000:]
            raise RuntimeError(f"fork server died:\n{tail}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def parse(self, path: Path, **profile: str) -> dict:
        self.proc.stdin.write(json.dumps({"path": str(path), **profile}) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if reply["our_modules_preloaded"] or reply["our_modules_loaded_in_parent"]:
            raise RuntimeError(f"{OUR_PACKAGE} leaked into the fork parent: {reply}")
        return reply

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# ---- what the forked child spends its time on ----

IMPORTTIME_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)")


def read_importtime(path: Path) -> list[tuple[str, int, float, float]]:
    """(module, depth, self ms, cumulative ms) for each import logged by ``-X importtime``."""
    rows = []
    for line in path.read_text().splitlines():
        if match := IMPORTTIME_LINE.match(line):
            own, cumulative, indent, module = match.groups()
            rows.append((module, (len(indent) - 1) // 2, int(own) / 1000, int(cumulative) / 1000))
    return rows


def import_profile(runs: list[list[tuple[str, int, float, float]]]) -> dict[str, dict]:
    """Per module: median self and cumulative ms over runs, and depth in the import tree."""
    modules: dict[str, dict] = {}
    for module in {row[0] for run in runs for row in run}:
        hits = [row for run in runs for row in run if row[0] == module]
        modules[module] = {
            "depth": hits[0][1],
            "self_ms": statistics.median(h[2] for h in hits),
            "cumulative_ms": statistics.median(h[3] for h in hits),
            "runs": len(hits),
        }
    return modules


def our_functions(stats_paths: list[Path], limit: int = 8) -> list[dict]:
    """Median cumulative ms of the functions in include/ (cProfile, so inflated), largest first."""
    import pstats

    include = str(REPO / "include")
    per_function: dict[str, list[float]] = {}
    for path in stats_paths:
        stats = pstats.Stats(str(path)).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
        for (filename, line, name), (_, _, _, cumulative, _) in stats.items():
            if filename.startswith(include):
                key = f"{Path(filename).relative_to(include)}:{line}({name})"
                per_function.setdefault(key, []).append(cumulative * 1000)
    rows = [{"function": k, "cumulative_ms": statistics.median(v)} for k, v in per_function.items()]
    return sorted(rows, key=lambda r: -r["cumulative_ms"])[:limit]


def profile_forks(
    files: dict[str, dict[str, Path]], repeats: int, workdir: Path, env: dict[str, str]
) -> dict:
    """Repeat the fork parse of every file under -X importtime, then under cProfile."""
    out_dir = Path(tempfile.mkdtemp(prefix="profile-", dir=workdir))
    importtimes: dict[Path, list] = {}
    parse_s: dict[Path, list[float]] = {}
    server = ForkParser(workdir, env, importtime=True)
    try:
        for path in [p for variants in files.values() for p in variants.values()]:
            server.parse(path)  # warm-up, as in the timed rounds
        for index in range(repeats):
            for path in [p for variants in files.values() for p in variants.values()]:
                log = out_dir / f"{path.stem}.{index}.importtime"
                parse_s.setdefault(path, []).append(
                    server.parse(path, importtime=str(log))["parse_s"]
                )
                importtimes.setdefault(path, []).append(read_importtime(log))
    finally:
        server.close()
    cprofiles: dict[Path, list[Path]] = {}
    server = ForkParser(workdir, env)
    try:
        for index in range(repeats):
            for variants in files.values():
                stats = out_dir / f"{variants['ours'].stem}.{index}.pstats"
                server.parse(variants["ours"], cprofile=str(stats))
                cprofiles.setdefault(variants["ours"], []).append(stats)
    finally:
        server.close()

    report = {}
    for name, variants in files.items():
        ours = import_profile(importtimes[variants["ours"]])
        trivial = import_profile(importtimes[variants["trivial_params"]])
        only_ours = {m: v for m, v in ours.items() if m not in trivial}
        report[name] = {
            "parse_ms_under_importtime": 1000 * statistics.median(parse_s[variants["ours"]]),
            "trivial_params_parse_ms_under_importtime": (
                1000 * statistics.median(parse_s[variants["trivial_params"]])
            ),
            "imports_ms": sum(v["cumulative_ms"] for v in ours.values() if v["depth"] == 0),
            "trivial_params_imports_ms": sum(
                v["cumulative_ms"] for v in trivial.values() if v["depth"] == 0
            ),
            "only_ours_self_ms": sum(v["self_ms"] for v in only_ours.values()),
            "only_ours": dict(sorted(only_ours.items(), key=lambda kv: -kv[1]["self_ms"])),
            "heaviest_self": {
                module: {**cost, "trivial_imports_it_too": module in trivial}
                for module, cost in sorted(ours.items(), key=lambda kv: -kv[1]["self_ms"])[:12]
            },
            "our_functions_cprofile": our_functions(cprofiles[variants["ours"]]),
        }
    return report


# ---- orchestration ----


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median_s": statistics.median(values),
        "p90_s": statistics.quantiles(values, n=10, method="inclusive")[8],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--profile-repeats", type=int, default=5)
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="parse in subprocesses with the environment as it is (PYTHONDONTWRITEBYTECODE and "
        "an uncompiled venv make every import compile its source)",
    )
    parser.add_argument("--fork-server", metavar="LOG_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fork_server:
        fork_server(Path(args.fork_server))
        return
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-"))
    workdir = Path(tempfile.mkdtemp(prefix="bench-parse-"))
    # Keep DagBag's INFO lines out of this process's output; the fork server gets the
    # environment as it was (the dag-processor's children log at its level, into files).
    server_env = dict(os.environ)
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    if not args.no_bytecode_cache:
        # A deployed image has bytecode caches (pip compiles on install, Python writes them on
        # first import); uv installs without them, and with PYTHONDONTWRITEBYTECODE set every
        # import in every forked child would compile its source. Write them to a temporary
        # prefix, not into the venv or the repo; the warm-up round fills it.
        server_env.pop("PYTHONDONTWRITEBYTECODE", None)
        server_env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    load_at_start = os.getloadavg()

    files: dict[str, dict[str, Path]] = {}
    shapes: dict[str, dict[str, int]] = {}
    for dag_file in sorted((REPO / "dags").glob("*.py")):
        _, shape = parse_once(dag_file)  # the shape; also imports the file's modules (warm)
        shapes[dag_file.name] = shape
        tasks = max(shape.values())
        trivial = workdir / f"trivial_{dag_file.stem}.py"
        trivial.write_text(TRIVIAL_TEMPLATE.format(dags=len(shape), tasks=tasks, extras=""))
        with_params = workdir / f"trivial_params_{dag_file.stem}.py"
        extras = same_params_extras(dag_file)
        with_params.write_text(TRIVIAL_TEMPLATE.format(dags=len(shape), tasks=tasks, extras=extras))
        files[dag_file.name] = {"ours": dag_file, "trivial": trivial, "trivial_params": with_params}

    every = [(name, variant) for name in files for variant in VARIANTS]
    fork: dict[tuple[str, str], list[dict]] = {key: [] for key in every}
    warm: dict[tuple[str, str], list[float]] = {key: [] for key in every}
    server = ForkParser(workdir, server_env)
    try:
        for round_index in range(-1, args.repeats):  # round -1 warms both parsers up
            shift = round_index % len(every)
            for name, variant in every[shift:] + every[:shift]:
                path = files[name][variant]
                fork_reply = server.parse(path)
                warm_s = parse_once(path)[0]
                if round_index >= 0:
                    fork[name, variant].append(fork_reply)
                    warm[name, variant].append(warm_s)
    finally:
        server.close()
    profile = profile_forks(files, args.profile_repeats, workdir, server_env)

    results = []
    for name, shape in shapes.items():
        row: dict = {"file": name, "dags": len(shape), "tasks_per_dag": shape}
        row["trivial_same_params"] = files[name]["trivial_params"].read_text()
        for variant in VARIANTS:
            key = "" if variant == "ours" else f"_{variant}"
            parse = summary([r["parse_s"] for r in fork[name, variant]])
            total = summary([r["total_s"] for r in fork[name, variant]])
            row[f"fork{key}_median_s"] = parse["median_s"]
            row[f"fork{key}_p90_s"] = parse["p90_s"]
            row[f"fork{key}_end_to_end_median_s"] = total["median_s"]
            row[f"fork{key}_modules_imported_in_child"] = fork[name, variant][-1][
                "modules_imported"
            ]
            row[f"fork{key}_pre_imported"] = fork[name, variant][-1]["pre_imported"]
            row[f"fork{key}_parent_new_modules"] = sorted(
                {m for r in fork[name, variant] for m in r["parent_new_modules"]}
            )
            row[f"warm{key}_median_s"] = statistics.median(warm[name, variant])
        for measure in ("fork_median_s", "fork_p90_s", "fork_end_to_end_median_s", "warm_median_s"):
            stem = measure.removesuffix("_s")
            for variant in ("trivial", "trivial_params"):
                base = measure.replace("_", f"_{variant}_", 1)
                row[f"{stem}_ratio_{variant}"] = row[measure] / row[base]
        # Keys of the earlier version of this benchmark.
        row["warm_trivial_same_params_median_s"] = row["warm_trivial_params_median_s"]
        row["warm_ratio"] = row["warm_median_ratio_trivial"]
        row["warm_ratio_same_params"] = row["warm_median_ratio_trivial_params"]
        row["cold_s"] = cold_parse(files[name]["ours"], server_env)
        row["cold_trivial_s"] = cold_parse(files[name]["trivial"], server_env)
        row["cold_ratio"] = row["cold_s"] / row["cold_trivial_s"]
        row["fork_profile"] = profile[name]
        row["repeats"] = args.repeats
        row["bytecode_cache"] = not args.no_bytecode_cache
        row["loadavg_start_end"] = [round(load_at_start[0], 2), round(os.getloadavg()[0], 2)]
        results.append(row)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parse_time.json").write_text(json.dumps(results, indent=2))
    print_table(results)


def cost_line(module: str, cost: dict, mark: str) -> str:
    return f"    {cost['self_ms']:7.1f} ms self {cost['cumulative_ms']:7.1f} ms cum {mark}{module}"


def print_table(results: list[dict]) -> None:
    ms = "{:8.1f} ms".format
    header = (
        f"{'file':<30}{'measure':<26}{'ours':>11}{'trivial':>11}{'+Params':>11}"
        f"{'ratio':>8}{'ratio+P':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in results:
        lines = [
            ("fork per parse, median", "fork_median_s"),
            ("fork per parse, p90", "fork_p90_s"),
            ("fork → result, median", "fork_end_to_end_median_s"),
            ("warm, median", "warm_median_s"),
        ]
        label = f"{row['file']} ({row['dags']}×{max(row['tasks_per_dag'].values())})"
        for title, measure in lines:
            stem = measure.removesuffix("_s")
            trivial = measure.replace("_", "_trivial_", 1)
            params = measure.replace("_", "_trivial_params_", 1)
            print(
                f"{label:<30}{title:<26}{ms(row[measure] * 1000)}{ms(row[trivial] * 1000)}"
                f"{ms(row[params] * 1000)}{row[stem + '_ratio_trivial']:>7.2f}×"
                f"{row[stem + '_ratio_trivial_params']:>8.2f}×"
            )
            label = ""
        print(
            f"{'':<30}{'cold, fresh interpreter':<26}{row['cold_s']:>9.2f} s"
            f"{row['cold_trivial_s']:>9.2f} s{'':>11}{row['cold_ratio']:>7.2f}×"
        )
    print(
        f"\nrepeats {results[0]['repeats']}, bytecode cache {results[0]['bytecode_cache']}, "
        f"1-min load at start and end {results[0]['loadavg_start_end']}"
    )
    for row in results:
        profile = row["fork_profile"]
        print(
            f"\n{row['file']} in a forked child under -X importtime: parse "
            f"{profile['parse_ms_under_importtime']:.0f} ms (trivial with the same Params "
            f"{profile['trivial_params_parse_ms_under_importtime']:.0f} ms), imports "
            f"{profile['imports_ms']:.0f} ms ({profile['trivial_params_imports_ms']:.0f} ms); "
            f"modules only this file imports: {profile['only_ours_self_ms']:.0f} ms self"
        )
        for module, cost in list(profile["only_ours"].items())[:10]:
            print(cost_line(module, cost, " "))
        print("  heaviest imports in the child (* = the trivial file's child imports it too):")
        for module, cost in list(profile["heaviest_self"].items())[:8]:
            print(cost_line(module, cost, "*" if cost["trivial_imports_it_too"] else " "))
        print("  our functions (cProfile cumulative, inflated by the profiler):")
        for function in profile["our_functions_cprofile"]:
            print(f"    {function['cumulative_ms']:7.1f} ms  {function['function']}")


if __name__ == "__main__":
    main()
