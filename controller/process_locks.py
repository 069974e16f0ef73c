"""Process-wide locks around libraries that keep process-global state."""

from __future__ import annotations

import threading

# Alembic installs its `alembic.context` proxy as a module global for the length of a
# migration, so two migrations in one process at once (the controller's own schema, and
# MLflow's SQLite store creating its tables while the leader prewarms it) swap each other's
# context: seen in CI as KeyError: 'config' and "no such table" in MLflow's store.
ALEMBIC = threading.Lock()
