"""Evaluate the trained model on the held-out test set; write metrics.json and log them."""

import json
import pickle

import mlflow
from sklearn.metrics import accuracy_score, f1_score

from common import read_csv

_, features, target = read_csv("test.csv")
with open("model.pkl", "rb") as handle:
    model = pickle.load(handle)  # our own artifact, verified by sha256 before placement
predicted = model.predict(features)
metrics = {
    "test_accuracy": round(float(accuracy_score(target, predicted)), 6),
    "test_f1_macro": round(float(f1_score(target, predicted, average="macro")), 6),
    "test_rows": int(len(target)),
}
with open("metrics.json", "w") as handle:
    json.dump(metrics, handle, indent=2, sort_keys=True)
    handle.write("\n")
with mlflow.start_run():
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
print(json.dumps(metrics, sort_keys=True))
