"""The ``adamrag-sens`` command line (Typer): each command parses flags, calls one library function
and prints what it returns. One module per command group (``sweep``, ``report``, ``listing``,
``bench``), the flags they share declared once (``options``), what the terminal shows in
``terminal``, and the one place where errors become exit codes (``edge``).

Mistakes a user can fix arrive as :class:`~sensitivity.errors.UserError` and leave as one line on
stderr with exit code 2. Ctrl-C stores the running trial as failed and exits 130; running the same
command again resumes.
"""

from sensitivity.cli.app import app, main
from sensitivity.cli.terminal import console

__all__ = ["app", "console", "main"]
