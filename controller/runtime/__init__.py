"""The task runtime contract: what happens around a task's command, wherever it runs.

The same steps run in a local runner process and in a Kubernetes init/main container:
check out the code at the resolved commit, fetch DVC data, place input artifacts, run the
command, then hash and store the declared outputs.
"""
