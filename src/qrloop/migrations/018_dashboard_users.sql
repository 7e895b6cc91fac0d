-- People who log in to the merchant dashboard (/dashboard/): API keys are for programs, these
-- are for people. One email is one person across every merchant (the login form asks for the
-- email alone), stored lower-cased so uniqueness ignores case.
CREATE TABLE dashboard_users (
    id bigserial PRIMARY KEY,
    merchant_id bigint NOT NULL REFERENCES merchants (id),
    email text NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) <= 320),
    role text NOT NULL CHECK (role IN ('owner', 'manager', 'viewer')),
    -- argon2id (PHC string); NULL until the person sets a password from an invitation.
    password_hash text,
    -- Sessions started before this are refused: a new password ends every older session.
    sessions_since timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);
CREATE INDEX dashboard_users_by_merchant ON dashboard_users (merchant_id, id);

-- A one-time link to set a password: only the SHA-256 of its 256-bit token is kept, so a dump
-- of the table opens no account. Used once, within its hours.
CREATE TABLE dashboard_invitations (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES dashboard_users (id) ON DELETE CASCADE,
    digest bytea NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dashboard_invitations_by_user ON dashboard_invitations (user_id);
