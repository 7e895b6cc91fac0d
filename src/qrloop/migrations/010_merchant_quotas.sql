-- Per-merchant overrides of the quota defaults (QRLOOP_QUOTA_*); NULL keeps the default.
CREATE TABLE merchant_quotas (
    merchant_id        bigint PRIMARY KEY REFERENCES merchants (id),
    outstanding_codes  bigint CHECK (outstanding_codes >= 0),
    orders_per_day     integer CHECK (orders_per_day >= 0),
    export_bytes       bigint CHECK (export_bytes >= 0)
);

-- Orders a merchant placed in the last 24 hours, counted at each new order.
CREATE INDEX orders_merchant_created ON orders (merchant_id, created_at);
