"""Multi-worker training throughput: N processes on 127.0.0.1 against one, same global batch.

Usage:  python benchmarks/multi_worker.py [--workers 2] [--images 2048] [--epochs 3]
                                          [--batch-size 128] [--depth 20] [--width 16]

Each configuration trains the same compact ResNet (train_model with the given backbone) on the
same seeded uint8 images on the JAX backend: first one process (`train.distribution: none`),
then --workers processes (`multi_worker`: jax.distributed + keras.distribution.DataParallel,
the cluster in JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID), each a fresh
child. Throughput is images per second
in steady state (the fastest epoch after the first), as the chief sees it; the ratio is what to
read. On a machine with fewer cores than workers x TensorFlow's threads, no speed-up is
expected: the processes share the cores and add the all-reduce of every step (the point of running
it here is that the figure is honest, not fast).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

TASK = r"""
import json, sys, tempfile
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[2])
from measure import epoch_timer
from cifar10_mlops.core.params import parse_params
from cifar10_mlops.core.quiet_tensorflow import keras
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.core.config import CLASS_NAMES
from cifar10_mlops.training.fit import train_model

settings = json.loads(sys.argv[1])
raw = {"model": {"backbone": "cifar_resnet",
                 "cifar_resnet": {"depth": settings["depth"], "width": settings["width"]}},
       "train": {"epochs": settings["epochs"], "batch_size": settings["batch_size"],
                 "validation_split": 0.0, "distribution": settings["distribution"],
                 "backend": "jax"}}
params = parse_params(raw, Path("benchmark"))
rng = np.random.default_rng(0)
count = settings["images"]
data = LabelledImages(rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
                      rng.integers(0, 10, count).astype(np.int64), np.arange(count), CLASS_NAMES)
timer = epoch_timer(keras)
with tempfile.TemporaryDirectory() as scratch:
    scratch = Path(scratch)
    outcome = train_model(params, data, scratch / "m.keras", scratch / "h.csv", scratch / "s",
                          verbose=0, callbacks=[timer])
steady = min(timer.seconds[1:] or timer.seconds)
print("RESULT " + json.dumps({"epoch_seconds": timer.seconds, "replicas": outcome.replicas,
                              "images_per_s": settings["images"] / steady}))
"""


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for probe in sockets:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in sockets]
    for probe in sockets:
        probe.close()
    return ports


def run_tasks(settings: dict, workers: int) -> dict:
    """Start the processes (one, outside any cluster, when workers == 0); the chief's result."""
    here = str(Path(__file__).resolve().parent)
    ports = free_ports(max(workers, 1))
    processes = []
    for index in range(max(workers, 1)):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="jax")
        task_settings = dict(settings, distribution="multi_worker" if workers else "none")
        if workers:
            env["JAX_COORDINATOR_ADDRESS"] = f"127.0.0.1:{ports[0]}"
            env["JAX_NUM_PROCESSES"] = str(workers)
            env["JAX_PROCESS_ID"] = str(index)
        log = tempfile.TemporaryFile()
        command = [sys.executable, "-c", TASK, json.dumps(task_settings), here]
        processes.append(
            (subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log)
        )
    results = []
    for process, log in processes:
        code = process.wait()
        log.seek(0)
        text = log.read().decode(errors="replace")
        if code != 0:
            raise RuntimeError(f"a task failed ({code}):\n{text[-4000:]}")
        results.append(json.loads(text.split("RESULT ", 1)[1].splitlines()[0]))
    return results[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--width", type=int, default=16)
    args = parser.parse_args()
    settings = {
        "images": args.images,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "depth": args.depth,
        "width": args.width,
    }
    print(f"{os.cpu_count()} CPU cores; {json.dumps(settings)}")
    single = run_tasks(settings, workers=0)
    multi = run_tasks(settings, workers=args.workers)
    for name, result in (("1 process", single), (f"{args.workers} workers", multi)):
        seconds = ", ".join(f"{s:.1f}" for s in result["epoch_seconds"])
        print(
            f"{name:>10}: {result['images_per_s']:7.1f} images/s "
            f"({result['replicas']} replica(s); epochs {seconds} s)"
        )
    print(
        f"ratio {args.workers} workers / 1 process: {multi['images_per_s'] / single['images_per_s']:.2f}"
    )


if __name__ == "__main__":
    main()
