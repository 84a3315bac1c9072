"""Shared by the benchmarks: run a command in a fresh process, measure wall time and peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]

# What the seed notebooks did: extract every PNG to disk, read them one by one with PIL into a
# Python list, then make a float32 copy scaled to 0..1.
NAIVE_EXTRACT_PREPROCESS = r"""
import sys, numpy as np, py7zr
from pathlib import Path
from PIL import Image
raw, out = Path(sys.argv[1]), Path(sys.argv[2])
with py7zr.SevenZipFile(raw / "train.7z") as archive:
    archive.extractall(out)
images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((out / "train").iterdir())]
x = np.array(images, dtype=np.float32) / 255.0
print(x.shape)
"""


def measured(args: list[str], **kwargs) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one child process; raises if it fails."""
    with tempfile.TemporaryFile() as output:  # a file, not a pipe: a chatty child never blocks
        start = time.perf_counter()
        process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT, **kwargs)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would mix in earlier children).
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            output.seek(0)
            raise RuntimeError(f"{' '.join(args)} failed:\n{output.read().decode()[-4000:]}")
    return seconds, usage.ru_maxrss / 1024


def python_code(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def epoch_timer(keras):
    """A Keras callback that keeps each epoch's wall seconds, and the CPU seconds of the whole
    process (every thread) in it (keras passed in: it is imported only in the child processes,
    with whatever backend they run)."""

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.cpu_seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None) -> None:
            self._start = time.perf_counter()
            self._cpu_start = time.process_time()

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.seconds.append(time.perf_counter() - self._start)
            self.cpu_seconds.append(time.process_time() - self._cpu_start)

    return EpochTimer()
