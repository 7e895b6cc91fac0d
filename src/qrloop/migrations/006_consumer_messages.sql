-- Messages to consumers (one-time codes, the links they hold), written by the consumer pages
-- and delivered by the worker through the sender of their channel. The recipient and body are
-- personal data: erased once a real sender delivered the message or it was given up; only the
-- development sender's messages keep them, for `qrloop outbox tail`.
CREATE TABLE consumer_messages (
    id               bigserial PRIMARY KEY,
    channel          text NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient        text,
    language         text NOT NULL,
    kind             text NOT NULL,
    subject          text,
    body             text,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    delivered_by     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    give_up_at       timestamptz NOT NULL,
    sent_at          timestamptz
);
CREATE INDEX consumer_messages_due ON consumer_messages (next_attempt_at) WHERE status = 'pending';
CREATE INDEX consumer_messages_by_sender ON consumer_messages (delivered_by, id);

-- Pools made before one-time codes existed keep handing out codes to a typed identifier;
-- the API makes new pools with 'otp' unless asked otherwise.
ALTER TABLE pools ADD COLUMN verification text NOT NULL DEFAULT 'none'
    CHECK (verification IN ('none', 'otp'));
