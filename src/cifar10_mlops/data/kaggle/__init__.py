"""The Kaggle layout: train.7z of train/<id>.png + trainLabels.csv, and the Kaggle download."""
