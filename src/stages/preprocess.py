"""DVC stage `preprocess`: read data/raw (the Kaggle train.7z + trainLabels.csv, or the
official cifar-10-batches-bin/*.bin), decode to uint8 arrays, and write the split named by
params.yaml's split section to data/processed/{train,test}.npz."""

from cifar10_mlops.core import config
from cifar10_mlops.core.failures import report_errors
from cifar10_mlops.core.params import load_params
from cifar10_mlops.data.arrays import save_split
from cifar10_mlops.data.raw_layout import load_split_rows


@report_errors
def main() -> None:
    params = load_params(config.PARAMS_FILE)
    # Rows, not copies: the npz files are written from the one array of decoded images.
    train, test = load_split_rows(config.RAW_DIR, params.split)
    save_split(train, test, config.TRAIN_NPZ, config.TEST_NPZ)
    print(f"preprocess: {len(train)} train / {len(test)} test images")


if __name__ == "__main__":
    main()
