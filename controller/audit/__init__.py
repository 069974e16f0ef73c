"""Tamper evidence: the audit log and the lineage event log are hash chains."""
