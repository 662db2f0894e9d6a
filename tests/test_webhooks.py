from __future__ import annotations

from typing import Any

import orjson
import pytest

from hookline.errors import InvalidInput, RenderError, TemplateError
from hookline.webhooks import WebhookSpec, compile_webhook

CTX: dict[str, Any] = {
    "event": {"n": 3, "name": "a b&c", "nl": "x\r\ny"},
    "state": {"user_ext_id": "u/1", "first": "Ann"},
}


def _render(**fields: Any) -> Any:
    return compile_webhook(WebhookSpec.from_dict(fields)).render(CTX)


def test_url_query_headers_and_json_body() -> None:
    req = _render(
        url="https://api.example.com/users/{{state.user_ext_id}}?src=hl",
        query={"name": "{{event.name}}"},
        headers={"X-User": "{{state.first}}"},
        body='{"n": {{event.n}}, "who": "{{state.first}}"}',
    )
    assert req.method == "POST"
    assert req.url == "https://api.example.com/users/u%2F1?src=hl&name=a%20b%26c"
    assert ("X-User", "Ann") in req.headers
    assert ("content-type", "application/json") in req.headers
    assert orjson.loads(req.body) == {"n": 3, "who": "Ann"}


def test_body_given_as_json_value_is_a_template() -> None:
    req = _render(url="http://h/x", body={"who": "{{state.first}}", "fixed": [1, 2]})
    assert orjson.loads(req.body) == {"who": "Ann", "fixed": [1, 2]}


def test_get_has_no_body_and_no_content_type() -> None:
    req = _render(url="http://h/x", method="GET", query={"n": "{{event.n}}"})
    assert req.body is None
    assert req.url == "http://h/x?n=3"
    assert all(name != "content-type" for name, _ in req.headers)


def test_header_line_break_from_data_is_refused_at_render() -> None:
    with pytest.raises(RenderError) as info:
        _render(url="http://h/x", headers={"X-Note": "{{event.nl}}"})
    assert info.value.field == "headers.X-Note"


def test_header_control_characters_are_refused_but_tab_and_non_ascii_kept() -> None:
    spec = {"url": "http://h/x", "headers": {"X-Note": "{{event.note}}"}}
    for char in ("\x00", "\x08", "\x0b", "\x1f", "\x7f"):
        with pytest.raises(RenderError) as info:
            compile_webhook(WebhookSpec.from_dict(spec)).render({"event": {"note": f"a{char}"}})
        assert f"U+{ord(char):04X}" in info.value.detail
    req = compile_webhook(WebhookSpec.from_dict(spec)).render({"event": {"note": "a\tb é"}})
    assert ("X-Note", "a\tb é") in req.headers


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"url": "http://h/x", "method": "TRACE"}, "method"),
        ({"url": "http://h/x", "method": "GET", "body": "x"}, "body"),
        ({"url": "http://h/x", "headers": {"Content-Length": "1"}}, "headers.Content-Length"),
        ({"url": "http://h/x", "headers": {"Content-Type": "text/plain"}}, "headers.Content-Type"),
        ({"url": "http://h/x", "headers": {"bad name": "1"}}, "headers.bad name"),
        ({"url": "http://h/x", "headers": {"X": "a\nb"}}, "headers.X"),
        ({"url": "http://h/x", "timeout": 0}, "timeout"),
        ({"url": "http://h/x", "timeout": 301}, "timeout"),
        ({"url": "http://h/x", "retry_schedule": []}, "retry_schedule"),
        ({"url": "http://h/x", "content_type": "json"}, "content_type"),
    ],
)
def test_invalid_specs_name_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        compile_webhook(WebhookSpec.from_dict(fields), field="activity")
    assert info.value.field == f"activity.{field}"


def test_invalid_body_template_reports_line_and_column() -> None:
    spec = WebhookSpec.from_dict({"url": "http://h/x", "body": '{\n  "a": {{event.n}} x\n}'})
    with pytest.raises(TemplateError) as info:
        compile_webhook(spec, field="activity")
    assert info.value.field == "activity.body"
    assert info.value.line == 2
    assert "line 2" in info.value.detail


def test_warnings_name_the_field_of_each_template() -> None:
    spec = WebhookSpec.from_dict(
        {
            "url": "http://127.0.0.1:9/{{state.id|upper}}",
            "headers": {"X-A": "{{event.a|smr_encod}}"},
            "query": {"q": "{{event.q|lower}}"},
            "body": '{"n": "{{event.n|jsno}}", "ok": "{{state.first|my friend}}"}',
        }
    )
    warnings = compile_webhook(spec, field="activity").warnings
    assert [w["field"] for w in warnings] == [
        "activity.url",
        "activity.headers.X-A",
        "activity.query.q",
        "activity.body",
    ]
    assert "did you mean the filter 'smr_encode'?" in warnings[1]["detail"]
