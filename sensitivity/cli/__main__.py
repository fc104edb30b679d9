"""``python -m sensitivity.cli``: the command line, as the ``adamrag-sens`` script runs it."""

from sensitivity.cli.app import main

main()
