"""The one error tree of syncer.

Every error a user can meet derives from :class:`SyncerError` and carries a message that names
the cause and the fix. The families say what the caller should do:

- :class:`ConfigError`: the input is wrong; nothing ran (exit 2).
- :class:`FatalError`: the run cannot go on (bad credentials, a rejected request, a host that
  stays unreachable, a malformed response); the run fails (exit 1).
- :class:`RetriableError`: transient (429, 5xx, timeouts, resets); the HTTP layer backs off and
  retries, and turns it into a :class:`FatalError` once the attempts are used up.

Records that cannot be stored are not errors: they are rejected with a reason and the run goes on.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class SyncerError(Exception):
    """syncer failed."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(SyncerError):
    """The configuration is invalid."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            text = f"configuration error: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            text = f"configuration has {len(self.problems)} problems:\n{lines}"
        super().__init__(text)


class FatalError(SyncerError):
    """The run cannot go on."""


class BusyError(FatalError):
    """Another run is doing this work right now against the same database.

    Not a failure of this run: the daemon reports the tick as skipped (busy); a one-off command
    exits 1 saying what to wait for.
    """


class AuthError(FatalError):
    """The API rejected the credentials."""


class UnreachableError(FatalError):
    """The host could not be reached."""


class RequestRejectedError(FatalError):
    """The API rejected the request."""


class MalformedResponseError(FatalError):
    """The API sent a response that is not what its contract promises."""


class DatabaseError(FatalError):
    """The database failed."""


class RetriableError(SyncerError):
    """A transient failure; the request may succeed when retried."""

    def __init__(self, message: str | None = None, *, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.rate_limited = rate_limited
