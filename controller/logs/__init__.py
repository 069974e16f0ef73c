"""Log sinks (where task log lines go) and readers (how the API reads them back)."""
