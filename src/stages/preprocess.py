"""DVC stage `preprocess`: extract train.7z in memory, decode the PNGs to uint8 arrays, and
write the stratified, seeded split to data/processed/{train,test}.npz."""

from cifar10_mlops import config
from cifar10_mlops.dataset import load_kaggle_layout, save_npz, stratified_split
from cifar10_mlops.errors import report_errors
from cifar10_mlops.params import load_params


@report_errors
def main() -> None:
    params = load_params(config.PARAMS_FILE)
    data = load_kaggle_layout(config.RAW_DIR / config.TRAIN_ARCHIVE, config.RAW_DIR / config.LABELS_CSV)
    train, test = stratified_split(data, params.split.test_size, params.split.seed)
    save_npz(train, config.TRAIN_NPZ)
    save_npz(test, config.TEST_NPZ)
    print(f"preprocess: {len(train.labels)} train / {len(test.labels)} test images")


if __name__ == "__main__":
    main()
