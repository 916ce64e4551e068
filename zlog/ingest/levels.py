"""Canonical level names for records that arrive in other dialects.

zlog's levels are the original's: ``TRACE, DEBUG, INFO, WARN, ERROR, FATAL``. Other protocols
spell them their own way (``warning``, ``CRITICAL``, ``err``, OTLP severity numbers 1-24, syslog
severities 0-7); every intake format maps through here so one level is stored one way.

Invariants:
- Pure functions; unknown text is kept as given (upper-cased, so ``Info`` and ``INFO`` agree), never
  dropped, and an empty or missing level stays ``""``.
"""

from __future__ import annotations

CANONICAL = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")

_ALIASES = {
    "trace": "TRACE", "trc": "TRACE", "verbose": "TRACE",
    "debug": "DEBUG", "dbg": "DEBUG", "fine": "DEBUG",
    "info": "INFO", "inf": "INFO", "information": "INFO", "informational": "INFO", "notice": "INFO",
    "warn": "WARN", "warning": "WARN", "wrn": "WARN",
    "error": "ERROR", "err": "ERROR", "eror": "ERROR",
    "fatal": "FATAL", "critical": "FATAL", "crit": "FATAL", "alert": "FATAL", "emerg": "FATAL",
    "emergency": "FATAL", "panic": "FATAL", "severe": "FATAL",
}

# OTLP SeverityNumber: 1-4 TRACE, 5-8 DEBUG, 9-12 INFO, 13-16 WARN, 17-20 ERROR, 21-24 FATAL.
_OTLP_RANGES = CANONICAL

# RFC 5424 severities 0..7: emergency, alert, critical, error, warning, notice, informational, debug.
SYSLOG_SEVERITY = ("FATAL", "FATAL", "FATAL", "ERROR", "WARN", "INFO", "INFO", "DEBUG")


def from_text(text: str) -> str:
    """A level name in any common spelling -> the canonical name (or the text upper-cased)."""
    t = text.strip()
    if not t:
        return ""
    return _ALIASES.get(t.lower()) or t.upper()


def from_otlp_number(number: int) -> str:
    """OTLP severity number 1..24 -> canonical name; 0 (unspecified) -> ""; else ValueError."""
    if number == 0:
        return ""
    if not 1 <= number <= 24:
        raise ValueError(f"severity number {number} is outside 0..24")
    return _OTLP_RANGES[(number - 1) // 4]


def from_syslog(severity: int) -> str:
    return SYSLOG_SEVERITY[severity]
