"""Request and response shapes at the API edge (pydantic), documented in the OpenAPI spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    RootModel,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hookline.api.brands import checked_brand
from hookline.brands import brand_text
from hookline.counters import MAX_COUNT, MAX_FIRES, MAX_REACH
from hookline.deliveries import DeliveryStatus
from hookline.errors import InvalidInput, unknown_key
from hookline.events import (
    MAX_EVENT_DATE,
    MAX_ID_LENGTH,
    MIN_EVENT_DATE,
    seconds_not_milliseconds,
)
from hookline.journeys import FinishReason, InstanceStatus, JourneyStatus
from hookline.keys import MAX_NAME, Role
from hookline.labels import check_label
from hookline.readonly import RULE, WEBHOOK, describe
from hookline.values import check_json
from hookline.webhooks import MAX_CONTENT_TYPE_LENGTH, MAX_SECRET_HEADERS, MAX_URL_LENGTH

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


def _label(value: str) -> str:
    """:func:`hookline.labels.check_label` for pydantic, whose message is then the detail."""
    try:
        return check_label(value, "name")
    except InvalidInput as exc:
        raise PydanticCustomError("invalid_label", "{detail}", {"detail": exc.detail}) from None


# The name of a rule, saved webhook or journey: printed in lists and logs, so one line.
Label = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_label)]

Body = Annotated[str | dict[str, Any] | list[Any] | None, AfterValidator(_free_json)]
FreeObject = Annotated[dict[str, Any], AfterValidator(_free_json)]


UNKNOWN_KEY = "unknown_key"


def error_location(error: Mapping[str, Any]) -> tuple[Any, ...]:
    """Where a pydantic error is; an unknown key's error is placed at the key itself."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == UNKNOWN_KEY:
        loc += (error["ctx"]["key"],)
    return loc


# The brand a rule, saved webhook or journey belongs to; none: every brand. Checked as sent
# (pydantic would make true the brand 1), and stored as text: 5 and "5" are one brand.
BrandIn = Annotated[
    str | int | None,
    BeforeValidator(checked_brand),
    AfterValidator(brand_text),
    Field(description="The brand it belongs to (compared as text); none: every brand."),
]


def _document_read_only(schema: dict[str, Any], model: type[BaseModel]) -> None:
    # The request schema lists the read-only fields too, so a client whose one model serves
    # reads and writes may send an answer back; readOnly says what the server does with them.
    properties = schema.setdefault("properties", {})
    for name in getattr(model, "read_only", ()):
        properties[name] = {"readOnly": True, "description": describe(name)}


class _Strict(BaseModel):
    # allow_inf_nan: a float field must not turn the string "nan" or "inf" into a number.
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, json_schema_extra=_document_read_only
    )

    # Fields the answers of this resource carry and no request sets (hookline.readonly):
    # taken off the body before it is validated, kept for the route to check.
    read_only: ClassVar[tuple[str, ...]] = ()
    _read_only_sent: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _known_keys(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        sent: dict[str, Any] = {}
        if isinstance(data, dict):
            if cls.read_only:
                sent = {k: data[k] for k in cls.read_only if k in data}
                data = {k: v for k, v in data.items() if k not in sent}
            # Before pydantic's own extra_forbidden, so the error suggests the key meant.
            unknown = sorted(k for k in data if k not in cls.model_fields)
            if unknown:
                key = str(unknown[0])
                detail = unknown_key(key, cls.model_fields)
                raise PydanticCustomError(UNKNOWN_KEY, "{detail}", {"key": key, "detail": detail})
        model = handler(data)
        model._read_only_sent = sent
        return model

    def read_only_sent(self, prefix: str = "") -> dict[str, Any]:
        """The read-only fields the body gave, nested ones too, by dotted name."""
        sent = {f"{prefix}{name}": value for name, value in self._read_only_sent.items()}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if isinstance(value, _Strict):
                sent.update(value.read_only_sent(f"{prefix}{name}."))
        return sent


# JSON numbers and booleans only: pydantic's lax mode would read true as 1 s and "5" as 5 s
# (hookline refuses both as numbers everywhere else). A JSON integer is still a number.
Seconds = StrictFloat
Timeout = Annotated[Seconds, Field(gt=0, le=300)]


class WebhookFields(_Strict):
    """The WebHook activity: where to call and what to send; tags may appear anywhere."""

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        examples=["https://api.example.com/hooks/{{state.user_ext_id}}"],
    )
    method: Method = "POST"
    content_type: str = Field(default="application/json", max_length=MAX_CONTENT_TYPE_LENGTH)
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)
    body: Body = Field(
        default=None,
        description="A template: JSON text with {{event.x}} / {{state.y}} tags, or a JSON value.",
    )
    timeout: Timeout | None = Field(default=None, description="Seconds; default 15.")
    retry_schedule: list[Seconds] | None = Field(
        default=None, description="Seconds before each attempt, e.g. [0, 5, 300]."
    )
    secret_headers: list[str] = Field(
        default_factory=list,
        max_length=MAX_SECRET_HEADERS,
        description="Headers whose values are credentials: sent as written, shown as ***. "
        "Authorization, Proxy-Authorization, Cookie and X-Api-Key always are.",
    )

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class WebhookIn(WebhookFields):
    read_only = WEBHOOK.fields

    name: Label
    ext_brand_id: BrandIn = None


class Activity(_Strict):
    """A rule's activity: an inline webhook, or ``webhook_id`` of a saved one."""

    read_only = RULE.nested["activity"]

    type: Literal["webhook"] = "webhook"
    webhook_id: str | None = None
    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL_LENGTH)
    method: Method | None = None
    content_type: str | None = Field(default=None, max_length=MAX_CONTENT_TYPE_LENGTH)
    headers: dict[str, str] | None = None
    query: dict[str, str] | None = None
    body: Body = None
    timeout: Timeout | None = None
    retry_schedule: list[Seconds] | None = None
    secret_headers: list[str] | None = Field(default=None, max_length=MAX_SECRET_HEADERS)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Trigger(_Strict):
    event_type: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")


# Strict types: a duration or a count must not be read from true, nor a count from 2.5; the
# ranges are checked by hookline.counters, whose messages name the field and the bounds.
Duration = Annotated[
    StrictInt | StrictFloat | StrictStr,
    Field(description="Seconds, or text such as '90s', '5m', '2h', '7d' (at most ten years)."),
]


class FrequencyIn(_Strict):
    """At most ``max`` fires per user within any ``per`` (a sliding window)."""

    max: StrictInt = Field(json_schema_extra={"minimum": 1, "maximum": MAX_FIRES})
    per: Duration


class AccumulateIn(_Strict):
    """Fire when a user's count of events, or sum of an event field, reaches a threshold."""

    count: StrictInt | None = Field(
        default=None,
        description="Fire on every count-th event; not with sum.",
        json_schema_extra={"minimum": 1, "maximum": MAX_COUNT},
    )
    sum: StrictStr | None = Field(
        default=None,
        max_length=1000,
        examples=["event.amount"],
        description="An event field to add up (a missing or non-numeric one does not count).",
    )
    reach: StrictInt | StrictFloat | None = Field(
        default=None,
        description="With sum: fire when the total reaches it.",
        json_schema_extra={"exclusiveMinimum": 0, "maximum": MAX_REACH},
    )
    window: Duration | None = Field(
        default=None, description="Start over when this much passed since the first event counted."
    )


class RuleIn(_Strict):
    read_only = RULE.fields

    name: Label
    description: str = Field(default="", max_length=2000)
    enabled: StrictBool = True
    ext_brand_id: BrandIn = None
    trigger: Trigger
    conditions: FreeObject | None = None
    once_per_user: StrictBool = Field(
        default=False, description="Fire at most once in each user's lifetime."
    )
    frequency: FrequencyIn | None = None
    accumulate: AccumulateIn | None = None
    activity: Activity


class RulePatch(_Strict):
    """Change some fields of a rule; the others stay."""

    read_only = RULE.fields

    name: Label | None = None
    description: str | None = Field(default=None, max_length=2000)
    enabled: StrictBool | None = None
    ext_brand_id: BrandIn = None
    trigger: Trigger | None = None
    conditions: FreeObject | None = None
    once_per_user: StrictBool | None = None
    frequency: FrequencyIn | None = Field(default=None, description="null removes it.")
    accumulate: AccumulateIn | None = Field(default=None, description="null removes it.")
    activity: Activity | None = None


class SampleEvent(_Strict):
    """A sample event for previews: the envelope, every field optional."""

    eid: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    event_type: str = "preview"
    user_ext_id: str = Field(default="preview-user", min_length=1, max_length=MAX_ID_LENGTH)
    ext_brand_id: str | int | None = None
    event_date: StrictInt | None = Field(default=None, ge=0, le=MAX_EVENT_DATE)
    payload: FreeObject = Field(default_factory=dict)

    @field_validator("event_date")
    @classmethod
    def _milliseconds(cls, value: int | None) -> int | None:
        # As in events: a preview of a date in seconds would show what the event gets refused.
        if value is not None and value < MIN_EVENT_DATE:
            raise ValueError(seconds_not_milliseconds(value))
        return value

    @field_validator("ext_brand_id", mode="before")
    @classmethod
    def _brand(cls, value: Any) -> Any:
        # A validator, not a constrained union member: errors then name the field alone.
        # Before pydantic's own: it would make true the brand 1.
        return checked_brand(value)


class PreviewIn(_Strict):
    """Render (or send once) a webhook, inline, saved or a rule's, for a sample event and state."""

    webhook: WebhookFields | None = None
    webhook_id: str | None = None
    rule_id: str | None = Field(default=None, description="Preview this rule's webhook.")
    event: SampleEvent = Field(default_factory=SampleEvent)
    state: FreeObject = Field(default_factory=dict)


class KeyIn(_Strict):
    """A new API key: its role, the brands it is limited to, and what it is for."""

    role: Role = Field(description="admin: everything; ingest: send events and state; read")
    # Checked by check_brands, so an error names the brand: brands[2].
    brands: list[Any] = Field(
        default_factory=list,
        description="Only events and data of these brands (ext_brand_id); none: every brand",
        json_schema_extra={"items": {"type": ["string", "integer"]}},
    )
    name: str = Field(default="", max_length=MAX_NAME, description="What the key is for")


# --- answers ----------------------------------------------------------------------------
# Documentation of what each route answers, for the OpenAPI document and generated clients.
# Routes build their answers as orjson responses: these models are never run on a request.


class _Answer(BaseModel):
    # Forbid: a test validates real answers against these, so a field left out shows.
    model_config = ConfigDict(extra="forbid")


class Error(_Answer):
    """Every error answer, whatever its status: what was wrong, where, and what to do."""

    code: str = Field(examples=["invalid_input"], description="Stable, machine-readable.")
    detail: str = Field(examples=["activity.url: Field required"])
    field: str | None = Field(
        description="The body field, parameter or header at fault (e.g. `[3].payload.n`)."
    )


# Every route may answer these; a route adds its own documented statuses.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": Error, "description": "The request cannot be applied; `detail` says why."},
    "5XX": {"model": Error, "description": "hookline cannot answer now (starting, storage)."},
}


class TemplateWarning(_Answer):
    """Something that renders but looks wrong, such as a fallback that resembles a filter."""

    field: str = Field(examples=["activity.body"])
    detail: str


class WebhookOut(_Answer):
    url: str
    method: Method
    content_type: str
    headers: dict[str, str]
    query: dict[str, str]
    body: str | None
    timeout: float | None
    retry_schedule: list[float] | None
    secret_headers: list[str] = Field(
        description="Headers whose values answers show as *** (stored and sent as written)."
    )


class SavedWebhookOut(WebhookOut):
    signing_secret: str | None = Field(
        default=None,
        description="whsec_... that signs its requests (Standard Webhooks); admins only.",
    )
    id: str = Field(examples=["wh_01J..."])
    name: str
    created_at: int
    updated_at: int
    version: int = Field(description="1 when created, one more on every change; the ETag.")
    problem: str | None = Field(default=None, description="Why a stored one cannot be used.")
    ext_brand_id: str | None = Field(
        default=None, description="The brand it belongs to; absent: every brand."
    )


class SavedWebhookSaved(SavedWebhookOut):
    warnings: list[TemplateWarning]


class WebhookList(_Answer):
    data: list[SavedWebhookOut]


class ActivityOut(_Answer):
    """An inline webhook's fields, or the ``webhook_id`` of a saved one."""

    type: Literal["webhook"]
    webhook_id: str | None = None
    url: str | None = None
    method: Method | None = None
    content_type: str | None = None
    headers: dict[str, str] | None = None
    query: dict[str, str] | None = None
    body: str | None = None
    timeout: float | None = None
    retry_schedule: list[float] | None = None
    secret_headers: list[str] | None = Field(
        default=None, description="Headers whose values answers show as ***."
    )
    signing_secret: str | None = Field(
        default=None,
        description="whsec_... that signs the inline webhook's requests; admins only.",
    )


class RuleDraft(_Answer):
    """A rule as it would be stored, before the server gives it an id and a version."""

    name: str
    description: str
    enabled: bool
    trigger: Trigger
    conditions: dict[str, Any] | None
    once_per_user: bool = False
    frequency: FrequencyIn | None = None
    accumulate: AccumulateIn | None = None
    activity: ActivityOut
    ext_brand_id: str | None = Field(
        default=None, description="The brand it belongs to; absent: every brand."
    )


class RuleOut(RuleDraft):
    id: str = Field(examples=["rule_01J..."])
    created_at: int
    updated_at: int
    version: int = Field(description="1 when created, one more on every change; the ETag.")
    problem: str | None = Field(default=None, description="Why a stored one cannot be used.")


class RuleSaved(RuleOut):
    warnings: list[TemplateWarning]


class RuleList(_Answer):
    data: list[RuleOut]


class RuleValidation(_Answer):
    valid: bool
    rule: RuleDraft
    warnings: list[TemplateWarning]


class Preview(_Answer):
    """The exact request a webhook would make."""

    method: Method
    url: str
    headers: dict[str, str]
    body: str | None
    timeout: float
    warnings: list[TemplateWarning]


class RenderedOut(_Answer):
    method: Method
    url: str
    headers: dict[str, str]
    body: str | None


# How an answer's headers read: the same on both senders, and for rows stored before.
ANSWER_HEADERS = (
    "The answer's headers, names lower-cased; a name that came more than once shows its "
    "values joined with ', ' in the order they came. Secret ones (set-cookie, authorization, "
    "proxy-authorization, cookie, x-api-key, the webhook's secret_headers) show as '***'."
)


class ExchangeOut(_Answer):
    """The receiver's answer to one request, or why there was none."""

    status_code: int | None
    headers: dict[str, str] = Field(description=ANSWER_HEADERS)
    body: str | None
    error: str | None
    warning: str | None
    latency_ms: float
    succeeded: bool


class SentOnce(_Answer):
    request: RenderedOut
    response: ExchangeOut
    warnings: list[TemplateWarning]


class AcceptedEvent(_Answer):
    id: str = Field(examples=["evt_01J..."])
    eid: str | None
    duplicate: bool = Field(description="The eid was seen before: this is the first event.")
    deliveries: list[str] = Field(description="The deliveries the event caused.")


class EventsAccepted(_Answer):
    accepted: int
    duplicates: int
    events: list[AcceptedEvent]


class EventOut(_Answer):
    id: str
    eid: str | None
    event_type: str
    user_ext_id: str
    ext_brand_id: str | int | None
    event_date: int = Field(description="Milliseconds since the epoch.")
    payload: dict[str, Any]
    received_at: int


class UserState(RootModel[dict[str, Any]]):
    """A user's state: free JSON, with ``user_ext_id`` and ``ext_brand_id`` always present."""


class DeliveryRequest(_Answer):
    method: Method
    url: str
    headers: dict[str, str]
    body: str | None
    timeout: float


class DeliveryOut(_Answer):
    id: str = Field(examples=["dlv_01J..."])
    event_id: str | None
    rule_id: str | None
    webhook_id: str | None
    user_ext_id: str | None
    status: DeliveryStatus
    attempts: int = Field(description="How many attempts were made.")
    max_attempts: int
    created_at: int
    next_attempt_at: int | None
    next_attempt_at_iso: str | None
    updated_at: int
    last_status_code: int | None
    last_error: str | None
    journey_id: str | None = Field(
        description="The journey whose webhook block caused it; null for a rule's delivery."
    )
    instance_id: str | None = Field(
        description="The user's walk through that journey (an instance); null for a rule's."
    )
    ext_brand_id: str | None = Field(description="The brand of the user it was sent for.")
    request: DeliveryRequest


class AttemptOut(_Answer):
    id: str
    delivery_id: str
    number: int
    started_at: int
    latency_ms: float
    status_code: int | None
    response_headers: dict[str, str] = Field(description=ANSWER_HEADERS)
    response_body: str | None
    error: str | None
    warning: str | None
    succeeded: bool


class DeliveryDetail(DeliveryOut):
    attempt_log: list[AttemptOut] = Field(description="Every attempt, oldest first.")


class DeliveryList(_Answer):
    data: list[DeliveryOut]
    next_cursor: str | None


class EchoAck(_Answer):
    ok: bool
    id: str
    secret: str


class EchoRequest(_Answer):
    id: str
    received_at: int
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: str
    json_body: Any = Field(alias="json", description="The body parsed as JSON, or null.")
    json_error: str | None


class EchoList(_Answer):
    secret: str
    requests: list[EchoRequest]


class EchoCleared(_Answer):
    secret: str
    deleted: int


class KeyOut(_Answer):
    """An API key as listed: never the key itself, only its first characters."""

    id: str = Field(examples=["key_01J..."])
    name: str
    role: Role
    brands: list[str] = Field(description="The brands it sees, as text; none: every brand.")
    key_prefix: str = Field(
        examples=["hlk_AbCdEfGh"], description="The key's first characters, to tell keys apart."
    )
    created_at: int
    revoked_at: int | None = Field(description="When it stopped working; null while it works.")


class KeyCreated(KeyOut):
    key: str = Field(
        examples=["hlk_..."],
        description="The key itself: in this answer only. hookline keeps its hash, never it.",
    )


class KeyList(_Answer):
    data: list[KeyOut] = Field(description="Every key, revoked ones too, oldest first.")


class JourneyOut(_Answer):
    """A journey as stored: its fields, and its definition as written (validated on save)."""

    id: str = Field(examples=["jrn_01J..."])
    name: str
    description: str
    status: JourneyStatus
    version: int = Field(
        description="1 when created; one more when the definition of a journey that ran changes."
    )
    revision: int = Field(
        description="1 when created; one more on every change (status too). The ETag, and "
        "what If-Match names."
    )
    ext_brand_id: str | int | None
    # The definition's keys, as JourneyIn takes them; the optional ones only when set.
    entry: dict[str, Any] = Field(description="The trigger, conditions, audience and mode.")
    control_group: dict[str, Any] | None = None
    goal: dict[str, Any] | None = None
    exit_on: list[dict[str, Any]] | None = None
    max_duration: str | float | None = Field(default=None, description="e.g. 30d, or seconds.")
    start: str = Field(description="The block a user enters first.")
    blocks: dict[str, Any] = Field(description="The blocks by name: type, fields and exits.")
    signing_secret: str | None = Field(
        default=None,
        description="What its inline webhook blocks sign with (whsec_...): shown to admin "
        "keys only, *** to others.",
    )
    created_at: int
    updated_at: int
    problem: str | None = Field(
        default=None,
        description="Only when the stored journey cannot be read: why. It is skipped (and "
        "reported by /healthz) until replaced with PUT or deleted.",
    )


class JourneyList(_Answer):
    data: list[JourneyOut]


class JourneyDraft(_Answer):
    """A journey as a save would store it, before the server gives it an id and versions."""

    name: str
    description: str
    status: JourneyStatus
    ext_brand_id: str | int | None
    entry: dict[str, Any]
    control_group: dict[str, Any] | None = None
    goal: dict[str, Any] | None = None
    exit_on: list[dict[str, Any]] | None = None
    max_duration: str | float | None = None
    start: str
    blocks: dict[str, Any]


class JourneyValidation(_Answer):
    valid: bool
    journey: JourneyDraft


class JourneyVersionOut(_Answer):
    """One kept version of a journey."""

    version: int
    created_at: int = Field(
        description="When this version was first saved (ms since the epoch); saving it again "
        "(a draft edited, a status changed) keeps it."
    )
    active: int = Field(description="Users inside who walk this version now.")


class JourneyVersionList(_Answer):
    data: list[JourneyVersionOut] = Field(description="Versions, newest first.")


class InstanceOut(_Answer):
    """One user's walk through one version of a journey."""

    id: str
    journey_id: str
    version: int = Field(description="The journey version the user walks, kept to the end.")
    user_ext_id: str
    ext_brand_id: str | int | None
    status: InstanceStatus
    block: str | None = Field(description="The block the user is in.")
    block_since: int | None
    entered_at: int
    updated_at: int
    due_at: int | None = Field(description="When a delay or a wait's timeout moves it on.")
    waiting_for: str | None = Field(description="The event type a wait_for_event expects.")
    control_group: bool = Field(description="Held out: it runs no block, yet may convert.")
    converted_at: int | None
    finish_reason: FinishReason | None
    finished_at: int | None


class InstanceList(_Answer):
    data: list[InstanceOut] = Field(description="Instances, newest first.")


class GroupStats(_Answer):
    entered: int
    active: int
    finished: dict[FinishReason, int] = Field(description="Finished instances by reason.")
    converted: int
    conversion_rate: float | None = Field(description="converted / entered; null if none entered.")


class BlockStats(_Answer):
    entered: int
    passed: int
    waiting: int = Field(description="Users in the block now.")


class JourneyStats(_Answer):
    journey_id: str
    version: int
    treatment: GroupStats
    control: GroupStats = Field(description="The control group: held out of every block.")
    entered: int = Field(description="Both groups together, as the next four.")
    active: int
    finished: dict[FinishReason, int]
    converted: int
    conversion_rate: float | None
    blocks: dict[str, BlockStats] = Field(
        description="Every block of the journey (and of older versions that were entered)."
    )
    chain_cuts: int = Field(
        description="Events its steps did not emit because their chain of emitted events "
        "reached depth 8 or 1,000 events (listed by /chain-cuts)."
    )


class ChainCutOut(_Answer):
    """An event a journey step did not emit: its chain of emitted events was too deep, or
    had emitted 1,000 events already."""

    id: str = Field(examples=["jcc_01J..."])
    journey_id: str
    version: int = Field(description="The journey version the instance walks.")
    instance_id: str = Field(description="The instance whose step it was.")
    user_ext_id: str
    ext_brand_id: str | int | None
    event_type: str = Field(description="The event not emitted.")
    depth: int = Field(
        description="The chain depth of event_id: 8 (the event not emitted would be one "
        "deeper), or less when the chain had emitted 1,000 events already."
    )
    event_id: str = Field(description="The event whose step emitted it (GET /api/v1/events/{id}).")
    cut_at: int


class ChainCutList(_Answer):
    data: list[ChainCutOut] = Field(description="Cuts, newest first.")


class LoadProblem(_Answer):
    kind: Literal["rule", "webhook", "journey", "journey_instance"]
    id: str
    detail: str


class Health(_Answer):
    status: Literal["ok", "starting", "failing"]
    version: str | None = None
    failing: list[str] = Field(
        default_factory=list,
        description="Background loops that ended (a bug, logged): while any is listed, "
        "events may be accepted that nothing moves on; restart hookline.",
    )
    problems: list[LoadProblem] = Field(
        default_factory=list,
        description="Stored rules, webhooks, journeys and journey instances skipped at load; "
        "listed only while hookline "
        "runs without keys, or for a read or admin key of every brand.",
    )
    problem_count: int = Field(default=0, description="How many were skipped, to anyone.")
