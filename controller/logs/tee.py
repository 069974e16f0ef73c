"""Sends each line to several sinks: the file record first, then the configured sink."""

from __future__ import annotations

from controller.ports import LogLine, LogSink


class TeeSink:
    def __init__(self, sinks: list[LogSink]) -> None:
        self.sinks = sinks

    def emit(self, line: LogLine) -> None:
        for sink in self.sinks:
            sink.emit(line)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
