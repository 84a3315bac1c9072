"""What several tests share: real archives, a Kaggle stand-in, a pipeline repository copy."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
