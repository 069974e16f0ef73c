"""Train a random forest; log params and training metrics into the controller's MLflow run."""

import pickle
from pathlib import Path

import mlflow
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score

from common import params, read_csv

p = params()
_, features, target = read_csv("train.csv")
model = RandomForestClassifier(
    n_estimators=int(p.get("n_estimators", 50)),
    max_depth=p.get("max_depth"),
    random_state=int(p.get("seed", 42)),
    n_jobs=1,
)
model.fit(features, target)
train_accuracy = accuracy_score(target, model.predict(features))
Path("model").mkdir(exist_ok=True)
with open("model/model.pkl", "wb") as handle:
    pickle.dump(model, handle, protocol=5)

# MLFLOW_RUN_ID / MLFLOW_TRACKING_URI are set by the controller: this resumes its run.
with mlflow.start_run():
    mlflow.log_metric("train_accuracy", train_accuracy)
    mlflow.log_artifact("model/model.pkl", artifact_path="model")
print(f"trained on {len(target)} rows: train accuracy {train_accuracy:.4f}")
