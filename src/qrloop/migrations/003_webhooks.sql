-- Webhooks: merchants' endpoints, the events written in the same transaction as what they
-- report (an outbox), one delivery per endpoint and event, and a log of every attempt.

CREATE TABLE webhook_endpoints (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id    bigint NOT NULL REFERENCES merchants (id),
    url            text NOT NULL,
    events         text[] NOT NULL,
    -- The signing secret is HMAC(webhook key secret_key_id, id | secret_salt): never stored.
    secret_key_id  integer NOT NULL,
    secret_salt    bytea NOT NULL,
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_id) WHERE active;

CREATE TABLE webhook_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id  bigint NOT NULL REFERENCES merchants (id),
    type         text NOT NULL
                 CHECK (type IN ('redemption.created', 'redemption.reversed', 'order.completed')),
    data         jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id      bigint NOT NULL REFERENCES webhook_endpoints (id),
    event_id         bigint NOT NULL REFERENCES webhook_events (id),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    -- While an attempt is under way this is its lease: a worker that dies leaves it due again.
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    give_up_at       timestamptz NOT NULL,
    last_status      integer,
    last_error       text,
    delivered_at     timestamptz,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (endpoint_id)
    WHERE status = 'failed';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id DESC);

CREATE TABLE webhook_attempts (
    delivery_id   bigint NOT NULL REFERENCES webhook_deliveries (id),
    attempt       integer NOT NULL,
    attempted_at  timestamptz NOT NULL,
    duration_ms   integer NOT NULL,
    status_code   integer,
    error         text,
    PRIMARY KEY (delivery_id, attempt)
);
