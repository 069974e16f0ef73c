"""`tracectl image build --lock`: a lock file it cannot export is refused before any build."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from controller.cli.main import app


def build(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["image", "build", "--cache", "/nonexistent", *args])
    return result.exit_code, " ".join(result.output.split())


def test_a_lock_without_its_pyproject_is_refused_saying_what_to_give(tmp_path: Path) -> None:
    lock = tmp_path / "uv.lock"
    lock.write_text("version = 1\n")
    code, output = build("--lock", str(lock))
    assert code == 2
    assert f"--lock {lock}: give a uv.lock file with its pyproject.toml beside it" in output
    assert not Path("/nonexistent").exists()


def test_a_lock_and_a_requirements_file_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "uv.lock").write_text("version = 1\n")
    (tmp_path / "requirements.txt").write_text("humanize==4.12.3\n")
    code, output = build(
        "--lock", str(tmp_path / "uv.lock"), "--requirements", str(tmp_path / "requirements.txt")
    )
    assert (code, output) == (2, "error: give --lock or --requirements, not both")
