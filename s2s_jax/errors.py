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
