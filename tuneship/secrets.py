"""Keep tokens out of logs and messages: masking helpers and a logging filter.

The first line of defence is never to format a secret into text (tokens live in
``SecretStr`` fields and Prefect blocks). This module is the second: it masks anything that
looks like a Hugging Face (``hf_...``), RunPod (``rpa_...``) or OpenAI-style (``sk-...``) key,
plus every value
registered with :func:`register_secret`, in log records before any handler (console or the
Prefect API) sees them.

Prefect itself only redacts ``PREFECT_API_KEY``; a printed ``hf_...`` token is otherwise
stored verbatim in the run's logs (see the project's Prefect notes, section 3).
"""

from __future__ import annotations

import logging
import re
import threading
import traceback

from pydantic import SecretStr

MASK = "***"

# Real tokens are ``hf_`` / ``rpa_`` followed by ~34-40 random letters and digits. Requiring
# a digit or capital keeps identifiers such as ``hf_transfer`` readable in logs. OpenAI-style
# keys (``sk-...``, ``sk-proj-...``) also carry dashes and underscores, so they need a longer
# body before they count as a key.
TOKEN_PATTERN = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"(?P<prefix>hf_|api_org_|rpa_)(?=[A-Za-z0-9]*[A-Z0-9])[A-Za-z0-9]{8,}"
    r"|(?P<sk>sk-)(?=[A-Za-z0-9_-]*[A-Z0-9])[A-Za-z0-9_-]{16,})"
)

# Loggers whose records Prefect ships to its API (flow and task run logs) plus its own.
PREFECT_LOGGERS = ("prefect", "prefect.flow_runs", "prefect.task_runs")

MIN_SECRET_LENGTH = 6

_registered: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | SecretStr | None) -> None:
    """Mask ``value`` wherever it appears in logs and in :func:`mask_secrets` output.

    Values shorter than six characters are ignored: masking them would garble ordinary text.

    Args:
        value: The secret, plain or as a ``SecretStr``; None is ignored.
    """
    if value is None:
        return
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    raw = raw.strip()
    if len(raw) < MIN_SECRET_LENGTH:
        return
    with _lock:
        _registered.add(raw)


def clear_registered_secrets() -> None:
    """Forget every registered secret (for tests)."""
    with _lock:
        _registered.clear()


def mask_secrets(text: str, *extra: str | SecretStr | None) -> str:
    """Return ``text`` with token-shaped strings and registered secrets replaced.

    Args:
        text: Any text (a log message, an exception message, a command line).
        *extra: More secret values to mask in this call only.

    Returns:
        The text with each ``hf_...``/``rpa_...`` token replaced by its prefix plus ``***`` and
        each registered or extra secret replaced by ``***``.
    """
    if not text:
        return text
    with _lock:
        values = set(_registered)
    for item in extra:
        if item is None:
            continue
        raw = item.get_secret_value() if isinstance(item, SecretStr) else item
        if len(raw.strip()) >= MIN_SECRET_LENGTH:
            values.add(raw.strip())
    # Longest first, so a secret that contains another is masked whole.
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return TOKEN_PATTERN.sub(lambda m: (m["prefix"] or m["sk"]) + MASK, text)


def looks_like_token(value: object) -> bool:
    """Whether ``value`` is a string holding something shaped like an API token.

    Used to refuse a token pasted into a field that names a block (and would be stored in
    the clear as a flow parameter), without echoing it.
    """
    return isinstance(value, str) and TOKEN_PATTERN.search(value) is not None


class SecretMaskingFilter(logging.Filter):
    """A logging filter that masks secrets in a record's message and traceback.

    It never drops records; it rewrites ``msg``/``args`` (and the cached exception text) so
    every later handler and formatter sees the masked text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record in place and keep it.

        Args:
            record: The log record.

        Returns:
            Always True.
        """
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        masked = mask_secrets(message)
        if masked != message:
            record.msg = masked
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        return True


_FILTER = SecretMaskingFilter()


def _attach(target: logging.Logger | logging.Handler) -> None:
    if not any(isinstance(f, SecretMaskingFilter) for f in target.filters):
        target.addFilter(_FILTER)


def install_secret_filter(extra_loggers: tuple[str, ...] = ()) -> SecretMaskingFilter:
    """Attach the masking filter to Prefect's run loggers, their handlers and root's handlers.

    Logger filters only see records logged on that logger, so the filter also goes on the
    handlers (which see records propagated from child loggers). Calling this again is safe: a
    logger or handler never gets the filter twice. Call it after Prefect has configured
    logging (e.g. at the start of a flow) so handlers added by that configuration are covered.

    Args:
        extra_loggers: More logger names to protect.

    Returns:
        The shared filter instance.
    """
    for name in (*PREFECT_LOGGERS, *extra_loggers):
        logger = logging.getLogger(name)
        _attach(logger)
        for handler in logger.handlers:
            _attach(handler)
    for handler in logging.getLogger().handlers:
        _attach(handler)
    return _FILTER
