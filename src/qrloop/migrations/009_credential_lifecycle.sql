-- Credentials have a lifecycle: a merchant holds several labelled API keys and revokes them one
-- by one; a terminal's secret is rotated, which ends every token exchanged for the old one.

-- `prefix` is the start of the key shown to people to tell keys apart (never enough to
-- authenticate); keys made before this migration have none. `last_used_at` is written at most
-- once a minute per key.
ALTER TABLE api_keys
    ADD COLUMN label         text NOT NULL DEFAULT 'initial' CHECK (length(label) BETWEEN 1 AND 100),
    ADD COLUMN prefix        text,
    ADD COLUMN last_used_at  timestamptz;
ALTER TABLE api_keys ALTER COLUMN label DROP DEFAULT;
CREATE INDEX api_keys_merchant ON api_keys (merchant_id);

-- When the terminal's current secret was set by a rotation (NULL: never rotated). Access tokens
-- carry the value they were exchanged under; every API process reads the recent rotations
-- four times a second and refuses tokens that carry an older one.
ALTER TABLE terminals ADD COLUMN credentials_since timestamptz;
CREATE INDEX terminals_rotated ON terminals (credentials_since) WHERE credentials_since IS NOT NULL;
