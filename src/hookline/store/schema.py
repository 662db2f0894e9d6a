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
# 3: a user is (ext_brand_id, user_ext_id): the users table's key is the pair.
SCHEMA_VERSION = 3

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
    # The brand as text, "" for no brand (state.user_key): a key column cannot be NULL.
    Column("ext_brand_id", String(256), primary_key=True, server_default=text("''")),
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
    # The brand it belongs to, as text; NULL: every brand (added later: ADDED_COLUMNS).
    Column("ext_brand_id", String(256), nullable=True),
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
    # Only events of this brand (as text) fire it; NULL: every brand (ADDED_COLUMNS).
    Column("ext_brand_id", String(256), nullable=True),
    Column("signing", LargeBinary, nullable=True),  # as webhooks.signing
    # Once per user, frequency, accumulate (counters.Limits.as_dict); NULL: none (ADDED_COLUMNS).
    Column("limits", LargeBinary, nullable=True),
    # The rule's counting epoch (Rule.counting_epoch); NULL reads as 0 (ADDED_COLUMNS).
    Column("counting_epoch", Integer, nullable=True),
)

# A user's counts for a rule that counts (hookline.counters), written in the same commit as
# the event that moved them. Keyed by user first: one read finds a group's users' counters.
rule_counters = Table(
    "rule_counters",
    metadata,
    Column("user_ext_id", String(256), primary_key=True),
    # As users.ext_brand_id: the brand as text, "" for no brand.
    Column("ext_brand_id", String(256), primary_key=True),
    Column("rule_id", String(40), primary_key=True),
    Column("epoch", Integer, nullable=False),
    Column("state", LargeBinary, nullable=False),  # counters.Counter.as_json
    Column("updated_at", Integer, nullable=False),
    Index("ix_rule_counters_rule", "rule_id"),
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
    # Set when a journey's webhook block caused the delivery (added later: ADDED_COLUMNS).
    Column("journey_id", String(40), nullable=True),
    Column("instance_id", String(40), nullable=True),
    # The brand of its user, as text; NULL: no brand (added later: ADDED_COLUMNS).
    Column("ext_brand_id", String(256), nullable=True),
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

# API keys: only a key's hash is kept, with its first characters to tell keys apart.
# A new table, not a change: create_all adds it to a database of any earlier version.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("brands", LargeBinary, nullable=False),  # a JSON list of brand ids, as text
    Column("shown", String(32), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("revoked_at", Integer, nullable=True),
    Index("ux_api_keys_hash", "hash", unique=True),
)

journeys = Table(
    "journeys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("status", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", LargeBinary, nullable=False),
    Column("ext_brand_id", LargeBinary, nullable=True),
    Column("created_at", Integer, nullable=False),
    Column("updated_at", Integer, nullable=False),
    # Raised by every write (the ETag); NULL, written by an older hookline, reads as 1.
    Column("revision", Integer, nullable=True),
    # As webhooks.signing: what its inline webhook blocks sign with (ADDED_COLUMNS).
    Column("signing", LargeBinary, nullable=True),
)

# Every version's definition, so instances finish on the version they entered.
journey_versions = Table(
    "journey_versions",
    metadata,
    Column("journey_id", String(40), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("definition", LargeBinary, nullable=False),
    Column("created_at", Integer, nullable=False),
)

journey_instances = Table(
    "journey_instances",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("journey_id", String(40), nullable=False),
    Column("version", Integer, nullable=False),
    Column("user_ext_id", String(256), nullable=False),
    Column("ext_brand_id", LargeBinary, nullable=True),
    Column("status", String(16), nullable=False),
    Column("block", String(64), nullable=True),
    Column("block_since", Integer, nullable=True),
    Column("entered_at", Integer, nullable=False),
    Column("due_at", Integer, nullable=True),
    Column("waiting_for", String(128), nullable=True),
    Column("entry_event", LargeBinary, nullable=False),
    Column("last_event", LargeBinary, nullable=False),
    Column("control_group", Boolean, nullable=False),
    Column("converted_at", Integer, nullable=True),
    Column("finish_reason", String(16), nullable=True),
    Column("finished_at", Integer, nullable=True),
    Column("updated_at", Integer, nullable=False),
    # A walk that completed unconverted: its goal counts until then (ADDED_COLUMNS).
    Column("goal_until", Integer, nullable=True),
    # The entering event's id and chain depth (journeys.Instance); NULL in rows of a hookline
    # before them (ADDED_COLUMNS): no id, depth 0.
    Column("entry_event_id", String(40), nullable=True),
    Column("chain_depth", Integer, nullable=True),
    # Timers: only waiting instances carry due_at, so the index stays small.
    Index(
        "ix_journey_instances_due",
        "due_at",
        sqlite_where=text("due_at IS NOT NULL"),
        postgresql_where=text("due_at IS NOT NULL"),
    ),
    # An event finds its user's instances (the user key lives in one place: user_ext_id).
    Index("ix_journey_instances_user", "user_ext_id", "status"),
    Index("ix_journey_instances_journey", "journey_id", "status", "user_ext_id"),
)

# Per block: how many instances entered it and left it forward (waiting now is a count).
journey_block_counts = Table(
    "journey_block_counts",
    metadata,
    Column("journey_id", String(40), primary_key=True),
    Column("block", String(64), primary_key=True),
    Column("entered", Integer, nullable=False),
    Column("passed", Integer, nullable=False),
)

# Events a journey step did not emit because their chain reached its depth
# (journey_runner.MAX_CHAIN_DEPTH), written in the same commit as the event whose step it was.
# A new table: create_all adds it to a database of any earlier version.
journey_chain_cuts = Table(
    "journey_chain_cuts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("journey_id", String(40), nullable=False),
    Column("version", Integer, nullable=False),
    Column("instance_id", String(40), nullable=False),
    Column("user_ext_id", String(256), nullable=False),
    Column("ext_brand_id", LargeBinary, nullable=True),  # as journey_instances.ext_brand_id
    Column("event_type", String(128), nullable=False),
    Column("depth", Integer, nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("cut_at", Integer, nullable=False),
    # A journey's cuts, newest first (ids sort by time), and their count.
    Index("ix_journey_chain_cuts_journey", "journey_id", "id"),
)


# Columns added to a table after it first shipped. create_all makes a missing table whole but
# leaves an existing one as it is, so each of these is added to an older database on open.
# Nullable additions only: an older hookline still reads and writes the database (it names
# its columns), so they need no new schema version. A rule or webhook that an older hookline
# writes without a signing secret gets one the next time this one opens the database (so
# does a journey).
ADDED_COLUMNS = (
    (attempts, "warning"),
    (deliveries, "journey_id"),
    (deliveries, "instance_id"),
    (deliveries, "ext_brand_id"),
    (rules, "ext_brand_id"),
    (webhooks, "ext_brand_id"),
    (webhooks, "signing"),
    (rules, "signing"),
    (deliveries, "secret_headers"),
    (journeys, "revision"),
    (journeys, "signing"),
    (rules, "limits"),
    (rules, "counting_epoch"),
    (journey_instances, "goal_until"),
    (journey_instances, "entry_event_id"),
    (journey_instances, "chain_depth"),
)

# Indexes on ADDED_COLUMNS: create_all makes them only with a new table.
ADDED_INDEXES = (Index("ix_deliveries_brand", deliveries.c.ext_brand_id, deliveries.c.id),)


# Indexes an older hookline made that nothing reads any more, dropped on open: each was one
# more entry to move on every write of its columns. (user_ext_id, waiting_for): no query
# names waiting_for, and a wait_for_event step or entry paid ~1.4 us per instance for it.
DROPPED_INDEXES = ("ix_journey_instances_waiting",)


def add_missing_columns(conn: Connection) -> None:
    """Add the columns of ADDED_COLUMNS that an older database lacks (and drop DROPPED_INDEXES)."""
    inspector = inspect(conn)
    for table, name in ADDED_COLUMNS:
        if name in {c["name"] for c in inspector.get_columns(table.name)}:
            continue
        column = table.c[name]
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"))
    for index in ADDED_INDEXES:
        index.create(conn, checkfirst=True)
    for name in DROPPED_INDEXES:
        conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
