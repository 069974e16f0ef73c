"""Lineage: what produced what. Records are derived from the append-only event log."""
