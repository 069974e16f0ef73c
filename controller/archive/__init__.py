"""Artifact stores: content-addressed storage of task outputs and archived logs."""
