"""The command line: ``hookline serve``, ``send-event``, ``rules``, ``journeys``, ``deliveries``,
``echo``."""

from __future__ import annotations

import logging
import os
import sys
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from hookline import __version__, applyfile, gil
from hookline.applyfile import Change, ChangeKind, Kind
from hookline.client import ApiError, Client
from hookline.errors import ConfigError, HooklineError
from hookline.journeyfile import JOURNEYS
from hookline.keyadmin import DEFAULT_URL, UrlOption, keys_app, refuse_open_exposure
from hookline.labels import printable
from hookline.rulefile import RULES
from hookline.times import iso_ms

app = typer.Typer(help="hookline: user events in, templated webhooks out.", no_args_is_help=True)
rules_app = typer.Typer(help="Automation rules.", no_args_is_help=True)
journeys_app = typer.Typer(help="Campaign journeys.", no_args_is_help=True)
echo_app = typer.Typer(help="The echo service.", no_args_is_help=True)
deliveries_app = typer.Typer(help="Deliveries and their attempts.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(journeys_app, name="journeys")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(echo_app, name="echo")
app.add_typer(keys_app, name="keys")

err = Console(stderr=True, soft_wrap=True)  # a message stays one line, whatever the width


@app.callback()
def _root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="HOOKLINE_URL",
            help="Base URL of a running hookline server (default: http://127.0.0.1:8080)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """hookline: user events in, templated webhooks out."""
    ctx.obj = url


def _client(ctx: typer.Context, url: str | None) -> Client:
    """The server to talk to: ``--url`` after the command, before it, HOOKLINE_URL, default."""
    root = ctx.find_root().obj
    return Client(url or (root if isinstance(root, str) else None) or DEFAULT_URL)


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


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (HOOKLINE_HOST; default 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (HOOKLINE_PORT; default 8080)")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Where the SQLite file lives (HOOKLINE_DATA_DIR; default ./hookline-data)",
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="debug, info, warning, error (HOOKLINE_LOG_LEVEL; default info)"),
    ] = None,
) -> None:
    """Run the API and the dispatcher on the embedded SQLite default."""
    import uvicorn

    from hookline import logs
    from hookline.api import create_app
    from hookline.runtime import build_runtime
    from hookline.serving import DataDirLock, base_url, listen
    from hookline.settings import Settings, unknown_variables

    try:
        settings = Settings.from_env(host=host, port=port, data_dir=data_dir, log_level=log_level)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {escape(exc.detail)}")
        raise typer.Exit(2) from None
    # The data directory, then the port: a second `hookline serve` with the same settings
    # is told about the server that holds its data, the more useful of the two messages.
    try:
        lock = DataDirLock.acquire(settings.data_dir)
    except HooklineError as exc:
        _fail(exc.detail, 1)
    except OSError as exc:
        _fail(f"cannot use the data directory {settings.data_dir}: {exc.strerror or exc}", 1)
    refuse_open_exposure(settings)  # before listening: no keys must not mean open to all
    try:
        sock = listen(settings.host, settings.port)
    except HooklineError as exc:
        lock.release()
        _fail(exc.detail, 1)
    logs.configure(settings.log_level)
    for line in unknown_variables():
        logging.getLogger("hookline").warning("%s", line)
    gil.hand_over_promptly()  # SQLite's thread answers without waiting 5 ms for the GIL
    logging.getLogger("hookline").info(
        "listening on %s (pid %d)", base_url(settings.host, settings.port), os.getpid()
    )
    config = uvicorn.Config(
        create_app(build_runtime(settings)),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=logs.uvicorn_level(settings.log_level),
        access_log=False,  # hookline.access logs one line per request
        log_config=None,  # uvicorn's lines in hookline's format, not its own "INFO:     ..."
        timeout_graceful_shutdown=15,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        lock.release()
    if not server.started:
        raise typer.Exit(3)  # as uvicorn.run: the application failed to start


@app.command("send-event")
def send_event(
    ctx: typer.Context,
    event: Annotated[
        str | None, typer.Argument(help="Event JSON; '-' or nothing reads stdin")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read the event(s) from a file")
    ] = None,
    url: UrlOption = None,
) -> None:
    """Send one event or a JSON array of events; prints the answer: ids and deliveries."""
    if file is not None:
        try:
            raw = file.read_bytes()
        except OSError as exc:  # as `rules apply -f`: a message and code 2, not a trace
            _fail(f"cannot read {file}: {exc.strerror or exc}", 2)
    elif event is None or event == "-":
        raw = sys.stdin.buffer.read()
    else:
        raw = event.encode()
    _print_json(_call(_client(ctx, url), "POST", "/api/v1/events", raw=raw))


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Plain aligned columns: never cut, so an id can be copied whole from any terminal."""
    # A name stored by an older hookline may hold a line break: printed escaped, not raw.
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        sys.stdout.write(line.rstrip() + "\n")


@rules_app.command("list")
def rules_list(
    ctx: typer.Context,
    url: UrlOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the rules as the API answers them")
    ] = False,
) -> None:
    """List the rules, with whole ids."""
    rules = _call(_client(ctx, url), "GET", "/api/v1/rules")["data"]
    if as_json:
        _print_json(rules)
        return
    rows = []
    for r in rules:
        act = r["activity"]
        target = act.get("webhook_id") or f"{act.get('method', 'POST')} {act.get('url', '')}"
        enabled = "yes" if r["enabled"] else "no"
        rows.append([r["name"], r["id"], enabled, r["trigger"]["event_type"], target])
    _columns(["NAME", "ID", "ENABLED", "EVENT TYPE", "ACTIVITY"], rows)


def _short(value: Any) -> str:
    return orjson.dumps(value).decode()


_VERBS = {
    ChangeKind.CREATE: ("create", "created"),
    ChangeKind.UPDATE: ("update", "updated"),
    ChangeKind.UNCHANGED: ("unchanged", "unchanged"),
    ChangeKind.DELETE: ("delete", "deleted"),
    ChangeKind.KEEP: ("keep", "kept"),
}


def _report(change: Change, *, dry_run: bool, resource_id: str | None = None) -> None:
    verb = _VERBS[change.kind][0 if dry_run else 1]
    resource_id = resource_id or change.resource_id
    line = f"{verb:<10}{printable(change.name)}" + (f" ({resource_id})" if resource_id else "")
    if change.kind is ChangeKind.UPDATE and not dry_run:
        line += ": " + ", ".join(f.path for f in change.fields)
    if change.kind is ChangeKind.KEEP:
        line += ": not in the file (--prune deletes it)"
    sys.stdout.write(line + "\n")
    if change.kind is ChangeKind.UPDATE and dry_run:
        for f in change.fields:
            sys.stdout.write(f"    {f.path}: {_short(f.old)} -> {_short(f.new)}\n")


def _validate_on_server(
    client: Client, kind: Kind, items: Sequence[dict[str, Any]], stored_ids: dict[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each resource as the server would store it, checked by the server without writing.

    One the server has (by name) is compared with it there: a secret header value the
    answers mask still shows up as a change, and a journey that has run may not become a
    draft again.
    """
    normal: list[dict[str, Any]] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        path = f"{kind.path}/validate"
        stored_id = stored_ids.get(item["name"]) if isinstance(item.get("name"), str) else None
        if stored_id is not None:
            path += "?" + urllib.parse.urlencode({"compare_to": stored_id})
        try:
            normal.append(client.request("POST", path, item)[kind.noun])
        except ApiError as exc:
            if exc.status < 400 or exc.status >= 500 or not isinstance(exc.body, dict):
                _fail(str(exc), 1)
            where = kind.label(item, index)
            problems.append(
                applyfile.error_line(where, exc.body.get("field"), str(exc.body.get("detail")))
            )
    return normal, problems


def _apply(client: Client, kind: Kind, file: Path, *, dry_run: bool, prune: bool) -> None:
    """Make the server's resources of ``kind`` equal to the file's, matched by name."""
    try:
        items = applyfile.load(file, kind)
    except ConfigError as exc:
        _fail(exc.detail, 2)
    problems = kind.check(items)
    normal: list[dict[str, Any]] = []
    stored: list[dict[str, Any]] = []
    if not problems:  # the server is asked only about a file that passed the local checks
        stored = _call(client, "GET", kind.path)["data"]
        stored_ids = {r["name"]: r["id"] for r in stored}
        normal, problems = _validate_on_server(client, kind, items, stored_ids)
    if problems:
        for problem in problems:
            err.print(f"[red]error:[/red] {escape(problem)}")
        _fail(f"{file}: nothing was applied ({len(problems)} problem(s))", 1)
    changes = applyfile.plan(kind, list(zip(items, normal, strict=True)), stored, prune=prune)
    counts = Counter(c.kind for c in changes)
    if dry_run:
        for change in changes:
            _report(change, dry_run=True)
        sys.stdout.write(f"dry run, nothing written: {_summary(counts, dry_run=True)}\n")
        return
    for change in changes:
        resource_id = change.resource_id
        try:
            if change.kind is ChangeKind.CREATE:
                resource_id = client.request("POST", kind.path, change.body)["id"]
            elif change.kind is ChangeKind.UPDATE:
                # PUT replaces the whole resource: a key the file dropped goes back to its default.
                client.request("PUT", f"{kind.path}/{change.resource_id}", change.body)
            elif change.kind is ChangeKind.DELETE:
                client.request("DELETE", f"{kind.path}/{change.resource_id}")
        except ApiError as exc:
            # Checked above, so only a concurrent change or an outage gets here.
            where = f'{kind.noun} "{printable(change.name)}"'
            _fail(f"{where}: {exc}; the {kind.plural} reported above were applied, this one not", 1)
        _report(change, dry_run=False, resource_id=resource_id)
    sys.stdout.write(_summary(counts, dry_run=False) + "\n")


FileOption = Annotated[Path, typer.Option("--file", "-f", help="YAML or JSON file")]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change; write nothing")
]


@rules_app.command("apply")
def rules_apply(
    ctx: typer.Context,
    file: FileOption,
    url: UrlOption = None,
    dry_run: DryRunOption = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Also delete the rules the file does not name")
    ] = False,
) -> None:
    """Make the server's rules equal to the file's, matched by name.

    A key left out of a rule means its default (removing `conditions:` clears them).
    Every rule is checked, here and by the server, before any is written: a file with
    one bad rule changes nothing. Applying the same file twice changes nothing.
    """
    _apply(_client(ctx, url), RULES, file, dry_run=dry_run, prune=prune)


@journeys_app.command("list")
def journeys_list(
    ctx: typer.Context,
    url: UrlOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the journeys as the API answers them")
    ] = False,
) -> None:
    """List the journeys, with whole ids."""
    journeys = _call(_client(ctx, url), "GET", JOURNEYS.path)["data"]
    if as_json:
        _print_json(journeys)
        return
    rows = []
    for j in journeys:
        trigger = j.get("entry", {}).get("trigger", {}).get("event_type", "")
        rows.append([j["name"], j["id"], j["status"], str(j["version"]), str(trigger)])
    _columns(["NAME", "ID", "STATUS", "VERSION", "EVENT TYPE"], rows)


@journeys_app.command("apply")
def journeys_apply(
    ctx: typer.Context,
    file: FileOption,
    url: UrlOption = None,
    dry_run: DryRunOption = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Also delete the journeys the file does not name")
    ] = False,
) -> None:
    """Make the server's journeys equal to the file's, matched by name.

    A changed journey is replaced: one that has run gets a new version, and users inside
    finish on theirs. Every journey is checked by the server before any is written: a file
    with one bad journey changes nothing. Applying the same file twice changes nothing.
    """
    _apply(_client(ctx, url), JOURNEYS, file, dry_run=dry_run, prune=prune)


def _summary(counts: Counter[ChangeKind], *, dry_run: bool) -> str:
    return ", ".join(
        f"{counts[kind]} {_VERBS[kind][0] if dry_run else _VERBS[kind][1]}"
        for kind in (ChangeKind.CREATE, ChangeKind.UPDATE, ChangeKind.UNCHANGED, ChangeKind.DELETE)
    )


@deliveries_app.command("list")
def deliveries_list(
    ctx: typer.Context,
    url: UrlOption = None,
    rule_id: Annotated[str | None, typer.Option(help="Only this rule's deliveries")] = None,
    status: Annotated[str | None, typer.Option(help="pending, retrying, succeeded or dead")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the deliveries as the API answers them")
    ] = False,
) -> None:
    """List deliveries, newest first, with when each is next tried."""
    query = {"rule_id": rule_id, "status": status, "limit": str(limit)}
    qs = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    page = _call(_client(ctx, url), "GET", f"/api/v1/deliveries?{qs}")
    if as_json:
        _print_json(page["data"])
        return
    rows = [
        [
            d["id"],
            d["status"],
            str(d["attempts"]),
            _iso(d.get("next_attempt_at_iso"), d.get("next_attempt_at")),
            d.get("last_error") or "",
        ]
        for d in page["data"]
    ]
    _columns(["ID", "STATUS", "ATTEMPTS", "NEXT ATTEMPT (UTC)", "LAST ERROR"], rows)


def _iso(iso: str | None, ms: int | None) -> str:
    """The server's ISO-8601 time, or one made here from the milliseconds."""
    if iso:
        return str(iso)
    if ms is None:
        return "-"
    return iso_ms(int(ms))


@deliveries_app.command("show")
def deliveries_show(
    ctx: typer.Context,
    delivery_id: Annotated[str, typer.Argument(help="The delivery id (dlv_...)")],
    url: UrlOption = None,
) -> None:
    """Print a delivery with every attempt (its attempt_log)."""
    quoted = urllib.parse.quote(delivery_id, safe="")
    _print_json(_call(_client(ctx, url), "GET", f"/api/v1/deliveries/{quoted}"))


@echo_app.command("list")
def echo_list(
    ctx: typer.Context,
    secret: Annotated[str, typer.Argument(help="The echo secret")],
    url: UrlOption = None,
) -> None:
    """Print the requests the echo service recorded for SECRET, newest first."""
    _print_json(_call(_client(ctx, url), "GET", f"/echo-list/{secret}/"))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
