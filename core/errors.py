"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class UserError(Exception):
    """Bad input or environment a user can fix; never shown with a traceback."""

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
