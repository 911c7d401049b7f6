"""``trainyard-dev``: the local stacks, the demo and synthetic data (what the Makefile runs).

trainyard-dev stack up|down|status          the embedded stack (make up / down / status)
trainyard-dev demo                           what `make demo` runs
trainyard-dev prod up|demo|status|down       the production shape without Docker (make prod-local)
trainyard-dev generate --start D --end D [knobs]   land synthetic churn partitions
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date


def cmd_stack(args: argparse.Namespace) -> int:
    from trainyard_dev.demo import default_stack, print_access

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
    from trainyard_dev.demo import run_demo

    return run_demo()


def cmd_prod(args: argparse.Namespace) -> int:
    from trainyard_dev.config import StackConfig
    from trainyard_dev.demo import print_prod_access, run_prod_demo
    from trainyard_dev.prodstack.stack import STATE_FILE, ProdStack
    from trainyard_dev.services import Ports

    state_dir = StackConfig.from_env().prod_state_dir
    if args.action in ("status", "down") and not (state_dir / STATE_FILE).exists():
        print(f"no production-shape run under {state_dir}: nothing to do")
        return 0
    # Free ports for a new run; a running one keeps those recorded in its state file.
    stack = ProdStack(state_dir=state_dir, ports=Ports.free())
    if args.action == "demo":
        return run_prod_demo(stack)
    if args.action == "up":
        stack.up()
        print_prod_access(stack)
    elif args.action == "status":
        for name, pid in stack.status().items():
            print(f"{name:24} {'running, pid ' + str(pid) if pid else 'stopped'}")
    else:
        stopped = stack.down()
        print(f"stopped: {', '.join(stopped) or 'nothing'}; dropped {stack.run_name}_*")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from trainyard.core.settings import Settings
    from trainyard_dev.churn import Knobs, land_days

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``trainyard-dev``."""
    parser = argparse.ArgumentParser(prog="trainyard-dev", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="the embedded stack")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.set_defaults(func=cmd_stack)
    commands.add_parser("demo", help="run the demo").set_defaults(func=cmd_demo)
    prod = commands.add_parser("prod", help="the production shape without Docker")
    prod.add_argument("action", choices=["up", "demo", "status", "down"])
    prod.set_defaults(func=cmd_prod)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``trainyard-dev`` and ``python -m trainyard_dev``."""
    from trainyard.core.errors import TrainyardError
    from trainyard_dev.services import StackError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # One INFO line per HTTP request would bury the demo's own output.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (StackError, TrainyardError, ValueError) as error:
        print(f"trainyard-dev: {error}", file=sys.stderr)
        return 2
