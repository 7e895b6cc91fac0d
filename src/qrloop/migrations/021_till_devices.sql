-- Phones paired as tills (issue 14 §2). The merchant asks for a pairing of one of its
-- terminals; the phone that opens its link once becomes a device of that terminal, with a
-- credential of its own that the merchant can revoke without touching the terminal's secret.

-- A pairing is a one-time token, kept as its SHA-256 digest (256 random bits: a plain digest
-- is safe to look up by). It is consumed by the UPDATE that stamps `used_at`, so one phone at
-- most wins it.
CREATE TABLE till_pairings (
    id           bigserial PRIMARY KEY,
    merchant_id  bigint NOT NULL,
    terminal_id  bigint NOT NULL,
    digest       bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    FOREIGN KEY (terminal_id) REFERENCES terminals (id)
);
-- A new link of a terminal deletes its expired ones, through this index.
CREATE INDEX till_pairings_of_terminal ON till_pairings (terminal_id, expires_at);

-- A paired phone. Its credential (an HttpOnly cookie on the phone) is likewise a digest;
-- `revoked_at` ends it: the exchange refuses it at once, and every API process refuses its
-- access tokens once it has read the revocation (four times a second, like rotations).
CREATE TABLE till_devices (
    id            bigserial PRIMARY KEY,
    merchant_id   bigint NOT NULL,
    terminal_id   bigint NOT NULL,
    digest        bytea NOT NULL UNIQUE,
    label         text NOT NULL CHECK (length(label) <= 200),
    paired_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    FOREIGN KEY (terminal_id) REFERENCES terminals (id)
);
-- A terminal's devices, newest first, in one index range of its merchant.
CREATE INDEX till_devices_list ON till_devices (merchant_id, terminal_id, id);
CREATE INDEX till_devices_revoked ON till_devices (revoked_at) WHERE revoked_at IS NOT NULL;
