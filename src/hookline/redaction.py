"""What answers, the command line and logs show of secrets: never their values.

A header value that carries a credential (``Authorization``, ``Proxy-Authorization``,
``Cookie``, ``X-Api-Key``, and any header a webhook lists in ``secret_headers``) is stored
and sent as written, but shown as ``***``; so is a ``Set-Cookie`` a receiver answers with.
A webhook's signing secret is shown to admins only (:func:`show_secrets`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from hookline.errors import InvalidInput

MASK: Final = "***"
# Request headers whose values are credentials whatever the webhook says.
SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
# An answer may hand out credentials too (a session cookie).
SECRET_RESPONSE_HEADERS: Final = SECRET_HEADERS | {"set-cookie"}
# Where a signing secret appears in an answer: a saved webhook's own field, or the
# activity of a rule with an inline webhook.
SIGNING_SECRET: Final = "signing_secret"


def secret_names(
    extra: Iterable[str] = (), base: frozenset[str] = SECRET_HEADERS
) -> frozenset[str]:
    """The lower-cased names of the headers to mask: ``base`` plus a webhook's own list."""
    return base | {name.lower() for name in extra}


def redact_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    extra: Iterable[str] = (),
    base: frozenset[str] = SECRET_HEADERS,
) -> dict[str, str]:
    """The headers as a dict, with the value of each secret one replaced by ``***``."""
    names = secret_names(extra, base)
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {name: MASK if name.lower() in names else value for name, value in pairs}


def answer_headers(pairs: Iterable[tuple[str, str]], extra: Iterable[str] = ()) -> dict[str, str]:
    """An answer's headers as attempts show them: every value, one entry per name.

    Names are lower-cased (they are case-insensitive, and one sender keeps the receiver's case
    while the other does not); the values of a name that came more than once are joined with
    ``", "`` in the order they came, as RFC 9110 (5.3) lets a recipient combine them. The one
    header that cannot be combined so, ``Set-Cookie``, is a secret: shown as one ``***``, as is
    every other secret header however often it came. The attempt stores each pair as it came.
    """
    names = secret_names(extra, SECRET_RESPONSE_HEADERS)
    shown: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        if key in names:
            shown[key] = MASK
        elif key in shown:
            shown[key] = f"{shown[key]}, {value}"
        else:
            shown[key] = value
    return shown


def check_url_credentials(url: str, field: str = "url") -> None:
    """Refuse, when saved, a URL that carries credentials (``user:password@host``).

    Answers, the command line and error messages show URLs as they are; a credential in one
    would be shown with it, while the same credential in a header is masked. The URL itself
    is never echoed.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return  # the URL checks of compile_webhook say what is wrong with it
    if "@" in parts.netloc:
        raise InvalidInput(
            "the url carries credentials (user:password@ before the host), which answers "
            "and logs would show: send them in a header instead, such as 'Authorization: "
            "Basic <base64 of user:password>' (masked as ***), and take them out of the url",
            field=field,
        )


def hide_url_credentials(url: str) -> str:
    """``url`` with any ``user:password@`` shown as ``***@`` (a URL saved before the check)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{MASK}@{host}").geturl()


def show_secrets(answer: Any, *, admin: bool) -> Any:
    """``answer`` with every signing secret masked, unless the reader is an admin.

    Takes one resource, a list of them, or a page (``{"data": [...]}``); the one place that
    decides who sees signing secrets, so a route only says who is asking.
    """
    if admin:
        return answer
    if isinstance(answer, list):
        return [show_secrets(item, admin=False) for item in answer]
    if not isinstance(answer, dict):
        return answer
    shown = {
        key: show_secrets(value, admin=False) if key in ("data", "activity", "rule") else value
        for key, value in answer.items()
    }
    if shown.get(SIGNING_SECRET) is not None:
        shown[SIGNING_SECRET] = MASK
    return shown


def same_origin(before: str | None, after: str) -> bool:
    """Whether two URLs (templates allowed) go to the same scheme, host and port, as written."""
    if before is None:
        return False
    old, new = urlsplit(before.strip()), urlsplit(after.strip())
    return (old.scheme.lower(), old.netloc.lower()) == (new.scheme.lower(), new.netloc.lower())


def keep_masked(
    headers: Mapping[str, str],
    secret_headers: Iterable[str],
    stored: Mapping[str, str] | None,
    field: str,
    *,
    same_destination: bool = True,
) -> dict[str, str]:
    """``headers`` with each secret value sent back as ``***`` replaced by the stored one.

    A client that reads a webhook (its secret headers show ``***``) and writes it back must
    not replace the real credential with ``***``. The one merge for rules, saved webhooks
    and journey blocks: a header that is secret (by name, or listed in ``secret_headers``)
    and is exactly ``***`` keeps the value ``stored`` holds for it (names compare without
    case); with none to keep, InvalidInput naming ``{field}.{header}``. A stored secret is
    kept only for the same destination (``same_destination``): one that moves the webhook to
    another host must send the value again, or anyone who may edit the URL but not read the
    secret could send it to a host of their choosing.
    """
    names = secret_names(secret_headers)
    kept = {name.lower(): value for name, value in (stored or {}).items()}
    merged: dict[str, str] = {}
    for name, value in headers.items():
        if value == MASK and name.lower() in names:
            if not same_destination and name.lower() in kept:
                raise InvalidInput(
                    f"header {name!r} is {MASK!r} and the URL now goes to another host: a "
                    "stored secret is not sent to a new host, so send the real value",
                    field=f"{field}.{name}",
                )
            value = kept.get(name.lower(), MASK)
            if value == MASK:
                raise InvalidInput(
                    f"header {name!r} is {MASK!r}, how answers show a secret, and there is no "
                    "stored value to keep: send the real value",
                    field=f"{field}.{name}",
                )
        merged[name] = value
    return merged
