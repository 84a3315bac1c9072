"""`cifar10-mlops team-stack up|down|env|status [--dir D] [--purge]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cifar10_mlops.core.failures import report_errors
from cifar10_mlops.team_stack.errors import StackError
from cifar10_mlops.team_stack.stack import (
    DEFAULT_DIR,
    down,
    export_lines,
    health,
    own_state,
    say,
    up,
)

DESCRIPTION = "PostgreSQL, an S3 server (SeaweedFS) and an MLflow server on 127.0.0.1."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "env", "status"])
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="state, data and logs (default .team-stack)"
    )
    parser.add_argument("--purge", action="store_true", help="down: delete the data as well")


def run(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    if args.action == "up":
        state = up(directory)
        say('export these in your shell (eval "$(cifar10-mlops team-stack env)"):')
        sys.stdout.write(export_lines(state))
    elif args.action == "env":
        state = own_state(directory.resolve())  # a copy's own, not the original's
        if not state.get("processes"):
            raise StackError(f"no stack running from {directory}; start it: make team-stack")
        sys.stdout.write(export_lines(state))
    elif args.action == "status":
        state = own_state(directory.resolve())  # a copy's own, not the original's
        answers = health(state) if state.get("processes") else {}
        for name in ("postgres", "seaweedfs", "mlflow"):
            print(f"{name}: {'up' if answers.get(name) else 'down'}")
        if not answers or not all(answers.values()):
            return 1
    else:
        stopped = down(directory, purge=args.purge)
        say(f"stopped {', '.join(stopped) or 'nothing (not running)'}")
        if args.purge:
            say(f"deleted {directory.resolve()}")
    return 0


@report_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifar10-mlops team-stack", description=DESCRIPTION)
    add_arguments(parser)
    code = run(parser.parse_args(argv))
    if code:
        raise SystemExit(code)
