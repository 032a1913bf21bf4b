"""`python -m mlops.cli` is the `mlops` command."""

from mlops.cli.main import main

main()
