"""The CLI starts fast: printing a log imports no server, store, tracking or rich code, and
the `tracectl` command prints one without typer, click or pydantic either (the time it takes
is measured by bench/logs_cli.py, not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

from controller.cli import follow
from controller.domain.records import TERMINAL

# pydantic is not among them: typer 0.29 validates every option value with it.
HEAVY = {"fastapi", "sqlalchemy", "mlflow", "dvc", "httpx", "rich", "yaml", "git", "psutil"}
TYPER = {"typer", "click", "pydantic"}

# A stand-in controller in the probe's own process: it answers any GET with two log lines.
SERVER = """
import http.server, threading
class Logs(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"out first\\nerr second\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Logs)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}"
"""


def loaded_after(code: str, heavy: set[str] = HEAVY) -> tuple[set[str], str]:
    """The HEAVY packages a fresh interpreter has loaded after CODE, and what CODE printed."""
    report = "import json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    return set(json.loads(out[-1])) & heavy, "\n".join(out[:-1])


def test_importing_the_cli_loads_none_of_the_heavy_packages() -> None:
    assert loaded_after("import controller.cli.main") == (set(), "")


def test_printing_a_log_tail_loads_none_of_them_either() -> None:
    command = "['logs', 'task_x', '--tail', '2', '--stream', 'out', '--url', url]"
    code = f"{SERVER}\nfrom controller.cli.main import app\napp({command}, standalone_mode=False)"
    assert loaded_after(code) == (set(), "out first\nerr second")


def test_the_tracectl_command_prints_a_log_tail_without_typer_click_or_pydantic() -> None:
    argv = "['tracectl', 'logs', 'task_x', '--tail', '2', '--stream', 'out', '--url', url]"
    code = (
        f"{SERVER}\nimport sys\nsys.argv = {argv}\nfrom controller.cli.entry import main\n"
        "try:\n    main()\nexcept SystemExit as done:\n    assert done.code == 0, done.code"
    )
    assert loaded_after(code, HEAVY | TYPER) == (set(), "out first\nerr second")


def test_the_cli_knows_the_same_final_task_states_as_the_store() -> None:
    assert {str(status) for status in TERMINAL} == follow.TERMINAL
