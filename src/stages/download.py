"""DVC stage `download`: generate, download or copy the data set into data/raw (the Kaggle
train.7z + trainLabels.csv, or the official cifar-10-batches-bin/), checked before it lands."""

from cifar10_mlops import config
from cifar10_mlops.acquire import acquire
from cifar10_mlops.errors import report_errors
from cifar10_mlops.params import load_params


@report_errors
def main() -> None:
    params = load_params(config.PARAMS_FILE)
    acquire(params.data, config.RAW_DIR)
    print(f"download: {params.data.source} data ready in {config.RAW_DIR}")


if __name__ == "__main__":
    main()
