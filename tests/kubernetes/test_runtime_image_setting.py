"""TRACECTL_K8S_IMAGE names the runtime image by digest, as `tracectl image build` prints it."""

from __future__ import annotations

import logging

import pytest

from controller.config import ClusterConfig
from controller.executors.kubernetes import RuntimeImageError, check_runtime_image

PINNED = "127.0.0.1:5001/tracectl/runtime@sha256:" + "ab" * 32
TAG = "127.0.0.1:5001/tracectl/runtime:0.1.0"


def test_no_runtime_image_is_refused_saying_how_to_build_one() -> None:
    assert ClusterConfig().image is None  # no default tag that names nothing
    with pytest.raises(RuntimeImageError, match=r"not set: run `tracectl image build`"):
        check_runtime_image(ClusterConfig(), "")


def test_a_digest_is_taken_and_a_tag_is_refused_under_the_mutable_tag_policy() -> None:
    check_runtime_image(ClusterConfig(image=PINNED), "image.mutable_tag=refuse")
    with pytest.raises(RuntimeImageError, match=r"is a tag: run `tracectl image build`"):
        check_runtime_image(ClusterConfig(image=TAG), "code.dirty=warn, image.mutable_tag=refuse")


def test_a_tag_is_logged_as_a_warning_under_the_default_policy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="tracectl.k8s"):
        check_runtime_image(ClusterConfig(image=TAG), "")
    assert [r.getMessage() for r in caplog.records] == [
        f"TRACECTL_K8S_IMAGE={TAG} is a tag, not a digest: run `tracectl image build` (or "
        "`deploy/local/registry image`) and set it to the name@sha256:<digest> reference it prints"
    ]
