"""Smoke-test the model service: its answers must match the model's own on the test set.

The service URL comes from $SERVICE_URL (the serve task's XCom ``service_url``). Fails (exit
code != 0) on a health answer that names another model version, on any prediction that differs
from the registered model's, or on an accuracy under ``min_accuracy``.
"""

import json
import os
import pickle
import sys
import urllib.request

from common import params, read_csv

p = params()
url = os.environ["SERVICE_URL"].rstrip("/")
with open("registered_model.json") as handle:
    registered = json.load(handle)


def call(path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{url}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


health = call("/health")
if (health.get("model"), health.get("version")) != (registered["name"], registered["version"]):
    sys.exit(
        f"service at {url} serves {health.get('model')}/{health.get('version')}, "
        f"expected {registered['name']}/{registered['version']}"
    )
_, features, target = read_csv("test.csv")
answer = call("/predict", {"instances": features.tolist()})["predictions"]
with open("model.pkl", "rb") as handle:
    expected = [int(c) for c in pickle.load(handle).predict(features)]  # our own artifact
if answer != expected:
    wrong = sum(a != e for a, e in zip(answer, expected, strict=True))
    sys.exit(f"service answered {wrong} of {len(expected)} rows differently from the model")
accuracy = sum(int(a == t) for a, t in zip(answer, target, strict=True)) / len(target)
if accuracy < float(p.get("min_accuracy", 0.0)):
    sys.exit(f"service accuracy {accuracy:.4f} < min_accuracy {p['min_accuracy']}")
result = {
    "service": url,
    "model": health["model"],
    "version": health["version"],
    "rows": len(answer),
    "accuracy": round(accuracy, 6),
}
with open("smoke_test.json", "w") as handle:
    json.dump(result, handle, indent=2, sort_keys=True)
    handle.write("\n")
print(json.dumps(result, sort_keys=True))
