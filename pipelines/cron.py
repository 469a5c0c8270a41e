"""Cron expressions in the two shapes the schedulers take: Kubeflow recurring runs want 6 fields,
seconds first; Vertex schedules want 5, minute first, with an optional `TZ=Zone` prefix. Checked
here so a typo fails before anything is sent, with the field and value named."""
from __future__ import annotations

import re
from typing import Tuple

from genrec.errors import ConfigError

_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
_DAYS = "SUN MON TUE WED THU FRI SAT".split()
# (name, lowest, highest, symbolic names) for second, minute, hour, day of month, month, day of week
_FIELDS = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, tuple(_MONTHS)),
    ("day-of-week", 0, 7, tuple(_DAYS)),
)
_TZ_PREFIX = re.compile(r"^(CRON_TZ|TZ)=(\S+)\s+")


def _check_value(token: str, field: tuple, expr: str) -> None:
    name, low, high, names = field
    if token.upper() in names:
        return
    if not token.isdigit() or not low <= int(token) <= high:
        raise ConfigError(f"cron '{expr}': {name} value '{token}' is outside {low}-{high}")


def _check_field(text: str, field: tuple, expr: str) -> None:
    """One cron field: comma-separated `*`, `?`, `a`, `a-b`, each with an optional `/step`."""
    name = field[0]
    for part in text.split(","):
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            raise ConfigError(f"cron '{expr}': {name} step '{step}' must be a positive integer")
        if base in ("*", "?"):
            if base == "?" and name not in ("day-of-month", "day-of-week"):
                raise ConfigError(f"cron '{expr}': '?' is only allowed in day-of-month or day-of-week")
            continue
        for bound in base.split("-", 1):
            if not bound:
                raise ConfigError(f"cron '{expr}': empty {name} value in '{text}'")
            _check_value(bound, field, expr)


def _split(expr: str) -> Tuple[str, list]:
    """(time-zone prefix or '', fields) with a macro expanded to its five fields."""
    text = " ".join(expr.split())
    if not text:
        raise ConfigError("cron expression is empty")
    tz = ""
    match = _TZ_PREFIX.match(text + " ")
    if match:
        tz, text = match.group(0).strip(), text[match.end():].strip()
    text = _MACROS.get(text.lower(), text)
    if text.startswith("@"):
        raise ConfigError(f"cron '{expr}': unknown macro (use one of {', '.join(sorted(_MACROS))})")
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise ConfigError(f"cron '{expr}' has {len(fields)} fields; expected 5 (minute first) "
                          "or 6 (second first)")
    return tz, fields


def kubeflow_cron(expr: str) -> str:
    """A cron expression as KFP's recurring runs want it: 6 fields, seconds first (`0 0 3 * * 1`).
    A 5-field expression gets a leading `0` seconds field; macros such as `@weekly` are expanded."""
    tz, fields = _split(expr)
    if tz:
        raise ConfigError(f"cron '{expr}': Kubeflow recurring runs take no time-zone prefix (they run in "
                          "the cluster's time zone, usually UTC)")
    if len(fields) == 5:
        fields = ["0"] + fields
    for text, field in zip(fields, _FIELDS):
        _check_field(text, field, expr)
    return " ".join(fields)


def vertex_cron(expr: str) -> str:
    """A cron expression as Vertex schedules want it: 5 fields, minute first, optional `TZ=Zone`
    prefix. A 6-field expression is accepted only with a zero seconds field (Vertex has minute
    resolution); Quartz's `?` becomes `*`."""
    tz, fields = _split(expr)
    if len(fields) == 6:
        if fields[0] not in ("0", "00"):
            raise ConfigError(f"cron '{expr}': Vertex schedules have minute resolution; the seconds "
                              "field must be 0")
        fields = fields[1:]
    for text, field in zip(fields, _FIELDS[1:]):
        _check_field(text, field, expr)
    fields = ["*" if f == "?" else f for f in fields]
    return " ".join(([tz] if tz else []) + fields)
