"""Tables, in SQLAlchemy Core so one definition serves SQLite and (later) PostgreSQL.

Times are integer milliseconds since the epoch; JSON columns hold orjson bytes.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)

# 2: rules and webhooks carry a version; a rule's webhook_id must name a saved webhook.
SCHEMA_VERSION = 2

metadata = MetaData()

meta = Table(
    "hookline_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("eid", String(256), nullable=True, unique=True),
    Column("event_type", String(128), nullable=False),
    Column("user_ext_id", String(256), nullable=False),
    Column("ext_brand_id", LargeBinary, nullable=True),
    Column("event_date", Integer, nullable=False),
    Column("received_at", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("user_ext_id", String(256), primary_key=True),
    Column("state", LargeBinary, nullable=False),
    Column("updated_at", Integer, nullable=False),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("spec", LargeBinary, nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("updated_at", Integer, nullable=False),
    Column("version", Integer, nullable=False, server_default=text("1")),
    # {"secret", "previous": [[secret, until_ms], ...]}; added later: see ADDED_COLUMNS.
    Column("signing", LargeBinary, nullable=True),
)

rules = Table(
    "rules",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("enabled", Boolean, nullable=False),
    Column("event_type", String(128), nullable=False),
    Column("conditions", LargeBinary, nullable=True),
    Column("webhook", LargeBinary, nullable=True),
    # The last guard of referential integrity: SQLite checks it with PRAGMA foreign_keys=ON.
    Column("webhook_id", String(40), ForeignKey("webhooks.id"), nullable=True, index=True),
    Column("created_at", Integer, nullable=False),
    Column("updated_at", Integer, nullable=False),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Column("signing", LargeBinary, nullable=True),  # as webhooks.signing
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("event_id", String(40), nullable=True),
    Column("rule_id", String(40), nullable=True),
    Column("webhook_id", String(40), nullable=True),
    Column("user_ext_id", String(256), nullable=True),
    Column("status", String(16), nullable=False),
    Column("method", String(8), nullable=False),
    Column("url", Text, nullable=False),
    Column("host", String(300), nullable=False),
    Column("headers", LargeBinary, nullable=False),
    Column("body", LargeBinary, nullable=True),
    Column("timeout", Float, nullable=False),
    Column("retry_schedule", LargeBinary, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Integer, nullable=False),
    Column("next_attempt_at", Integer, nullable=True),
    Column("lease_until", Integer, nullable=True),
    Column("updated_at", Integer, nullable=False),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    # JSON list of the webhook's secret_headers, NULL when none; added later (ADDED_COLUMNS).
    Column("secret_headers", LargeBinary, nullable=True),
    # Only active deliveries carry next_attempt_at, so this index stays small.
    Index(
        "ix_deliveries_due",
        "next_attempt_at",
        sqlite_where=text("next_attempt_at IS NOT NULL"),
        postgresql_where=text("next_attempt_at IS NOT NULL"),
    ),
    Index("ix_deliveries_rule", "rule_id", "id"),
    Index("ix_deliveries_user", "user_ext_id", "id"),
    Index("ix_deliveries_status", "status", "id"),
    Index("ix_deliveries_event", "event_id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("delivery_id", String(40), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response_headers", LargeBinary, nullable=False),
    Column("response_body", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("succeeded", Boolean, nullable=False),
    Column("warning", Text, nullable=True),  # added later: see ADDED_COLUMNS
    Index("ix_attempts_delivery", "delivery_id", "number"),
)

echo_requests = Table(
    "echo_requests",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("secret", String(128), nullable=False),
    Column("received_at", Integer, nullable=False),
    Column("method", String(16), nullable=False),
    Column("path", Text, nullable=False),
    Column("query", Text, nullable=False),
    Column("headers", LargeBinary, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Index("ix_echo_secret", "secret", "id"),
)


# Columns added to a table after it first shipped. create_all makes a missing table whole but
# leaves an existing one as it is, so each of these is added to an older database on open.
# Nullable additions only: an older hookline still reads and writes the database (it names
# its columns), so they need no new schema version. A rule or webhook that an older hookline
# writes without a signing secret gets one the next time this one opens the database.
ADDED_COLUMNS = (
    (attempts, "warning"),
    (webhooks, "signing"),
    (rules, "signing"),
    (deliveries, "secret_headers"),
)


def add_missing_columns(conn: Connection) -> None:
    """Add the columns of ADDED_COLUMNS that an older database lacks."""
    inspector = inspect(conn)
    for table, name in ADDED_COLUMNS:
        if name in {c["name"] for c in inspector.get_columns(table.name)}:
            continue
        column = table.c[name]
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"))
