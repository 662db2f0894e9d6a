"""Request and response shapes at the API edge (pydantic), documented in the OpenAPI spec."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


def _storable(value: Any) -> Any:
    """A body given as a JSON value must serialise (integers fit in 64 bits)."""
    if value is not None and not isinstance(value, str):
        try:
            orjson.dumps(value)
        except TypeError as exc:
            raise ValueError(f"cannot be stored as JSON: {exc}") from None
    return value


Body = Annotated[str | dict[str, Any] | list[Any] | None, AfterValidator(_storable)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    secret_headers: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Headers whose values are credentials: sent as written, shown as ***. "
        "Authorization, Cookie and X-Api-Key always are.",
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
    secret_headers: list[str] | None = Field(default=None, max_length=100)

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
    conditions: dict[str, Any] | None = None
    activity: Activity


class RulePatch(_Strict):
    """Change some fields of a rule; the others stay."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    enabled: bool | None = None
    trigger: Trigger | None = None
    conditions: dict[str, Any] | None = None
    activity: Activity | None = None


class SampleEvent(_Strict):
    """A sample event for previews: the envelope, every field optional."""

    eid: str | None = None
    event_type: str = "preview"
    user_ext_id: str = "preview-user"
    ext_brand_id: str | int | None = None
    event_date: int | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class PreviewIn(_Strict):
    """Render (or send once) a webhook, inline or saved, for a sample event and state."""

    webhook: WebhookFields | None = None
    webhook_id: str | None = None
    event: SampleEvent = Field(default_factory=SampleEvent)
    state: dict[str, Any] = Field(default_factory=dict)
