"""The `cifar10-mlops` command: predict with a trained model, and the CI metrics gate."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cifar10_mlops.errors import report_errors


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cifar10-mlops", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="classify images with a trained model")
    predict.add_argument("paths", nargs="+", type=Path, help="image files or directories of them")
    predict.add_argument("--model", type=Path, default=Path("models/model.keras"))
    predict.add_argument("--output", type=Path, help="CSV to write (default: stdout)")
    predict.add_argument("--batch-size", type=int, default=256)

    gate = commands.add_parser("gate", help="fail when metrics fall below the committed baseline")
    gate.add_argument("--metrics", type=Path, default=Path("reports/metrics.json"))
    gate.add_argument("--baseline", type=Path, default=Path(".ci/baseline.json"))
    return parser


@report_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "predict":
        from cifar10_mlops.predict import predict_to_csv

        return predict_to_csv(args.model, args.paths, args.output, args.batch_size)
    from cifar10_mlops.gate import run_gate

    return run_gate(args.metrics, args.baseline)


if __name__ == "__main__":
    sys.exit(main())
