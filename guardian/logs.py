"""Guardian's logger: silent unless the application asked for logs.

A library must not print. When the application configured structlog, events go through its
structlog pipeline (processors, renderer, level filter) as the logger ``guardian``. Otherwise they
go to the standard library logger ``guardian``, which has only a ``NullHandler`` of ours: the
application's ``logging`` configuration decides what is shown and where (``logging.basicConfig(
level=logging.INFO)`` shows Guardian's events as ``run_started run_id=... agent=...``). The
choice is made per event, so configuring logging after creating a Guardian works.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["GuardianLogger", "get_logger"]

NAME = "guardian"
_stdlib = logging.getLogger(NAME)
_stdlib.addHandler(logging.NullHandler())


def _render(event: str, fields: dict[str, Any]) -> str:
    if not fields:
        return event
    return (
        event
        + " "
        + " ".join(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}" for key, value in fields.items())
    )


class GuardianLogger:
    """The subset of a structlog bound logger Guardian uses: one method per level, an event name
    and keyword fields."""

    __slots__ = ("_structlog",)

    def __init__(self) -> None:
        self._structlog: Any = structlog.get_logger(NAME)

    def _emit(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            getattr(self._structlog, method)(event, **fields)
        elif _stdlib.isEnabledFor(level):
            exc_info = fields.pop("exc_info", method == "exception")
            _stdlib.log(
                level,
                _render(event, fields),
                exc_info=exc_info,
                extra={"guardian_event": event, "guardian_fields": fields},
                stacklevel=3,
            )

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, "exception", event, fields)


def get_logger() -> GuardianLogger:
    return GuardianLogger()
