"""The runtime image `tracectl image build` pushes holds what deploy/k8s/Dockerfile installs."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement

from controller.images.build import RUNTIME_EXTRAS, SITE, BuildRequest, BuiltImage, build

pytestmark = [pytest.mark.registry, pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
CACHE = Path.home() / ".cache" / "tracectl" / "images"


@pytest.fixture(scope="module")
def runtime(registry: dict[str, str]) -> BuiltImage:
    request = BuildRequest(registry=registry["TRACECTL_REGISTRY"], source=REPO, cache=CACHE)
    return build(request)


def layer_names(image: BuiltImage, index: int) -> set[str]:
    blob = CACHE / "oci" / "blobs" / "sha256" / image.layers[index].digest.removeprefix("sha256:")
    with tarfile.open(blob) as tar:
        return set(tar.getnames())


# The image's interpreter: Debian bookworm's Python 3.11 on Linux (the Dockerfile's is 3.12, so
# a distribution pinned per Python version, e.g. networkx, differs by that pin only).
IMAGE_MARKERS = {"python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux"}


def dockerfile_requirements(stage: str = "runtime") -> set[str]:
    """name==version of the export the Dockerfile's STAGE installs, for the image's
    interpreter."""
    dockerfile = (REPO / "deploy" / "k8s" / "Dockerfile").read_text()
    export = dockerfile[: dockerfile.index(f"-o /dist/{stage}-requirements.txt")]
    extras = re.findall(r"--extra (\w+)", export[export.rindex("uv export") :])
    argv = ["uv", "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project"]
    out = subprocess.run(
        [*argv, *(a for e in extras for a in ("--extra", e))],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wanted = set()
    for line in out.splitlines():
        if not line or line.startswith(("#", " ")):
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(IMAGE_MARKERS):
            wanted.add(f"{normal(req.name)}=={str(req.specifier).removeprefix('==')}")
    return wanted


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def distributions(names: set[str]) -> set[str]:
    return {
        f"{normal(m[1])}=={m[2]}"
        for name in names
        if (m := re.fullmatch(rf"{SITE}/([^/]+?)-([^-/]+)\.dist-info", name))
    }


def test_the_runtime_layer_has_every_locked_distribution_the_dockerfile_installs(
    runtime: BuiltImage,
) -> None:
    installed = distributions(layer_names(runtime, 1))
    assert installed == dockerfile_requirements() | {f"tracectl=={tracectl_version()}"}
    assert set(RUNTIME_EXTRAS) == {"kubernetes", "kafka", "elasticsearch", "s3"}


def tracectl_version() -> str:
    text = (REPO / "pyproject.toml").read_text()
    return re.search(r'^version = "([^"]+)"', text, re.M)[1]  # type: ignore[index]


def test_the_runtime_layer_has_every_module_of_the_controller_package(runtime: BuiltImage) -> None:
    names = layer_names(runtime, 1)
    shipped = {n.removeprefix(f"{SITE}/") for n in names if n.startswith(f"{SITE}/controller/")}
    source = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "controller").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert {s for s in source if s.endswith(".py")} <= shipped
    assert {"usr/local/bin/tracectl", "usr/local/bin/python"} <= names
    assert {"var/lib/tracectl", "workspace", "etc/passwd"} <= names


def test_the_pushed_image_is_served_by_its_digest_with_base_and_runtime_layers(
    runtime: BuiltImage, registry: dict[str, str]
) -> None:
    repo, _, digest = runtime.reference.partition("@")
    path = repo.removeprefix(registry["TRACECTL_REGISTRY"] + "/")
    manifest = httpx.get(
        f"{registry['TRACECTL_REGISTRY_URL']}/v2/{path}/manifests/{digest}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    ).json()
    assert [layer["digest"] for layer in manifest["layers"]] == [
        layer.digest for layer in runtime.layers
    ]


def test_the_controller_image_is_the_runtime_image_and_a_layer_of_the_server_extras(
    runtime: BuiltImage, registry: dict[str, str]
) -> None:
    request = BuildRequest(
        registry=registry["TRACECTL_REGISTRY"],
        repository="tracectl/controller",
        target="controller",
        source=REPO,
        cache=CACHE,
    )
    controller = build(request)
    assert controller.layers[:2] == runtime.layers  # shared: pulled and cached once
    assert len(controller.layers) == 3  # base, runtime, server
    added = distributions(layer_names(controller, 2))
    assert added, "the server layer installs nothing"
    assert not added & distributions(layer_names(runtime, 1))
    wanted = dockerfile_requirements("controller") | {f"tracectl=={tracectl_version()}"}
    assert distributions(layer_names(runtime, 1)) | added == wanted
    raw = subprocess.run(
        ["skopeo", "inspect", "--config", "--tls-verify=false", f"docker://{controller.reference}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config = json.loads(raw)["config"]
    assert config["Entrypoint"] == ["/usr/local/bin/tracectl"]
    assert config["Cmd"][0] == "server" and config["User"] == "10001:10001"


def test_deploy_local_builds_the_controller_image_and_refuses_an_unknown_target() -> None:
    script = str(REPO / "deploy" / "local" / "registry")
    out = subprocess.run([script, "image", "controller"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(
        r"TRACECTL_CONTROLLER_IMAGE=\S+/tracectl/controller@sha256:[0-9a-f]{64}\n", out.stdout
    )
    wrong = subprocess.run([script, "image", "runtme"], capture_output=True, text=True)
    assert wrong.returncode != 0 and "give runtime or controller" in wrong.stderr
