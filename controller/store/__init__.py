"""The store: every piece of controller state, in SQLAlchemy (SQLite embedded, PostgreSQL)."""
