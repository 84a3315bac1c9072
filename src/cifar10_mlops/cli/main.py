"""The `cifar10-mlops` command: predict with a trained model, the CI metrics gate, presets, a
multi-worker training task, and the team stack."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cifar10_mlops.core.failures import report_errors


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cifar10-mlops", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser(
        "predict",
        help="classify images with a trained model",
        description="Write a CSV (path,label,confidence,error) with one row per image.",
    )
    predict.add_argument(
        "paths",
        nargs="+",
        type=Path,
        help="image files, or directories searched recursively for images",
    )
    predict.add_argument(
        "--model",
        default="models/model.keras",
        help="a .keras file, an MLflow model directory, or an MLflow URI: models:/<name>@<alias>, "
        "models:/<name>/<version>, runs:/<run id>/model (default: %(default)s)",
    )
    predict.add_argument(
        "--trust-model-code",
        action="store_true",
        help="load an MLflow model the MLflow way, which runs the code it carries (its "
        "python_model, code/ or pickles): only for models from a source you trust. Without it "
        "only the model's model.keras is loaded, in Keras' safe mode",
    )
    predict.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="test-time augmentation: average over flips and 1-pixel shifts (evaluate.tta). "
        "Default: as the model was evaluated (an MLflow model's own setting; for a .keras "
        "file, ./params.yaml's evaluate.tta)",
    )
    predict.add_argument("--output", type=Path, help="CSV to write (default: stdout)")
    predict.add_argument(
        "--batch-size",
        type=_positive_int,
        default=256,
        help="images per model call (default: %(default)s)",
    )
    predict.add_argument(
        "--quiet", action="store_true", help="no progress bar and no summary line on stderr"
    )
    # Also accepted after the subcommand; SUPPRESS keeps it from overriding the global flag.
    predict.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )

    gate = commands.add_parser("gate", help="fail when metrics fall below the committed baseline")
    gate.add_argument("--metrics", type=Path, default=Path("reports/metrics.json"))
    gate.add_argument("--baseline", type=Path, default=Path(".ci/baseline.json"))
    gate.add_argument(
        "--markdown", type=Path, default=None, help="also write the verdicts as a markdown table"
    )

    worker = commands.add_parser(
        "worker",
        help="join multi-worker training as a non-chief process (docs/distributed.md)",
        description="Train in lockstep with the chief (`dvc repro` with the cluster's variables: "
        "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, or TF_CONFIG, Slurm, Open "
        "MPI); run from the repository root of a checkout of the chief's commit and data. Writes "
        "nothing into the repository; exits 0 when training ends.",
    )
    worker.add_argument(
        "-S",
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params.yaml change, as the chief's `dvc exp run -S` got it (repeatable)",
    )
    worker.add_argument(
        "--weights-out",
        type=Path,
        help="also save the final weights to this .weights.h5 file (outside the repository)",
    )

    preset = commands.add_parser(
        "preset",
        help="print a preset as `dvc exp run` arguments",
        description="Print presets/NAME.yaml as -S key=value arguments: "
        "dvc exp run $(cifar10-mlops preset NAME)",
    )
    preset.add_argument("name", nargs="?", help="a preset; without one, list them")

    from cifar10_mlops.team_stack import cli as team_stack_cli  # stdlib only until it runs

    team_stack = commands.add_parser(
        "team-stack",
        help="PostgreSQL, S3 and an MLflow server on 127.0.0.1 for a team (docs/team-setup.md)",
        description=team_stack_cli.DESCRIPTION,
    )
    team_stack_cli.add_arguments(team_stack)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


@report_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "predict":
        from cifar10_mlops.cli.predict import predict_to_csv

        return predict_to_csv(
            args.model,
            args.paths,
            args.output,
            args.batch_size,
            args.quiet,
            trust_model_code=args.trust_model_code,
            tta=args.tta,
        )
    if args.command == "worker":
        from cifar10_mlops.cli.worker import run_worker

        return run_worker(args.weights_out, args.assignments)
    if args.command == "team-stack":
        from cifar10_mlops.team_stack.cli import run

        return run(args)
    if args.command == "preset":
        from cifar10_mlops.cli import presets

        if args.name is None:
            print("\n".join(presets.available()))
        else:
            print(" ".join(presets.dvc_set_arguments(presets.load_preset(args.name))))
        return 0
    from cifar10_mlops.evaluation.gate import run_gate

    return run_gate(args.metrics, args.baseline, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
