"""Admission: deciding when a queued task may start, and what resources it holds."""
