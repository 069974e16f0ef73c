.PHONY: setup demo test lint stack-up stack-down stack-status

setup:
	scripts/setup

demo:
	scripts/demo

test:
	scripts/test

lint: setup
	.venv/bin/ruff check controller tests $$(ls -d bench dags 2>/dev/null)
	.venv/bin/ruff format --check controller tests examples $$(ls -d bench dags 2>/dev/null)
	.venv/bin/mypy

stack-up:
	deploy/local/up

stack-down:
	deploy/local/down

stack-status:
	deploy/local/status
