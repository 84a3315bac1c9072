"""The served model under a bounded load: `mlflow models serve` on 127.0.0.1, N requests of one
photo each (a PNG file, base64 in `dataframe_split`) from C concurrent clients, then stop.

Reports requests/s, p50/p95/p99 latency, errors, the server's RSS before and after, whether
every answer equals the answer for the same photo in one batch request, and the batch path:
one request of B photos against B requests of one (sent one after another), as a ratio.

The model: --model (an MLflow model directory or URI; MLFLOW_TRACKING_URI resolves models:/),
or by default the main job's architecture (params.yaml's model section: ResNet50 at 32 px)
with untrained weights (the same work per photo as a trained one), logged with --tta / --no-tta.

Usage:  python benchmarks/serving_load.py [--requests 2000] [--clients 8] [--batch 256]
            [--tta | --no-tta] [--model URI] [--send photos|arrays] [--json OUT]

--send arrays sends uint8 arrays (`inputs`, nested lists) instead of PNG files: the only input
a model logged before photo support accepts, for a before/after comparison (run this script
with that commit's src/ first on PYTHONPATH, so the saved model carries that code).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.helpers.model_server import ModelServer, photos_payload, predictions  # noqa: E402

PHOTOS = 64  # distinct photos the clients cycle through


def untrained_main_job_model(folder: Path, tta: bool) -> str:
    """The main job's model (params.yaml's model section), untrained, as a pyfunc directory."""
    from cifar10_mlops.core.config import CLASS_NAMES
    from cifar10_mlops.core.params import ModelParams, read_params_yaml
    from cifar10_mlops.model.build import build_model
    from cifar10_mlops.tracking.serving import save_classifier

    # Only the model section: an older checkout (a before/after run) knows fewer keys.
    model_params = ModelParams.model_validate(read_params_yaml(REPO / "params.yaml")["model"])
    keras_file = folder / "model.keras"
    build_model(model_params, len(CLASS_NAMES)).save(keras_file)
    return str(save_classifier(keras_file, folder / "pyfunc", tta=tta))


def pixel_arrays(count: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def png_files(count: int) -> list[bytes]:
    from PIL import Image

    files = []
    for image in pixel_arrays(count):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        files.append(buffer.getvalue())
    return files


def payload(items: list, send: str) -> dict:
    if send == "arrays":
        return {"inputs": [np.asarray(item).tolist() for item in items]}
    return photos_payload(items)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def load(server: ModelServer, bodies: list[bytes], requests: int, clients: int) -> dict:
    """`requests` POSTs shared by `clients` threads, each on its own keep-alive connection."""
    import http.client

    latencies: list[float] = []
    answers: dict[int, str] = {}
    errors: list[str] = []
    counter = iter(range(requests))
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            photo = index % len(bodies)
            start = time.perf_counter()
            try:
                connection.request(
                    "POST", "/invocations", bodies[photo], {"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                body = response.read()
            except OSError as exc:
                with lock:
                    errors.append(type(exc).__name__)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                continue
            elapsed = time.perf_counter() - start
            with lock:
                if response.status != 200:
                    errors.append(str(response.status))
                    continue
                latencies.append(elapsed)
                label = predictions(body)[0]["label"]
                if answers.setdefault(photo, label) != label:
                    errors.append(f"photo {photo}: {label} != {answers[photo]}")
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return {
        "requests": requests,
        "clients": clients,
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(1000 * percentile(latencies, 0.50), 1),
        "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "mean_ms": round(1000 * statistics.fmean(latencies), 1),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "answers": answers,
    }


def batch_path(server: ModelServer, files: list, batch: int, send: str) -> dict:
    """One request of `batch` photos against `batch` requests of one, sent one after another."""
    chosen = [files[i % len(files)] for i in range(batch)]
    start = time.perf_counter()
    status, body = server.invoke(payload(chosen, send))
    one_request = time.perf_counter() - start
    assert status == 200, body[:300]
    batch_labels = [row["label"] for row in predictions(body)]
    start = time.perf_counter()
    single_labels = []
    for data in chosen:
        status, body = server.invoke(payload([data], send))
        assert status == 200, body[:300]
        single_labels.append(predictions(body)[0]["label"])
    singles = time.perf_counter() - start
    return {
        "batch": batch,
        "one_request_s": round(one_request, 3),
        "single_requests_s": round(singles, 3),
        "speedup": round(singles / one_request, 1),
        "same_labels": batch_labels == single_labels,
        "batch_labels": batch_labels,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--model", help="an MLflow model directory or URI (default: see above)")
    parser.add_argument("--send", choices=("photos", "arrays"), default="photos")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serving-load-") as scratch:
        folder = Path(scratch)
        model = args.model or untrained_main_job_model(folder, args.tta)
        files = png_files(PHOTOS) if args.send == "photos" else list(pixel_arrays(PHOTOS))
        bodies = [json.dumps(payload([item], args.send)).encode() for item in files]
        with ModelServer(model, folder) as server:
            for body in bodies[:16]:  # warm-up: first calls compile or trace
                server.invoke(body)
            rss_before = server.rss_mib()
            figures = load(server, bodies, args.requests, args.clients)
            rss_after = server.rss_mib()
            batch = batch_path(server, files, args.batch, args.send)
        answers = figures.pop("answers")
        expected = batch.pop("batch_labels")
        figures.update(
            model=args.model or f"untrained main-job ResNet50, tta={args.tta}",
            sent=args.send,
            server_rss_mib_before=round(rss_before),
            server_rss_mib_after=round(rss_after),
            same_answers_as_one_batch=all(
                expected[photo] == label for photo, label in answers.items()
            ),
            batch_path=batch,
        )
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
