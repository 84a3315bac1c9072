"""Hostile requests against a real `mlflow models serve`: for each (tests/helpers/model_server.py's
hostile_requests: wrong shape, wrong dtype, not JSON, broken base64, not a picture, a
decompression bomb, a 100 MB body, 10,000 images), the status, the answer's size and first
words, the seconds it took, the server's RSS after it, and whether the next good request (one
uint8 image) is answered. tests/tracking/test_serving.py asserts the same on every run.

The model: the main job's architecture, untrained, TTA off, saved by the cifar10_mlops first on
sys.path: run with an older checkout's src/ first on PYTHONPATH for the "before" column.

Usage:  python benchmarks/hostile_requests.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.serving_load import untrained_main_job_model  # noqa: E402
from tests.helpers.model_server import ModelServer, hostile_requests  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    good = json.dumps({"inputs": np.zeros((1, 32, 32, 3), np.uint8).tolist()}).encode()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hostile-") as scratch:
        folder = Path(scratch)
        with ModelServer(untrained_main_job_model(folder, tta=False), folder) as server:
            server.invoke(good)
            rss_start = server.rss_mib()
            for case, body in hostile_requests().items():
                start = time.perf_counter()
                try:
                    status, answer = server.invoke(body, timeout=600)
                except OSError as exc:
                    status, answer = 0, f"{type(exc).__name__}: {exc}".encode()
                seconds = time.perf_counter() - start
                next_status = server.invoke(good)[0] if server.alive() else 0
                rows.append(
                    {
                        "case": case,
                        "status": status,
                        "answer_bytes": len(answer),
                        "answer_start": answer[:160].decode(errors="replace"),
                        "seconds": round(seconds, 2),
                        "server_rss_mib": round(server.rss_mib()),
                        "next_good_request": next_status,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    summary = {"server_rss_mib_at_start": round(rss_start), "cases": rows}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
