"""Register the trained model as a version in the MLflow model registry.

Refuses a model whose test accuracy (metrics.json from evaluate) is under ``min_accuracy``.
The model file goes into this task's own MLflow run and the version's ``run_id`` is that run,
so the controller records the lineage edge task(register) -> model:<name>/<version>.
Writes ``registered_model.json`` (name, version, models:/ URI, sha256) for the serving task.
"""

import hashlib
import json
import os
import sys

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from common import params

p = params()
name = str(p.get("model_name", "wine-classifier"))
min_accuracy = float(p.get("min_accuracy", 0.0))
with open("metrics.json") as handle:
    accuracy = float(json.load(handle)["test_accuracy"])
if accuracy < min_accuracy:
    sys.exit(f"not registering {name}: test accuracy {accuracy} < min_accuracy {min_accuracy}")
with open("model.pkl", "rb") as handle:
    sha256 = hashlib.sha256(handle.read()).hexdigest()

client = MlflowClient()
# MLFLOW_RUN_ID / MLFLOW_TRACKING_URI are set by the controller: this resumes its run.
with mlflow.start_run() as run:
    mlflow.log_artifact("model.pkl", artifact_path="model")
    mlflow.log_metric("test_accuracy", accuracy)
    run_id = run.info.run_id
    source = f"{run.info.artifact_uri}/model"
try:
    client.create_registered_model(name, description="wine classifier (examples/wine)")
except MlflowException as exc:  # registered by an earlier run: add a version to it
    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
        raise
tags = {
    "sha256": sha256,
    "test_accuracy": str(accuracy),
    "trained_by_mlflow_run": str(p.get("train_mlflow_run_id") or ""),
    "tracectl_task_id": os.environ.get("TRACECTL_TASK_ID", ""),
}
version = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
registered = {
    "name": name,
    "version": str(version.version),
    "uri": f"models:/{name}/{version.version}",
    "sha256": sha256,
    "source": source,
    "test_accuracy": accuracy,
}
with open("registered_model.json", "w") as handle:
    json.dump(registered, handle, indent=2, sort_keys=True)
    handle.write("\n")
print(json.dumps(registered, sort_keys=True))
