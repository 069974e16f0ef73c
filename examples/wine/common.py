"""Helpers shared by the example tasks."""

import csv
import json
import os
from pathlib import Path

import numpy as np


def params() -> dict:
    path = os.environ.get("TRACECTL_PARAMS_FILE")
    return json.loads(Path(path).read_text()) if path else {}


def read_csv(path: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    features = np.array([[float(v) for v in row[:-1]] for row in body])
    target = np.array([int(row[-1]) for row in body])
    return header, features, target


def write_csv(path: str, header: list[str], features: np.ndarray, target: np.ndarray) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for row, label in zip(features, target, strict=True):
            writer.writerow([repr(float(v)) for v in row] + [int(label)])
