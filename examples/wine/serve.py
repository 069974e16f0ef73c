"""Serve the registered model over HTTP until stopped (a tracectl ``mode: service`` task).

Serves the model version the task declares (spec ``models: ["models:/<name>/<version>"]``,
given by the controller in $TRACECTL_MODELS, so the lineage has the edge model version ->
this task); without one, the version named in ``registered_model.json`` (written by register).
Downloads it from the MLflow registry, checks its sha256 against the one registered (the
version's ``sha256`` tag), and listens on $PORT (set by the controller): ``GET /health``
names the model version, ``POST /predict`` takes ``{"instances": [[13 features], ...]}`` and
answers ``{"predictions": [class, ...]}``.
SIGTERM (the controller stopping the service at run end) exits 0.
"""

import hashlib
import json
import os
import pickle
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow


def declared_model() -> dict:
    """Name, version, URI and sha256 of the version this task serves."""
    declared = json.loads(os.environ.get("TRACECTL_MODELS") or "[]")
    if not declared:
        with open("registered_model.json") as handle:
            return json.load(handle)
    uri = declared[0]
    name, _, version = uri.removeprefix("models:/").rpartition("/")
    tags = mlflow.MlflowClient().get_model_version(name, version).tags
    return {"name": name, "version": version, "uri": uri, "sha256": tags["sha256"]}


registered = declared_model()
local = Path(mlflow.artifacts.download_artifacts(artifact_uri=registered["uri"], dst_path="served"))
blob = (local / "model.pkl").read_bytes()
if hashlib.sha256(blob).hexdigest() != registered["sha256"]:
    sys.exit(f"{registered['uri']} does not hold the model that was registered")
model = pickle.loads(blob)  # the registry's copy of our own artifact, checked by sha256 above
n_features = int(model.n_features_in_)
health = {
    "status": "ok",
    "model": registered["name"],
    "version": registered["version"],
    "sha256": registered["sha256"],
    "features": n_features,
}


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, health)
        else:
            self._send(404, {"error": f"no route GET {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/predict":
            self._send(404, {"error": f"no route POST {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            rows = json.loads(self.rfile.read(length))["instances"]
            if not rows or any(len(row) != n_features for row in rows):
                raise ValueError(f"instances must be a non-empty list of {n_features} numbers each")
            predictions = [int(c) for c in model.predict([[float(v) for v in r] for r in rows])]
        except (KeyError, TypeError, ValueError) as exc:
            self._send(400, {"error": str(exc)})
            return
        self._send(200, {"predictions": predictions, "version": registered["version"]})

    def log_message(self, fmt: str, *args: object) -> None:  # one line per request, to stdout
        print(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else '?'}", flush=True)


# Inside a pod the service must be reachable from outside it; on a shared host only locally.
host = "0.0.0.0" if os.environ.get("KUBERNETES_SERVICE_HOST") else "127.0.0.1"
server = ThreadingHTTPServer((host, int(os.environ["PORT"])), Handler)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print(f"serving {registered['uri']} on http://{host}:{server.server_port}", flush=True)
server.serve_forever()
print("stopped", flush=True)
