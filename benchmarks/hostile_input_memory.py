"""Peak memory of the real stages and `cifar10-mlops predict` on the hostile inputs of issue 15.

Usage:  python benchmarks/hostile_input_memory.py [--before-src DIR] [--cases 1,2,7a,7b,7c]

The hostile files are built at their real sizes in a temporary directory, then each case runs
in a fresh process, exactly as DVC or a user runs it, in a throwaway project:
  1   download stage, data.path = a 5 MB cifar-10-binary.tar.gz whose GNU long-name header
      declares a 1 GiB name;
  2   download stage, params.yaml holding a 9-level YAML alias bomb ("billion laughs") under
      a params key;
  7a  download stage, a cifar-10-binary.tar.gz followed by 2 GiB of zeros inside the gzip;
  7b  preprocess stage, data/raw/train.7z holding a 1-bit PNG that declares 13000x13000;
  7c  predict, a 12000x12000 RGB PNG (and a tiny real Keras model).
Each prints the exit code, peak RSS (wait4's ru_maxrss of that one process), wall seconds and
the size of what it wrote to stderr. --before-src DIR runs the same cases with the package and
stage scripts of another tree too (its src/ first on PYTHONPATH), e.g. the commit before the fix:
    git archive 5cb289e src | tar -x -C /tmp/before
    python benchmarks/hostile_input_memory.py --before-src /tmp/before
A process is killed when its RSS passes GUARD_MIB or it runs past TIMEOUT_S (what the issue
calls a hang), and the table says so.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GUARD_MIB = 8 * 1024
TIMEOUT_S = 120
BATCHES_DIR = "cifar-10-batches-bin"
RECORD_BYTES = 3073


def write_gzip_stream(path: Path, pieces) -> None:
    """gzip (level 1: fast) of the byte strings `pieces` yields, never all in memory."""
    with gzip.open(path, "wb", compresslevel=1) as out:
        for piece in pieces:
            out.write(piece)


def repeated(byte: bytes, total: int, chunk: int = 16 << 20):
    block = byte * chunk
    while total > 0:
        yield block[: min(chunk, total)]
        total -= chunk


def one_batch_tar_member() -> bytes:
    """A whole tar holding cifar-10-batches-bin/data_batch_1.bin of 10 records."""
    import io

    payload = bytes(10 * RECORD_BYTES)
    info = tarfile.TarInfo(f"{BATCHES_DIR}/data_batch_1.bin")
    info.size = len(payload)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def long_name_tar_gz(path: Path, name_bytes: int) -> None:
    """A GNU long-name block declaring name_bytes, then one ordinary member."""
    header = tarfile.TarInfo("././@LongLink")
    header.type = tarfile.GNUTYPE_LONGNAME
    header.size = name_bytes
    padding = (-name_bytes) % 512

    def pieces():
        yield header.tobuf(tarfile.GNU_FORMAT)
        yield from repeated(b"n", name_bytes - 1)
        yield b"\0" * (1 + padding)
        yield one_batch_tar_member()

    write_gzip_stream(path, pieces())


def trailing_zeros_tar_gz(path: Path, zeros: int) -> None:
    write_gzip_stream(path, [one_batch_tar_member(), *repeated(b"\0", zeros)])


def billion_laughs(levels: int = 9) -> str:
    lines = ["  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"  l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


def project(root: Path, params: str) -> Path:
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(params, encoding="utf-8")
    (root / "data").mkdir()
    return root


def local_params(path: Path) -> str:
    return f"data:\n  source: local\n  path: {path}\n"


def run(args: list[str], cwd: Path, env: dict[str, str], stderr_file: Path) -> dict:
    """Exit code, peak RSS (MiB), seconds and stderr bytes of one child, guarded."""
    with open(stderr_file, "wb") as err, open(os.devnull, "wb") as out:
        start = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=err)
        killed = ""
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > TIMEOUT_S:
                killed = f"killed after {TIMEOUT_S} s"
            elif _rss_mib(process.pid) > GUARD_MIB:
                killed = f"killed above {GUARD_MIB} MiB"
            if killed:
                process.send_signal(signal.SIGKILL)
                _, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - start
    return {
        "exit": os.waitstatus_to_exitcode(status),
        "peak_mib": usage.ru_maxrss / 1024,
        "seconds": seconds,
        "stderr_bytes": stderr_file.stat().st_size,
        "killed": killed,
        "first_line": _first_line(stderr_file),
    }


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _first_line(path: Path) -> str:
    with open(path, "rb") as file:
        lines = [line for line in file.read(4000).decode(errors="replace").splitlines() if line]
    errors = [line for line in lines if line.startswith("error:")]
    line = (errors or lines or [""])[0]
    return line if len(line) < 160 else line[:157] + "..."


# --- the cases: (name, build(workdir) -> (args, cwd, env_extra)) ----------------------------


def stage_args(src: Path, stage: str) -> list[str]:
    return [sys.executable, str(src / "src" / "stages" / f"{stage}.py")]


def case_1(work: Path, src: Path):
    archive = work / "cifar-10-binary.tar.gz"
    if not archive.exists():
        long_name_tar_gz(archive, 1 << 30)
    root = project(work / f"p1-{src.name}", local_params(archive))
    return stage_args(src, "download"), root


def case_2(work: Path, src: Path):
    params = f"data:\n  source: synthetic\n  synthetic:\n    count: 20\nx:\n{billion_laughs()}"
    params += "train:\n  epochs: *l8\n"
    root = project(work / f"p2-{src.name}", params)
    return stage_args(src, "download"), root


def case_7a(work: Path, src: Path):
    archive = work / "trailing" / "cifar-10-binary.tar.gz"
    if not archive.exists():
        archive.parent.mkdir()
        trailing_zeros_tar_gz(archive, 2 << 30)
    root = project(work / f"p7a-{src.name}", local_params(archive))
    return stage_args(src, "download"), root


def case_7b(work: Path, src: Path):
    import io

    import py7zr
    from PIL import Image

    root = project(work / f"p7b-{src.name}", "data:\n  source: local\n")
    raw = root / "data" / "raw"
    raw.mkdir()
    huge = io.BytesIO()
    Image.new("1", (13000, 13000)).save(huge, format="PNG")
    small = io.BytesIO()
    Image.new("RGB", (32, 32)).save(small, format="PNG")
    with py7zr.SevenZipFile(raw / "train.7z", "w") as seven:
        seven.writestr(huge.getvalue(), "train/1.png")
        for image_id in range(2, 21):
            seven.writestr(small.getvalue(), f"train/{image_id}.png")
    classes = ["airplane", "cat"]
    rows = "".join(f"{i},{classes[i % 2]}\n" for i in range(1, 21))
    (raw / "trainLabels.csv").write_text("id,label\n" + rows)
    return stage_args(src, "preprocess"), root


def case_7c(work: Path, src: Path):
    from PIL import Image

    picture = work / "huge.png"
    if not picture.exists():
        Image.new("RGB", (12000, 12000)).save(picture, compress_level=1)
    model = work / "model.keras"
    if not model.exists():
        _tiny_model(model)
    root = project(work / f"p7c-{src.name}", "evaluate:\n  tta: false\n")  # predict reads it
    args = [sys.executable, "-m", "cifar10_mlops.cli.main", "predict", "--model", str(model)]
    return [*args, str(picture), "--quiet"], root


def _tiny_model(path: Path) -> None:
    code = (
        "import sys, keras\n"
        "m = keras.Sequential([keras.Input((32, 32, 3), dtype='uint8'),"
        " keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),"
        " keras.layers.Dense(10, activation='softmax')])\n"
        "m.save(sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True)


CASES: dict[str, Callable] = {
    "1": case_1,
    "2": case_2,
    "7a": case_7a,
    "7b": case_7b,
    "7c": case_7c,
}


def built(case: str, work: Path, tree: Path) -> tuple[list[str], Path]:
    """The case's files, built in a child process: a child's ru_maxrss counts the memory its
    parent had when it forked it, so the builders' hundreds of MB must not be ours."""
    answer = subprocess.run(
        [sys.executable, __file__, "--build", case, "--work", str(work), "--tree", str(tree)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    args, root = json.loads(answer.splitlines()[-1])
    return args, Path(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-src", type=Path, help="a tree whose src/ is the old code")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--build", help=argparse.SUPPRESS)  # internal: build one case
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.build:
        args, root = CASES[options.build](options.work, options.tree)
        print(json.dumps([args, str(root)]))
        return
    trees = [("after", REPO)]
    if options.before_src:
        trees.insert(0, ("before", options.before_src.resolve()))
    print(
        f"{'case':5} {'code':7} {'exit':>5} {'peak MiB':>9} {'seconds':>8} {'stderr B':>11}  first line"
    )
    with tempfile.TemporaryDirectory(prefix="hostile-") as scratch:
        work = Path(scratch)
        for case in options.cases.split(","):
            for label, tree in trees:
                args, root = built(case, work, tree)
                env = {**os.environ, "CIFAR10_MLOPS_ROOT": str(root)}
                env["PYTHONPATH"] = str(tree / "src")  # this tree's package first
                env["TF_CPP_MIN_LOG_LEVEL"] = "3"
                result = run(args, root, env, work / f"stderr-{case}-{label}")
                note = f" [{result['killed']}]" if result["killed"] else ""
                print(
                    f"{case:5} {label:7} {result['exit']:>5} {result['peak_mib']:>9.0f} "
                    f"{result['seconds']:>8.1f} {result['stderr_bytes']:>11}  "
                    f"{result['first_line']}{note}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
