"""The exception types for bad user input; every one derives from `UserError`.

The CLI turns a `UserError` into a one-line message and exit code 2; anything
else is a bug and keeps its traceback. `ConfigError` is the one type for a wrong
config key or value, in every section of a run config (model, data, optimizer,
training, decoding) and in `--set`: one mistake, one type.
"""


class UserError(ValueError):
    """Bad input from the user (a file, a workdir, a string to translate); the message says what and how to fix it."""


class ConfigError(UserError):
    """A config key or value is wrong; the message names it and lists what is valid."""


def one_line(message: object) -> str:
    """`message` with every character that would break the line escaped: errors echo user input, which may hold
    newlines, U+2028 or the like, and the CLI promises one line."""
    return "".join(c if len((c + "x").splitlines()) == 1 else repr(c)[1:-1] for c in str(message))
