"""The one exception type for mistakes a user can fix (bad flags, missing data, bad storage)."""


class UserError(Exception):
    """A problem the user caused and can fix.

    The CLI prints ``str(error)`` as one line, naming the problem and the fix, and exits with
    code 2. Library callers may catch it like any exception. Programming errors are never
    wrapped in it.
    """
