"""How a failed CLI run reads: one ``error:`` line, tracebacks only with ``--debug``.

Prefect logs every failed task and flow with its full traceback (70 to 330 lines for a bad
config value or a missing file). A user error is a :class:`~tuneship.errors.TuneshipError`
whose message already says what to do, so the console shows the log line without the
traceback; the Prefect API (the UI) still gets the full record.
"""

from __future__ import annotations

import logging

from tuneship.errors import TuneshipError


def _is_user_error(exc: BaseException | None) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, TuneshipError | KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


class _NoUserTracebacks(logging.Formatter):
    """Formats like the wrapped formatter, leaving out tracebacks of user errors."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        exc_info = record.exc_info
        if not exc_info or not _is_user_error(exc_info[1]):
            return self.inner.format(record)
        # Formatting caches the traceback on the record, which other handlers share:
        # hide it for this handler only and put everything back.
        saved = (record.exc_info, record.exc_text)
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


def hide_user_error_tracebacks() -> None:
    """Make Prefect's console log handlers print user errors without their traceback."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(
                handler.formatter, _NoUserTracebacks
            ):
                handler.setFormatter(_NoUserTracebacks(handler.formatter or logging.Formatter()))
