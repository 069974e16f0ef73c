"""`tracectl demo`: the example pipeline, end to end on the embedded default."""
