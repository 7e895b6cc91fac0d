-- Acceptance agreements: another merchant's tills accept a campaign's codes only once that
-- merchant has consented. They replace campaigns.accepted_merchants, which an issuer could
-- fill with any merchant, booking receivables that merchant never agreed to.

CREATE TABLE acceptance_agreements (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id           bigint NOT NULL REFERENCES campaigns (id),
    -- No foreign key on purpose: a proposal to an id no merchant holds is kept like any other
    -- (so proposing reveals nothing about which merchants exist); it never becomes active.
    acceptor_merchant_id  bigint NOT NULL CHECK (acceptor_merchant_id > 0),
    status                text NOT NULL DEFAULT 'proposed'
                          CHECK (status IN ('proposed', 'active', 'ended')),
    proposed_at           timestamptz NOT NULL DEFAULT now(),
    accepted_at           timestamptz,
    ended_at              timestamptz,
    ended_by              text CHECK (ended_by IN ('issuer', 'acceptor')),
    CHECK (CASE status
        WHEN 'proposed' THEN accepted_at IS NULL AND ended_at IS NULL AND ended_by IS NULL
        WHEN 'active' THEN accepted_at IS NOT NULL AND ended_at IS NULL AND ended_by IS NULL
        ELSE ended_at IS NOT NULL AND ended_by IS NOT NULL
    END)
);
-- At most one open agreement per campaign and acceptor; ended ones stay as history. Its
-- campaign_id prefix also serves the tills' refresher, which reads each campaign's acceptors.
CREATE UNIQUE INDEX acceptance_agreements_open
    ON acceptance_agreements (campaign_id, acceptor_merchant_id) WHERE status <> 'ended';
CREATE INDEX acceptance_agreements_acceptor ON acceptance_agreements (acceptor_merchant_id);

-- Every ally named so far becomes a proposal: nobody's tills accept a foreign campaign until
-- its acceptor consents (fail safe). Redemptions and the ledger never read this table, so
-- what was booked stays as it is.
INSERT INTO acceptance_agreements (campaign_id, acceptor_merchant_id)
SELECT DISTINCT c.id, ally.id
FROM campaigns c CROSS JOIN LATERAL unnest(c.accepted_merchants) AS ally (id)
WHERE ally.id <> c.merchant_id AND ally.id > 0
ORDER BY c.id, ally.id;

ALTER TABLE campaigns DROP COLUMN accepted_merchants;
