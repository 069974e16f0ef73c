"""Session-scoped access to the real services that deploy/local/ starts.

A test that needs a service marks itself (``@pytest.mark.kafka``) and takes the fixture of
the same name. The fixture starts the service with its deploy/local script (idempotent, so a
stack already brought up by ``deploy/local/up`` is reused) and returns the service's ``env``
lines as a dict. A service that cannot start fails the test with the script's own message:
nothing is skipped silently.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOY_LOCAL = REPO / "deploy" / "local"
START_TIMEOUT_S = 1800


def _script(name: str) -> Path:
    path = DEPLOY_LOCAL / name
    if not path.exists():
        pytest.fail(f"deploy/local/{name} does not exist: cannot start the real {name} service")
    return path


def service_env(name: str) -> dict[str, str]:
    out = subprocess.run(
        [str(_script(name)), "env"], capture_output=True, text=True, check=False, timeout=60
    )
    if out.returncode != 0:
        pytest.fail(f"deploy/local/{name} env failed:\n{out.stderr}")
    env: dict[str, str] = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key.strip()] = value.strip()
    return env


def start_service(name: str) -> tuple[dict[str, str], bool]:
    """Start NAME unless it is healthy already; return (its env, whether we started it)."""
    script = str(_script(name))
    healthy = subprocess.run([script, "status"], capture_output=True, check=False, timeout=60)
    started_here = healthy.returncode != 0
    if started_here:
        out = subprocess.run(
            [script, "start"], capture_output=True, text=True, check=False, timeout=START_TIMEOUT_S
        )
        if out.returncode != 0:
            pytest.fail(
                f"the real {name} service could not start (deploy/local/{name} start, "
                f"exit {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
            )
    return service_env(name), started_here


def stop_service(name: str) -> None:
    if os.environ.get("TRACECTL_KEEP_STACK"):
        return
    subprocess.run([str(_script(name)), "stop"], capture_output=True, check=False, timeout=120)


def services(request: pytest.FixtureRequest, *names: str) -> dict[str, str]:
    """The ``env`` of the services NAMES (fixture names: ``mlflow_server``), merged into one
    dict; each is started by its own fixture, as if the caller took them as arguments."""
    merged: dict[str, str] = {}
    for name in names:
        merged.update(request.getfixturevalue(name))
    return merged


def service_fixture(name: str):  # type: ignore[no-untyped-def]
    @pytest.fixture(scope="session", name=name.replace("-", "_"))
    def _fixture() -> Iterator[dict[str, str]]:
        env, started_here = start_service(name)
        yield env
        if started_here:
            stop_service(name)

    return _fixture
