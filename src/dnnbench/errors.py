"""The one error type that reaches the user as a single line, without a traceback."""


class UserError(Exception):
    """A problem with what the user asked for: the message names the problem and the fix.

    ``status`` is the process exit status the command line uses (2 for bad names and options).
    """

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status
