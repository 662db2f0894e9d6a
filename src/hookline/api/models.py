"""Request and response shapes at the API edge (pydantic), documented in the OpenAPI spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hookline.errors import InvalidInput, unknown_key
from hookline.events import (
    MAX_EVENT_DATE,
    MAX_ID_LENGTH,
    MIN_EVENT_DATE,
    seconds_not_milliseconds,
)
from hookline.values import check_json

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


def _free_json(value: Any) -> Any:
    """Free-form JSON keeps the limits of every JSON value hookline accepts (64 levels)."""
    if value is not None and not isinstance(value, str):
        try:
            check_json(value, "")
            orjson.dumps(value)
        except InvalidInput as exc:
            raise ValueError(exc.detail) from None
        except TypeError as exc:
            raise ValueError(f"cannot be stored as JSON: {exc}") from None
    return value


Body = Annotated[str | dict[str, Any] | list[Any] | None, AfterValidator(_free_json)]
FreeObject = Annotated[dict[str, Any], AfterValidator(_free_json)]


UNKNOWN_KEY = "unknown_key"


def error_location(error: Mapping[str, Any]) -> tuple[Any, ...]:
    """Where a pydantic error is; an unknown key's error is placed at the key itself."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == UNKNOWN_KEY:
        loc += (error["ctx"]["key"],)
    return loc


class _Strict(BaseModel):
    # allow_inf_nan: a float field must not turn the string "nan" or "inf" into a number.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # Before pydantic's own extra_forbidden, so the error suggests the key meant.
        if isinstance(data, dict):
            unknown = sorted(k for k in data if k not in cls.model_fields)
            if unknown:
                key = str(unknown[0])
                detail = unknown_key(key, cls.model_fields)
                raise PydanticCustomError(UNKNOWN_KEY, "{detail}", {"key": key, "detail": detail})
        return data


class WebhookFields(_Strict):
    """The WebHook activity: where to call and what to send; tags may appear anywhere."""

    url: str = Field(
        min_length=1,
        max_length=4096,
        examples=["https://api.example.com/hooks/{{state.user_ext_id}}"],
    )
    method: Method = "POST"
    content_type: str = Field(default="application/json", max_length=200)
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)
    body: Body = Field(
        default=None,
        description="A template: JSON text with {{event.x}} / {{state.y}} tags, or a JSON value.",
    )
    timeout: float | None = Field(default=None, gt=0, le=300, description="Seconds; default 15.")
    retry_schedule: list[float] | None = Field(
        default=None, description="Seconds before each attempt, e.g. [0, 5, 300]."
    )

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class WebhookIn(WebhookFields):
    name: str = Field(min_length=1, max_length=200)


class Activity(_Strict):
    """A rule's activity: an inline webhook, or ``webhook_id`` of a saved one."""

    type: Literal["webhook"] = "webhook"
    webhook_id: str | None = None
    url: str | None = Field(default=None, min_length=1, max_length=4096)
    method: Method | None = None
    content_type: str | None = Field(default=None, max_length=200)
    headers: dict[str, str] | None = None
    query: dict[str, str] | None = None
    body: Body = None
    timeout: float | None = Field(default=None, gt=0, le=300)
    retry_schedule: list[float] | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Trigger(_Strict):
    event_type: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")


class RuleIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    enabled: bool = True
    trigger: Trigger
    conditions: FreeObject | None = None
    activity: Activity


class RulePatch(_Strict):
    """Change some fields of a rule; the others stay."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    enabled: bool | None = None
    trigger: Trigger | None = None
    conditions: FreeObject | None = None
    activity: Activity | None = None


class SampleEvent(_Strict):
    """A sample event for previews: the envelope, every field optional."""

    eid: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    event_type: str = "preview"
    user_ext_id: str = Field(default="preview-user", min_length=1, max_length=MAX_ID_LENGTH)
    ext_brand_id: str | int | None = None
    event_date: int | None = Field(default=None, ge=0, le=MAX_EVENT_DATE)
    payload: FreeObject = Field(default_factory=dict)

    @field_validator("event_date")
    @classmethod
    def _milliseconds(cls, value: int | None) -> int | None:
        # As in events: a preview of a date in seconds would show what the event gets refused.
        if value is not None and value < MIN_EVENT_DATE:
            raise ValueError(seconds_not_milliseconds(value))
        return value

    @field_validator("ext_brand_id")
    @classmethod
    def _short(cls, value: str | int | None) -> str | int | None:
        # A validator, not a constrained union member: errors then name the field alone.
        if value is not None and len(str(value)) > MAX_ID_LENGTH:
            raise ValueError(f"at most {MAX_ID_LENGTH} characters")
        return value


class PreviewIn(_Strict):
    """Render (or send once) a webhook, inline, saved or a rule's, for a sample event and state."""

    webhook: WebhookFields | None = None
    webhook_id: str | None = None
    rule_id: str | None = Field(default=None, description="Preview this rule's webhook.")
    event: SampleEvent = Field(default_factory=SampleEvent)
    state: FreeObject = Field(default_factory=dict)
