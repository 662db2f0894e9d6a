"""Configuration: command-line flags over ``HOOKLINE_*`` environment variables over defaults."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hookline.errors import ConfigError, closest
from hookline.keys import AuthMode
from hookline.netguard import IPNetwork, parse_networks

# The HTTP clients a sender can use (HOOKLINE_SENDER); the first is the default.
SENDERS: tuple[str, ...] = ("reqwest", "aiohttp")
# The levels HOOKLINE_LOG_LEVEL names, in any case; logging would raise a trace on others.
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
MIB = 1024 * 1024

# Numbers in settings are plain ASCII decimals. Python's int() and float() also read other
# scripts' digits ('٣'), underscores, 'nan' and 'inf', none of which a setting means.
_INTEGER = re.compile(r"[0-9]{1,18}")
_DECIMAL = re.compile(r"[0-9]{1,18}(\.[0-9]{1,18})?")


def parse_schedule(text: str, *, setting: str = "HOOKLINE_RETRY_SCHEDULE") -> tuple[float, ...]:
    """Parse ``"0,5,300"`` into delays in seconds: the wait before each attempt."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not all(_DECIMAL.fullmatch(part) for part in parts):
        raise ConfigError(
            f"{setting} must be comma-separated seconds such as '0,5,300', got {text!r}",
            field=setting,
        )
    delays = tuple(float(part) for part in parts)
    check_schedule(delays, setting=setting)
    return delays


def check_schedule(delays: tuple[float, ...], *, setting: str) -> None:
    """Refuse a schedule that is empty, negative, not finite or absurdly long."""
    if not delays:
        raise ConfigError(f"{setting} needs at least one delay (the first attempt)", field=setting)
    if len(delays) > 50:
        raise ConfigError(f"{setting} allows at most 50 attempts, got {len(delays)}", field=setting)
    if not all(math.isfinite(d) and 0 <= d <= 7 * 86400 for d in delays):
        raise ConfigError(f"{setting} delays must be between 0 and 604800 s", field=setting)


@dataclass(frozen=True)
class Settings:
    """Everything hookline can be told; each field maps to ``HOOKLINE_<NAME>``."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./hookline-data")
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    max_event_bytes: int = MIB
    max_request_bytes: int = 5 * MIB
    max_batch_events: int = 1000
    echo_max_body_bytes: int = MIB
    echo_keep: int = 100
    default_timeout: float = 15.0
    max_concurrency: int = 256
    max_per_host: int = 32
    sqlite_synchronous: str = "FULL"
    # Processes that send the HTTP requests; 0 sends from the server process itself.
    # None (unset) means one per core beyond the first, at most one: ingest keeps a core.
    sender_processes: int | None = None
    # The HTTP client that sends webhooks: reqwest (Rust, the default) or aiohttp.
    sender: str = "reqwest"
    log_level: str = "info"
    # auto: API keys once one exists; until then open on loopback, refused elsewhere.
    auth: str = "auto"
    # Private ranges webhooks may reach on purpose (the SSRF guard blocks them otherwise).
    allowed_networks: tuple[IPNetwork, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "hookline.db"

    @property
    def auth_mode(self) -> AuthMode:
        return AuthMode(self.auth.strip().lower())

    @property
    def senders(self) -> int:
        """How many sender processes to start (``sender_processes`` resolved)."""
        if self.sender_processes is not None:
            return self.sender_processes
        return 1 if (os.cpu_count() or 1) >= 2 else 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``HOOKLINE_*`` variables, then apply ``overrides`` (those not None)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            key = "HOOKLINE_" + f.name.upper()
            if key in env:
                values[f.name] = _convert(f.name, key, env[key])
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ConfigError naming the setting that is out of range."""
        if not 0 < self.port < 65536:
            raise ConfigError("HOOKLINE_PORT must be 1-65535", field="HOOKLINE_PORT")
        if self.sender_processes is not None and not 0 <= self.sender_processes <= 64:
            raise ConfigError(
                "HOOKLINE_SENDER_PROCESSES must be 'auto' or 0-64 (0 sends in-process)",
                field="HOOKLINE_SENDER_PROCESSES",
            )
        if self.sqlite_synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
            raise ConfigError(
                "HOOKLINE_SQLITE_SYNCHRONOUS must be FULL (power-loss safe), EXTRA or NORMAL",
                field="HOOKLINE_SQLITE_SYNCHRONOUS",
            )
        if self.sender not in SENDERS:
            raise ConfigError(
                f"HOOKLINE_SENDER must be one of {', '.join(SENDERS)}, not {self.sender!r}",
                field="HOOKLINE_SENDER",
            )
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(
                f"HOOKLINE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, "
                f"not {self.log_level!r}",
                field="HOOKLINE_LOG_LEVEL",
            )
        if self.auth.strip().lower() not in set(AuthMode):
            raise ConfigError(
                "HOOKLINE_AUTH must be auto (keys once one exists; open only on loopback "
                f"until then), on or off, not {self.auth!r}",
                field="HOOKLINE_AUTH",
            )
        for name in _POSITIVE_INTS:
            if getattr(self, name) <= 0:
                key = "HOOKLINE_" + name.upper()
                raise ConfigError(f"{key} must be a positive integer", field=key)
        if not 0 < self.default_timeout <= 300:  # also refuses NaN
            raise ConfigError(
                "HOOKLINE_DEFAULT_TIMEOUT must be between 0 and 300 seconds",
                field="HOOKLINE_DEFAULT_TIMEOUT",
            )
        check_schedule(self.retry_schedule, setting="HOOKLINE_RETRY_SCHEDULE")


# HOOKLINE_* variables that are not server settings: the command line's, and the tests'.
CLIENT_VARIABLES = ("HOOKLINE_URL", "HOOKLINE_API_KEY")


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """A line for each ``HOOKLINE_*`` variable that no setting reads: a typo is ignored
    otherwise (``HOOKLINE_MAX_PER_HOSTS=64`` would leave the limit at 32 without a word)."""
    env = os.environ if env is None else env
    known = [
        f"HOOKLINE_{f.name.upper()}" for f in dataclasses.fields(Settings) if f.name != "extra"
    ]
    lines = []
    for name in sorted(env):
        if not name.startswith("HOOKLINE_") or name in known or name in CLIENT_VARIABLES:
            continue
        if name.startswith("HOOKLINE_TEST_"):
            continue
        # Compared without the prefix, which every name shares.
        close = closest(name[9:], [k[9:] for k in known])
        hint = f"; did you mean HOOKLINE_{close}?" if close else ""
        lines.append(f"{name} is not a hookline setting and is ignored{hint}")
    return lines


# Settings that are counts or sizes: read as integers, and each must be above zero.
_POSITIVE_INTS = (
    "max_event_bytes",
    "max_request_bytes",
    "max_batch_events",
    "max_concurrency",
    "max_per_host",
    "echo_keep",
    "echo_max_body_bytes",
)


def _convert(name: str, key: str, raw: str) -> Any:
    if name == "retry_schedule":
        return parse_schedule(raw, setting=key)
    if name == "data_dir":
        return Path(raw)
    if name == "sender_processes" and raw.strip().lower() in ("", "auto"):
        return None
    if name == "sender_processes":
        return int(_number(_INTEGER, key, raw, "'auto' or a whole number from 0 to 64"))
    if name == "port" or name in _POSITIVE_INTS:
        return int(_number(_INTEGER, key, raw, "a whole number above 0"))
    if name == "default_timeout":
        return float(_number(_DECIMAL, key, raw, "seconds such as 15 or 2.5"))
    if name == "allowed_networks":
        return parse_networks(raw, setting=key)
    if name == "sender":
        return raw.strip().lower()
    return raw


def _number(pattern: re.Pattern[str], key: str, raw: str, expected: str) -> str:
    text = raw.strip()
    if not pattern.fullmatch(text):
        raise ConfigError(f"{key} must be {expected} (ASCII digits), got {raw!r}", field=key)
    return text
