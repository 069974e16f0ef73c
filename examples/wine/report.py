"""Print the evaluation for people, with humanize: a package tracectl's own venv lacks.

It imports only because the task runs in this example's environment (uv.lock), which
proves the separation from the controller (docs/environments.md).
"""

import json

import humanize

with open("metrics.json") as handle:
    metrics = json.load(handle)
accuracy = humanize.intcomma(round(metrics["test_accuracy"] * 100, 1))
print(
    f"the classifier labels {accuracy}% of {humanize.apnumber(metrics['test_rows'])} "
    f"held-out wines correctly (humanize {humanize.__version__})"
)
