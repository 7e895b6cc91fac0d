-- Accounts, campaigns, orders (serial ranges, never a row per code) and settled redemptions.

CREATE TABLE merchants (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- API keys are random 256-bit secrets, so a SHA-256 digest is a safe and fast lookup key.
CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id  bigint NOT NULL REFERENCES merchants (id),
    digest       bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

CREATE TABLE stores (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id  bigint NOT NULL REFERENCES merchants (id),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at   timestamptz NOT NULL DEFAULT now(),
    disabled_at  timestamptz
);
CREATE INDEX stores_merchant ON stores (merchant_id);

CREATE TABLE terminals (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id       bigint NOT NULL REFERENCES stores (id),
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    secret_digest  bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz
);
CREATE INDEX terminals_store ON terminals (store_id);
-- Every API process reads the disabled sets each second.
CREATE INDEX terminals_disabled ON terminals (id) WHERE disabled_at IS NOT NULL;
CREATE INDEX stores_disabled ON stores (id) WHERE disabled_at IS NOT NULL;

-- Campaign ids travel inside every code in 4 bytes.
CREATE TABLE campaigns (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY CHECK (id < 4294967296),
    merchant_id         bigint NOT NULL REFERENCES merchants (id),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    face_value          bigint NOT NULL CHECK (face_value >= 0),
    currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    valid_from          timestamptz,
    valid_until         timestamptz,
    hours               text,
    timezone            text NOT NULL DEFAULT 'UTC',
    accepted_merchants  bigint[] NOT NULL DEFAULT '{}',
    algorithm           text NOT NULL CHECK (algorithm IN ('hmac-sha256', 'ed25519')),
    paused              boolean NOT NULL DEFAULT false,
    reversal_window_s   integer NOT NULL DEFAULT 900 CHECK (reversal_window_s BETWEEN 0 AND 86400),
    next_serial         bigint NOT NULL DEFAULT 0 CHECK (next_serial < 281474976710656),
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_until IS NULL OR valid_from IS NULL OR valid_until > valid_from)
);
CREATE INDEX campaigns_merchant ON campaigns (merchant_id);

-- An order is the serial range [first_serial, first_serial + quantity) signed with key_id.
CREATE TABLE orders (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id      bigint NOT NULL REFERENCES campaigns (id),
    merchant_id      bigint NOT NULL REFERENCES merchants (id),
    key_id           smallint NOT NULL CHECK (key_id BETWEEN 1 AND 255),
    first_serial     bigint NOT NULL CHECK (first_serial >= 0),
    quantity         bigint NOT NULL CHECK (quantity > 0),
    done             bigint NOT NULL DEFAULT 0 CHECK (done BETWEEN 0 AND quantity),
    status           text NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    idempotency_key  text,
    -- The signer's claim on the order, renewed with each block it writes.
    signer           text,
    heartbeat_at     timestamptz,
    -- Bytes of the export file that hold exactly `done` codes; a resumed signer starts there.
    export_bytes     bigint NOT NULL DEFAULT 0,
    finished_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, idempotency_key)
);
CREATE INDEX orders_campaign ON orders (campaign_id);
CREATE INDEX orders_unfinished ON orders (id) WHERE status IN ('queued', 'running');

-- One row per settled redemption. A code is used once per `use_no`: a reversal frees it for
-- the next use, so (campaign_id, serial, use_no) is the key that makes settlement idempotent.
CREATE TABLE redemptions (
    campaign_id           bigint NOT NULL REFERENCES campaigns (id),
    serial                bigint NOT NULL,
    use_no                integer NOT NULL CHECK (use_no >= 1),
    terminal_id           bigint NOT NULL REFERENCES terminals (id),
    store_id              bigint NOT NULL REFERENCES stores (id),
    accepting_merchant_id bigint NOT NULL REFERENCES merchants (id),
    redeemed_at           timestamptz NOT NULL,
    settled_at            timestamptz NOT NULL DEFAULT now(),
    stream_entry          text NOT NULL,
    PRIMARY KEY (campaign_id, serial, use_no)
);

CREATE TABLE reversals (
    campaign_id  bigint NOT NULL,
    serial       bigint NOT NULL,
    use_no       integer NOT NULL,
    terminal_id  bigint NOT NULL REFERENCES terminals (id),
    store_id     bigint NOT NULL REFERENCES stores (id),
    reversed_at  timestamptz NOT NULL,
    settled_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, serial, use_no),
    FOREIGN KEY (campaign_id, serial, use_no) REFERENCES redemptions (campaign_id, serial, use_no)
);

-- Voided serial ranges (a single code is a range of one), so lost Redis state can be rebuilt.
CREATE TABLE voids (
    campaign_id   bigint NOT NULL REFERENCES campaigns (id),
    first_serial  bigint NOT NULL,
    last_serial   bigint NOT NULL CHECK (last_serial >= first_serial),
    voided_at     timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, first_serial, last_serial)
);

-- A consumer's claim on a code: only a keyed hash of their phone or email is kept.
CREATE TABLE claims (
    campaign_id    bigint NOT NULL REFERENCES campaigns (id),
    serial         bigint NOT NULL,
    consumer_hash  text NOT NULL,
    claimed_at     timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, serial)
);

-- A pool hands an order's codes to visitors of one link, at most per_consumer each.
CREATE TABLE pools (
    id            text PRIMARY KEY,
    merchant_id   bigint NOT NULL REFERENCES merchants (id),
    campaign_id   bigint NOT NULL REFERENCES campaigns (id),
    order_id      bigint NOT NULL REFERENCES orders (id),
    first_serial  bigint NOT NULL,
    size          bigint NOT NULL CHECK (size > 0),
    per_consumer  integer NOT NULL CHECK (per_consumer > 0),
    created_at    timestamptz NOT NULL DEFAULT now()
);
