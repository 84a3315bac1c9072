"""predict's picture cap is sized by the memory decoding takes, not by pixels alone (issue 27,
item 4): a picture just under the old 40 MP cap took about 1 GB, not the ~120 MB the comment
said. Measured for real: the costliest mode (16-bit grayscale) just under the cap."""

from __future__ import annotations

import subprocess
import sys

from cifar10_mlops.data import images

PROBE = """
import resource, sys
import numpy as np
from PIL import Image
from cifar10_mlops.data.images import read_picture
side, path = int(sys.argv[1]), sys.argv[2]
Image.fromarray(np.full((side, side), 40000, np.uint16)).save(path)  # 16-bit grayscale PNG
del np
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
read_picture(path)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_the_pixel_cap_follows_from_the_byte_budget():
    assert images.MAX_PICTURE_PIXELS == images.MAX_DECODE_BYTES // images.PEAK_BYTES_PER_PIXEL


def test_decoding_a_picture_just_under_the_cap_stays_within_the_byte_budget(tmp_path):
    side = int(images.MAX_PICTURE_PIXELS**0.5)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(side), str(tmp_path / "big.png")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    peak = int(result.stdout.strip())
    assert peak <= images.MAX_DECODE_BYTES, f"{peak / 2**20:.0f} MiB for {side}x{side}"
