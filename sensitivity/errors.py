"""The one exception type for mistakes a user can fix (bad flags, missing data, bad storage)."""


class UserError(Exception):
    """A problem the user caused and can fix.

    The CLI prints ``str(error)`` as one line, naming the problem and the fix, and exits with
    code 2. Library callers may catch it like any exception. Programming errors are never
    wrapped in it.
    """


def value_error(flag: str, value: object, rule: str, example: str) -> UserError:
    """The one line refusing a flag's value: it names the flag, the value, the rule the value
    breaks, and a fitting value to give instead.

    ``value_error("--epochs", 0, "must be >= 1", "10")`` -> ``--epochs 0 must be >= 1; use e.g.
    --epochs 10``. For one value of a list, ``value`` says so (``"value -0.001"``).
    """
    return UserError(f"{flag} {value} {rule}; use e.g. {flag} {example}")
