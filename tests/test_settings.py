from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hookline.errors import ConfigError
from hookline.settings import (
    DEFAULT_RETRY_SCHEDULE,
    Settings,
    parse_schedule,
    unknown_variables,
)


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.port == 8080
    assert s.host == "127.0.0.1"
    assert (
        s.retry_schedule == DEFAULT_RETRY_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    )
    assert s.database_path == Path("hookline-data/hookline.db")


def test_env_then_overrides() -> None:
    env = {
        "HOOKLINE_PORT": "9000",
        "HOOKLINE_RETRY_SCHEDULE": "0, 1,2",
        "HOOKLINE_DATA_DIR": "/tmp/x",
        "HOOKLINE_DEFAULT_TIMEOUT": "2.5",
    }
    s = Settings.from_env(env, port=9100, host=None)
    assert s.port == 9100
    assert s.host == "127.0.0.1"
    assert s.retry_schedule == (0.0, 1.0, 2.0)
    assert s.data_dir == Path("/tmp/x")
    assert s.default_timeout == 2.5


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"HOOKLINE_PORT": "http"}, "HOOKLINE_PORT"),
        ({"HOOKLINE_PORT": "70000"}, "HOOKLINE_PORT"),
        ({"HOOKLINE_RETRY_SCHEDULE": "0,soon"}, "HOOKLINE_RETRY_SCHEDULE"),
        ({"HOOKLINE_RETRY_SCHEDULE": ""}, "HOOKLINE_RETRY_SCHEDULE"),
        ({"HOOKLINE_RETRY_SCHEDULE": "0,-1"}, "HOOKLINE_RETRY_SCHEDULE"),
        ({"HOOKLINE_SQLITE_SYNCHRONOUS": "OFF"}, "HOOKLINE_SQLITE_SYNCHRONOUS"),
        ({"HOOKLINE_MAX_PER_HOST": "0"}, "HOOKLINE_MAX_PER_HOST"),
        ({"HOOKLINE_DEFAULT_TIMEOUT": "0"}, "HOOKLINE_DEFAULT_TIMEOUT"),
        ({"HOOKLINE_SENDER_PROCESSES": "many"}, "HOOKLINE_SENDER_PROCESSES"),
        ({"HOOKLINE_SENDER_PROCESSES": "-1"}, "HOOKLINE_SENDER_PROCESSES"),
        ({"HOOKLINE_SENDER_PROCESSES": "65"}, "HOOKLINE_SENDER_PROCESSES"),
        ({"HOOKLINE_LOG_LEVEL": "verbose"}, "HOOKLINE_LOG_LEVEL"),
        ({"HOOKLINE_LOG_LEVEL": "warn"}, "HOOKLINE_LOG_LEVEL"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.field == field
    assert field in info.value.detail


@pytest.mark.parametrize(
    ("raw", "cores", "senders"),
    [("auto", 2, 1), ("auto", 8, 1), ("auto", 1, 0), ("", 4, 1), ("0", 8, 0), ("3", 1, 3)],
)
def test_sender_processes(
    raw: str, cores: int, senders: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert Settings.from_env({"HOOKLINE_SENDER_PROCESSES": raw}).senders == senders


def test_parse_schedule() -> None:
    assert parse_schedule("0,5,300") == (0.0, 5.0, 300.0)


@pytest.mark.parametrize(
    ("raw", "kind"), [(None, "reqwest"), ("aiohttp", "aiohttp"), (" ReqWest ", "reqwest")]
)
def test_the_sender_is_reqwest_unless_aiohttp_is_asked_for(raw: str | None, kind: str) -> None:
    env = {} if raw is None else {"HOOKLINE_SENDER": raw}
    assert Settings.from_env(env).sender == kind


def test_an_unknown_sender_is_refused_naming_the_setting_and_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"HOOKLINE_SENDER": "httpx"})
    assert info.value.field == "HOOKLINE_SENDER"
    assert info.value.detail == "HOOKLINE_SENDER must be one of reqwest, aiohttp, not 'httpx'"


@pytest.mark.parametrize("raw", ["debug", "info", "warning", "error", "WARNING"])
def test_the_documented_log_levels_are_taken_in_any_case(raw: str) -> None:
    assert Settings.from_env({"HOOKLINE_LOG_LEVEL": raw}).log_level == raw


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("## Configuration")
    table = readme[start : readme.index("\n## ", start + 1)]
    names = [
        f"HOOKLINE_{f.name.upper()}" for f in dataclasses.fields(Settings) if f.name != "extra"
    ]
    assert len(names) > 15
    assert [name for name in names if f"| `{name}`" not in table] == []


def test_a_misspelt_setting_is_named_with_the_one_it_resembles() -> None:
    env = {
        "HOOKLINE_MAX_PER_HOSTS": "64",
        "HOOKLINE_MAX_PER_HOST": "8",
        "HOOKLINE_URL": "http://127.0.0.1:8080",
        "HOOKLINE_API_KEY": "hlk_x",
        "HOOKLINE_TEST_CHROMIUM": "/usr/bin/chromium",
        "HOOKLINE_ZZZ": "1",
        "PATH": "/bin",
    }
    assert unknown_variables(env) == [
        "HOOKLINE_MAX_PER_HOSTS is not a hookline setting and is ignored; "
        "did you mean HOOKLINE_MAX_PER_HOST?",
        "HOOKLINE_ZZZ is not a hookline setting and is ignored",
    ]
    assert unknown_variables({"HOOKLINE_PORT": "1", "HOOKLINE_AUTH": "on"}) == []
