"""Writes scikit-learn's bundled wine data set as CSV (the demo's DVC-tracked input)."""

import csv
import sys
from pathlib import Path

from sklearn.datasets import load_wine


def main(dest: str) -> None:
    data = load_wine()
    path = Path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*data.feature_names, "target"])
        for row, target in zip(data.data, data.target, strict=True):
            writer.writerow([repr(float(v)) for v in row] + [int(target)])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/wine.csv")
