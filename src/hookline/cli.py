"""The command line: ``hookline serve``, ``send-event``, ``rules``, ``echo``."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hookline import __version__
from hookline.client import ApiError, Client
from hookline.errors import ConfigError
from hookline.keyadmin import keys_app, refuse_open_exposure

app = typer.Typer(help="hookline: user events in, templated webhooks out.", no_args_is_help=True)
rules_app = typer.Typer(help="Automation rules.", no_args_is_help=True)
echo_app = typer.Typer(help="The echo service.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(echo_app, name="echo")
app.add_typer(keys_app, name="keys")

console = Console()
err = Console(stderr=True)

UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="HOOKLINE_URL", help="Base URL of a running hookline server."),
]
DEFAULT_URL = "http://127.0.0.1:8080"


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _call(
    client: Client, method: str, path: str, body: Any = None, raw: bytes | None = None
) -> Any:
    try:
        return client.request(method, path, body, raw)
    except ApiError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8080]")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Where the SQLite file lives [./hookline-data]"),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error")] = None,
) -> None:
    """Run the API and the dispatcher on the embedded SQLite default."""
    import uvicorn

    from hookline.api import create_app
    from hookline.runtime import build_runtime
    from hookline.settings import Settings

    try:
        settings = Settings.from_env(host=host, port=port, data_dir=data_dir, log_level=log_level)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {escape(exc.detail)}")
        raise typer.Exit(2) from None
    refuse_open_exposure(settings)  # before listening: no keys must not mean open to all
    level = settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(build_runtime(settings)),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=15,
    )


@app.command("send-event")
def send_event(
    event: Annotated[
        str | None, typer.Argument(help="Event JSON; '-' or nothing reads stdin")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read the event(s) from a file")
    ] = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Send one event or a JSON array of events; prints the ids hookline assigned."""
    if file is not None:
        raw = file.read_bytes()
    elif event is None or event == "-":
        raw = sys.stdin.buffer.read()
    else:
        raw = event.encode()
    _print_json(_call(Client(url), "POST", "/api/v1/events", raw=raw))


@rules_app.command("list")
def rules_list(
    url: UrlOption = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """List the rules."""
    rules = _call(Client(url), "GET", "/api/v1/rules")["data"]
    if as_json:
        _print_json(rules)
        return
    table = Table("name", "id", "enabled", "event type", "activity")
    for r in rules:
        act = r["activity"]
        target = act.get("webhook_id") or f"{act.get('method', 'POST')} {act.get('url', '')}"
        table.add_row(
            r["name"], r["id"], "yes" if r["enabled"] else "no", r["trigger"]["event_type"], target
        )
    console.print(table)


def _load_rules(path: Path) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        err.print(f"[red]error:[/red] cannot read {path}: {escape(str(exc))}")
        raise typer.Exit(2) from None
    if isinstance(data, dict) and "rules" in data:
        data = data["rules"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) and "name" in r for r in data):
        err.print(
            "[red]error:[/red] expected a rule, a list of rules or {rules: [...]}, each with a name"
        )
        raise typer.Exit(2)
    return data


_SERVER_FIELDS = ("id", "created_at", "updated_at")


@rules_app.command("apply")
def rules_apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="YAML or JSON file of rules")],
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Create or update rules by name (idempotent: applying twice changes nothing)."""
    client = Client(url)
    existing = {r["name"]: r for r in _call(client, "GET", "/api/v1/rules")["data"]}
    for rule in _load_rules(file):
        current = existing.get(rule["name"])
        if current is None:
            created = _call(client, "POST", "/api/v1/rules", rule)
            console.print(f"created   {rule['name']} ({created['id']})")
            continue
        if _differs(current, rule):
            _call(client, "PUT", f"/api/v1/rules/{current['id']}", rule)
            console.print(f"updated   {rule['name']} ({current['id']})")
        else:
            console.print(f"unchanged {rule['name']} ({current['id']})")


def _differs(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether applying ``wanted`` would change ``current`` (the server's view of the rule)."""
    normal = {k: v for k, v in current.items() if k not in _SERVER_FIELDS}
    activity = dict(wanted.get("activity") or {})
    if activity.get("body") is not None and not isinstance(activity["body"], str):
        activity["body"] = orjson.dumps(activity["body"]).decode()
    if isinstance(activity.get("method"), str):
        activity["method"] = activity["method"].upper()
    candidate = {**normal, **wanted, "activity": {**normal.get("activity", {}), **activity}}
    key = orjson.OPT_SORT_KEYS
    return orjson.dumps(candidate, option=key) != orjson.dumps(normal, option=key)


@echo_app.command("list")
def echo_list(
    secret: Annotated[str, typer.Argument(help="The echo secret")],
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Print the requests the echo service recorded for SECRET, newest first."""
    _print_json(_call(Client(url), "GET", f"/echo-list/{secret}/"))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
