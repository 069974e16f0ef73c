"""Domain models: the names every other layer uses (run, task, spec, artifact, lineage)."""
