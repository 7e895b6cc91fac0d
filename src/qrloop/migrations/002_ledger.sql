-- Double-entry ledger: every settled redemption or reversal is one balanced transaction.

ALTER TABLE campaigns
    ADD COLUMN platform_fee bigint NOT NULL DEFAULT 0 CHECK (platform_fee >= 0);

CREATE TABLE ledger_transactions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('redemption', 'reversal')),
    campaign_id  bigint NOT NULL,
    serial       bigint NOT NULL,
    use_no       integer NOT NULL,
    booked_at    timestamptz NOT NULL,
    -- One booking per redemption and per reversal, however often settlement retries.
    UNIQUE (kind, campaign_id, serial, use_no),
    FOREIGN KEY (campaign_id, serial, use_no) REFERENCES redemptions (campaign_id, serial, use_no)
);

-- merchant_id is NULL for the platform's own account.
CREATE TABLE ledger_entries (
    transaction_id  bigint NOT NULL REFERENCES ledger_transactions (id),
    merchant_id     bigint REFERENCES merchants (id),
    account         text NOT NULL
                    CHECK (account IN ('payable', 'receivable', 'fees', 'platform_revenue')),
    currency        char(3) NOT NULL,
    amount          bigint NOT NULL CHECK (amount <> 0),
    CHECK ((account = 'platform_revenue') = (merchant_id IS NULL))
);
CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_merchant ON ledger_entries (merchant_id, account);

-- A transaction must balance (in its one currency) when its database transaction commits.
CREATE FUNCTION ledger_transaction_balances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM ledger_entries WHERE transaction_id = NEW.transaction_id
        GROUP BY currency HAVING sum(amount) <> 0
    ) OR (
        SELECT count(DISTINCT currency) FROM ledger_entries
        WHERE transaction_id = NEW.transaction_id
    ) > 1 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance', NEW.transaction_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER ledger_entries_balance
    AFTER INSERT ON ledger_entries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balances();

-- The ledger is append-only: a correction is a new transaction, never an edit.
CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only';
END
$$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
