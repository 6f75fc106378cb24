-- 0001: the tables finance, reporting and support read.
--
-- Every resource table carries last_event_seq, the outbox seq of the event
-- that wrote the row. The exporter's upserts only overwrite a row with a
-- newer event, so replays and re-exports never move a row backwards.
--
-- No foreign keys between tables: the exporter loads an event stream that can
-- start mid-history (a node restored from a snapshot, an outbox trimmed before
-- this database existed, a table rebuilt during a migration), and a refund or
-- timeline row must never be rejected because its order row is missing or not
-- yet loaded. Integrity across tables is the source's (the Raft state
-- machine's) job; here it would only be able to stop the export.

CREATE TABLE IF NOT EXISTS merchants (
    id             text PRIMARY KEY,
    name           text NOT NULL DEFAULT '',
    last_event_seq bigint NOT NULL,
    exported_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    id               text PRIMARY KEY,
    merchant_id      text NOT NULL,
    reference        text NOT NULL,
    status           text NOT NULL,
    amount_minor     bigint NOT NULL CHECK (amount_minor >= 0),
    currency         char(3) NOT NULL,
    customer_country text NOT NULL DEFAULT '',
    customer_id      text NOT NULL DEFAULT '',
    channel          text NOT NULL DEFAULT '',
    authorized_minor bigint NOT NULL DEFAULT 0,
    captured_minor   bigint NOT NULL DEFAULT 0,
    refunded_minor   bigint NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    last_event_seq   bigint NOT NULL,
    exported_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS order_lines (
    order_id          text NOT NULL,
    line_no           int NOT NULL,
    sku               text NOT NULL,
    quantity          bigint NOT NULL,
    unit_amount_minor bigint NOT NULL,
    category          text NOT NULL DEFAULT '',
    last_event_seq    bigint NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE IF NOT EXISTS payments (
    id               text PRIMARY KEY,
    order_id         text NOT NULL,
    merchant_id      text NOT NULL,
    status           text NOT NULL,
    provider         text NOT NULL DEFAULT '',
    provider_ref     text NOT NULL DEFAULT '',
    method           text NOT NULL,
    currency         char(3) NOT NULL,
    amount_minor     bigint NOT NULL,
    surcharge_minor  bigint NOT NULL DEFAULT 0,
    authorized_minor bigint NOT NULL DEFAULT 0,
    captured_minor   bigint NOT NULL DEFAULT 0,
    refunded_minor   bigint NOT NULL DEFAULT 0,
    capture_mode     text NOT NULL DEFAULT '',
    failure_code     text,
    failure_message  text,
    attempt          int NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    last_event_seq   bigint NOT NULL,
    exported_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS captures (
    id             text PRIMARY KEY,
    payment_id     text NOT NULL,
    order_id       text NOT NULL DEFAULT '',
    merchant_id    text NOT NULL,
    amount_minor   bigint NOT NULL,
    currency       char(3) NOT NULL,
    status         text NOT NULL,
    created_at     timestamptz NOT NULL,
    last_event_seq bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS refunds (
    id             text PRIMARY KEY,
    payment_id     text NOT NULL,
    order_id       text NOT NULL,
    merchant_id    text NOT NULL,
    amount_minor   bigint NOT NULL,
    currency       char(3) NOT NULL,
    reason         text NOT NULL DEFAULT '',
    channel        text NOT NULL DEFAULT '',
    status         text NOT NULL,
    failure_code   text,
    created_at     timestamptz NOT NULL,
    last_event_seq bigint NOT NULL
);

-- Timeline rows never change once written: (order_id, seq) is their identity.
CREATE TABLE IF NOT EXISTS timeline_events (
    order_id    text NOT NULL,
    seq         bigint NOT NULL,
    merchant_id text NOT NULL,
    at          timestamptz NOT NULL,
    type        text NOT NULL,
    payment_id  text,
    message     text NOT NULL DEFAULT '',
    data        jsonb,
    event_seq   bigint NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- One row per provider_response timeline event (support: "why was it slow").
CREATE TABLE IF NOT EXISTS provider_attempts (
    order_id     text NOT NULL,
    timeline_seq bigint NOT NULL,
    payment_id   text,
    merchant_id  text NOT NULL,
    op           text NOT NULL DEFAULT '',   -- authorize, capture, refund, cancel, status
    provider     text NOT NULL DEFAULT '',
    attempt      int NOT NULL DEFAULT 0,
    latency_ms   bigint,
    outcome      text NOT NULL DEFAULT '',
    code         text NOT NULL DEFAULT '',
    at           timestamptz NOT NULL,
    PRIMARY KEY (order_id, timeline_seq)
);

-- Export bookkeeping: one row per outbox event ever applied. Its primary key
-- is what makes a re-export (leader died after COMMIT, before the watermark
-- moved) a no-op rather than a duplicate.
CREATE TABLE IF NOT EXISTS exported_events (
    event_id   text PRIMARY KEY,
    seq        bigint NOT NULL UNIQUE,
    kind       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
