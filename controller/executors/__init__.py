"""Executors: where a task attempt runs (local process, Kubernetes, external HTTP)."""
