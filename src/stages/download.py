"""DVC stage `download`: generate, download or copy the data set into data/raw (the Kaggle
train.7z + trainLabels.csv, or the official cifar-10-batches-bin/), checked before it lands."""

from cifar10_mlops.core import config
from cifar10_mlops.core.failures import report_errors
from cifar10_mlops.core.params import load_params
from cifar10_mlops.data.acquire import acquire


@report_errors
def main() -> None:
    params = load_params(config.PARAMS_FILE)
    acquire(params.data, config.RAW_DIR)
    print(f"download: {params.data.source} data ready in {config.RAW_DIR}")


if __name__ == "__main__":
    main()
