"""Repository locations published in lineage are URIs without credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.lineage.uris import repo_uri


def test_a_local_repository_becomes_a_file_uri(tmp_path: Path) -> None:
    assert repo_uri(str(tmp_path)) == tmp_path.resolve().as_uri()
    assert repo_uri(str(tmp_path)).startswith("file:///")


def test_a_relative_path_becomes_an_absolute_file_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path)
    assert repo_uri("repo") == (tmp_path / "repo").resolve().as_uri()


def test_credentials_are_stripped_from_remote_urls() -> None:
    assert (
        repo_uri("https://user:pw@git.example.com/org/x.git") == "https://git.example.com/org/x.git"
    )
    assert (
        repo_uri("https://oauth2:glpat-SECRET@gitlab.example.com:8443/a/b")
        == "https://gitlab.example.com:8443/a/b"
    )
    assert repo_uri("ssh://git@host.example/org/x.git") == "ssh://host.example/org/x.git"


def test_urls_without_credentials_are_kept_as_they_are() -> None:
    assert repo_uri("https://github.com/org/x.git") == "https://github.com/org/x.git"
    assert repo_uri("file:///srv/git/x") == "file:///srv/git/x"


def test_scp_like_ssh_becomes_an_ssh_uri_without_the_user() -> None:
    assert repo_uri("git@github.com:org/x.git") == "ssh://github.com/org/x.git"
