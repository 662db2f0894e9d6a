"""Request and response shapes at the API edge (pydantic), documented in the OpenAPI spec."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from hookline.errors import InvalidInput
from hookline.events import MAX_EVENT_DATE, MAX_ID_LENGTH
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


def _brand(value: str | int | None) -> str | None:
    # Stored as text: 5 and "5" are one brand (keys.brand_text).
    if value is None:
        return None
    text = str(value)
    if not text or len(text) > MAX_ID_LENGTH:
        raise ValueError(f"a brand is 1-{MAX_ID_LENGTH} characters")
    return text


# The brand a rule, saved webhook or journey belongs to; none: every brand.
BrandIn = Annotated[
    str | int | None,
    AfterValidator(_brand),
    Field(description="The brand it belongs to (compared as text); none: every brand."),
]


class _Strict(BaseModel):
    # allow_inf_nan: a float field must not turn the string "nan" or "inf" into a number.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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
    ext_brand_id: BrandIn = None


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
    ext_brand_id: BrandIn = None
    trigger: Trigger
    conditions: FreeObject | None = None
    activity: Activity


class RulePatch(_Strict):
    """Change some fields of a rule; the others stay."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    enabled: bool | None = None
    ext_brand_id: BrandIn = None
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

    @field_validator("ext_brand_id")
    @classmethod
    def _short(cls, value: str | int | None) -> str | int | None:
        # A validator, not a constrained union member: errors then name the field alone.
        if value is not None and len(str(value)) > MAX_ID_LENGTH:
            raise ValueError(f"at most {MAX_ID_LENGTH} characters")
        return value


class PreviewIn(_Strict):
    """Render (or send once) a webhook, inline or saved, for a sample event and state."""

    webhook: WebhookFields | None = None
    webhook_id: str | None = None
    event: SampleEvent = Field(default_factory=SampleEvent)
    state: FreeObject = Field(default_factory=dict)
