"""The one exception type for bad user input outside model configs.

The CLI turns `UserError` (and `ConfigError`) into a one-line message and exit
code 2; anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input from the user (a file, a workdir, a string to translate); the message says what and how to fix it."""
