"""`python -m controller.cli ...`: the `tracectl` command."""

from controller.cli.entry import main

main()
