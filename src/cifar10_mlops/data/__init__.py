"""Data: sources (synthetic, Kaggle, the official archive, local files) into data/raw, the two
raw layouts (kaggle/, binary/), the stratified split and the uint8 arrays."""
