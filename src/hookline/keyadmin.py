"""``hookline keys``: make, list and revoke API keys, and the check ``serve`` runs first.

The commands talk to a running server with an admin key, like the other commands. The
first admin key cannot come that way (making a key needs one), so with ``--data-dir``
they work on the SQLite file itself, server running or not: that is how the first key
is made, and how to recover when every admin key is lost. It grants nothing new: whoever
can write the data directory already holds every byte hookline keeps.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from hookline.client import ApiError, Client
from hookline.errors import HooklineError
from hookline.keys import AuthMode, Role, check_brands, check_name, is_loopback
from hookline.labels import printable
from hookline.settings import Settings

if TYPE_CHECKING:  # the store and the API load at use: `hookline --help` stays quick
    from hookline.keyring import KeyRing

keys_app = typer.Typer(
    help="API keys: make the first with --data-dir, the others over the API.",
    no_args_is_help=True,
)
err = Console(stderr=True, soft_wrap=True)

# The server every client command talks to, the keys commands' and the others' (cli.py).
DEFAULT_URL = "http://127.0.0.1:8080"
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Base URL of a running hookline server; may also come before the command "
        "(else HOOKLINE_URL, else http://127.0.0.1:8080)",
        show_default=False,
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="HOOKLINE_API_KEY",
        help="An admin API key for the server.",
        show_default=False,
        show_envvar=True,
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Work on this data directory's database directly instead of through a server "
        "(how the first admin key is made).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON as the API answers it")]

T = TypeVar("T")


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def _direct(data_dir: Path, work: Callable[[KeyRing], Awaitable[T]], *, create: bool = False) -> T:
    """Run ``work`` on the key ring of the database in ``data_dir``; ``create`` makes the
    database (and the directory) when there is none yet, as the first key needs."""

    from hookline.keyring import KeyRing
    from hookline.store.sqlite import open_sqlite

    path = Settings(data_dir=data_dir).database_path
    if not create and not path.is_file():
        # Opening it would make an empty database there: a mistyped directory would list no
        # keys, or say a key does not exist, and leave a stray database behind.
        _fail(
            f"no hookline database in {data_dir} (no {path.name} there); give the data "
            "directory hookline serves",
            2,
        )

    async def run() -> T:
        store = open_sqlite(path)
        try:
            await store.open()
            ring = KeyRing(store)
            await ring.load()
            return await work(ring)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except HooklineError as exc:
        _fail(exc.detail)
    except OSError as exc:  # the directory cannot be made: a file has its name, no rights
        _fail(f"cannot use the data directory {data_dir}: {exc.strerror or exc}")


def _until_the_server_has_it(data_dir: Path) -> None:
    """Return once a hookline serving ``data_dir`` must have taken a key made or revoked
    there: it reloads its keys on the first request after ``RingConfig.refresh`` seconds
    (and at once for a key it does not know, but not for a revoked one it holds)."""
    from hookline.keyring import RingConfig
    from hookline.serving import holder

    pid = holder(data_dir)
    if pid is None:
        return
    wait = RingConfig().refresh
    err.print(
        f"hookline (pid {pid}) serves this data directory: waiting {wait:g} s for it to take "
        "the change"
    )
    time.sleep(wait)


def _remote(
    ctx: typer.Context, url: str | None, key: str | None, method: str, path: str, body: Any = None
) -> Any:
    """Ask the server: ``--url`` after the command, else before it (or HOOKLINE_URL), else
    the default, as every other client command does."""
    root = ctx.find_root().obj
    url = url or (root if isinstance(root, str) else None) or DEFAULT_URL
    try:
        return Client(url, key=key).request(method, path, body)
    except ApiError as exc:
        hint = ""
        if exc.status == 401 and not (key or Client(url).key):
            hint = (
                "; give an admin key with --key or HOOKLINE_API_KEY (the first one is made "
                "with --data-dir, on the server's data directory)"
            )
        _fail(f"{exc}{hint}")


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Plain aligned columns: never cut, so an id can be copied whole."""
    # A name stored by an older hookline may hold a line break: printed escaped, not raw.
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        sys.stdout.write(line.rstrip() + "\n")


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


@keys_app.command("create")
def create(
    ctx: typer.Context,
    role: Annotated[Role, typer.Option("--role", help="admin, ingest or read")],
    brand: Annotated[
        list[str] | None,
        typer.Option("--brand", help="Limit the key to this ext_brand_id (repeat for more)"),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="What the key is for")] = "",
    url: UrlOption = None,
    key: KeyOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a key and print it, this once: hookline keeps only its hash."""
    brands = brand or []
    if data_dir is not None:
        try:
            checked = (check_brands(brands), check_name(name))
        except HooklineError as exc:
            _fail(f"{exc.field}: {exc.detail}", 2)

        async def work(ring: KeyRing) -> dict[str, Any]:
            record, text = await ring.create(role, *checked)
            return {**record.as_dict(), "key": text}

        made = _direct(data_dir, work, create=True)
        _until_the_server_has_it(data_dir)
    else:
        body = {"role": role.value, "brands": brands, "name": name}
        made = _remote(ctx, url, key, "POST", "/api/v1/keys", body)
    if as_json:
        _print_json(made)
        return
    scope = ", ".join(made["brands"]) if made["brands"] else "every brand"
    err.print(
        f"created {made['id']} ({made['role']}, {escape(scope)}). The key, shown this once "
        "(send it as 'Authorization: Bearer <key>'):"
    )
    sys.stdout.write(made["key"] + "\n")


@keys_app.command("list")
def list_keys(
    ctx: typer.Context,
    url: UrlOption = None,
    key: KeyOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """List keys, revoked ones too (their first characters, never the keys)."""
    if data_dir is not None:

        async def work(ring: KeyRing) -> list[dict[str, Any]]:
            return [k.as_dict() for k in await ring.list()]

        keys = _direct(data_dir, work)
    else:
        keys = _remote(ctx, url, key, "GET", "/api/v1/keys")["data"]
    if as_json:
        _print_json(keys)
        return
    rows = [
        [
            k["id"],
            k["name"] or "-",
            k["role"],
            ",".join(k["brands"]) or "*",
            k["key_prefix"] + "...",
            _time(k["created_at"]),
            _time(k["revoked_at"]),
        ]
        for k in keys
    ]
    _columns(["ID", "NAME", "ROLE", "BRANDS", "PREFIX", "CREATED", "REVOKED"], rows)


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...)", metavar="ID")],
    url: UrlOption = None,
    key: KeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Revoke a key: once the command returns, the server refuses it."""
    if data_dir is not None:

        async def work(ring: KeyRing) -> dict[str, Any]:
            return (await ring.revoke(key_id)).as_dict()

        revoked = _direct(data_dir, work)
        _until_the_server_has_it(data_dir)
    else:
        revoked = _remote(ctx, url, key, "DELETE", f"/api/v1/keys/{key_id}")
    err.print(f"revoked {revoked['id']} at {_time(revoked['revoked_at'])}")


def refuse_open_exposure(settings: Settings) -> None:
    """Exit before listening if hookline would serve an open API beyond this machine."""
    if settings.auth_mode is not AuthMode.AUTO or is_loopback(settings.host):
        return  # nothing to read: the default start stays as fast as before
    from hookline.api.auth import start_problem

    async def count(ring: KeyRing) -> int:
        return ring.active

    problem = start_problem(settings, _direct(settings.data_dir, count, create=True))
    if problem is not None:
        err.print(f"[red]hookline will not start:[/red] {escape(problem)}")
        raise typer.Exit(2)
