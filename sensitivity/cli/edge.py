"""Where the command line meets its process: every mistake a user can fix leaves as one line on
stderr and exit code 2 (a flag Typer cannot parse included), Ctrl-C as a resume hint and exit 130, a
storage that stopped answering as one line and exit 1; and whether the process may end without the
interpreter's teardown."""

from __future__ import annotations

import functools
from typing import Any, Callable

import typer

from sensitivity.cli.options import Group, flag_example
from sensitivity.cli.terminal import err_console, terminal_text
from sensitivity.errors import UserError

_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")  # click's, as Typer vendors it


class OneLineUsageErrors(Group):
    """A flag Typer cannot parse (``--epochs abc``, an unknown flag) is one line on stderr and exit 2,
    like every other mistake, instead of a usage box."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        self._args = list(args)  # the command line as given, to quote a value the parser refuses
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _UsageError as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # a bare command prints its help
                raise
            failed = err.ctx if err.ctx is not None else ctx
            where = failed.command_path
            lists = "the commands" if hasattr(failed.command, "list_commands") else "the flags"  # a group
            message = " ".join(err.format_message().split())
            param = getattr(err, "param", None)
            given = self._given_value(param)
            if given is not None and repr(given) not in message:
                message += f" (got {given!r})"
            example = flag_example(param)
            if example:
                message += f"; use e.g. {example}"
            err_console.print(f"[bold red]error:[/] {terminal_text(message)} (`{where} --help` lists {lists})",
                              highlight=False, soft_wrap=True, markup=True)
            raise typer.Exit(2) from None

    def _given_value(self, param: Any) -> str | None:
        """The value given on the command line for the option ``param`` (its last occurrence), if any."""
        opts = getattr(param, "opts", None) or []
        value = None
        args = getattr(self, "_args", [])
        for i, arg in enumerate(args):
            name, eq, inline = arg.partition("=")
            if name in opts:
                value = inline if eq else (args[i + 1] if i + 1 < len(args) else None)
        return value


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn UserError into one red line and exit 2; Ctrl-C into a resume hint and exit 130; a local
    SQLite fault met while running (a full disk, a file made read-only) into one line naming it and
    exit 2; a lost storage connection into one line and exit 1. Programming errors are not caught."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            err_console.print(f"[bold red]error:[/] {terminal_text(err)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: finished trials are stored; run the same command again to resume")
            raise typer.Exit(130) from None
        except Exception as err:
            from sensitivity.storage.local_faults import local_fault_message
            from sensitivity.study.worker_process import lost_connection_message

            local = local_fault_message(err, kwargs.get("storage"))  # a full disk is no lost server
            message = local or lost_connection_message(err)
            if message is None:
                raise
            err_console.print(f"[bold red]error:[/] {terminal_text(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2 if local else 1) from None

    return wrapper


_without_teardown = False


def end_without_teardown() -> None:
    """Called by the commands that end with nothing left to write (``sweep``, ``worker``): the
    process then leaves without the interpreter's teardown (see
    :func:`sensitivity.study.worker_process.end_process`); other commands (``report`` writes files)
    exit normally."""
    global _without_teardown
    _without_teardown = True


def teardown_skipped() -> bool:
    """Whether the command that ran asked to end without the interpreter's teardown."""
    return _without_teardown
