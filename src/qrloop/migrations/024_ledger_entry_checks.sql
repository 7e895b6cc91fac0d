-- A ledger entry's transaction and merchant are checked once per statement, set-wise, by the
-- trigger that already checks the balance, instead of by two foreign keys that ran one lookup
-- per entry through the partitioned transactions (four entries per redemption): that halved the
-- cost of booking a redemption (92 → 43 µs of PostgreSQL time per redemption, measured with the
-- foreign keys dropped and added again in one run). Entries are only ever inserted with their
-- transaction, in the same statement, and both tables are append-only, so what the foreign keys
-- guarded afterwards (a delete of the referenced row) cannot happen.
DO $$
DECLARE
    constraint_name text;
BEGIN
    FOR constraint_name IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'ledger_entries'::regclass AND contype = 'f' AND conparentid = 0
    LOOP
        EXECUTE format('ALTER TABLE ledger_entries DROP CONSTRAINT %I', constraint_name);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION ledger_statement_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wrong bigint;
BEGIN
    SELECT transaction_id INTO wrong FROM new_entries
    GROUP BY transaction_id, currency HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance', wrong;
    END IF;
    SELECT e.transaction_id INTO wrong FROM new_entries e
    WHERE NOT EXISTS (
        SELECT 1 FROM ledger_transactions t
        WHERE t.id = e.transaction_id AND t.redeemed_at = e.redeemed_at
    ) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger entries name no ledger transaction %', wrong;
    END IF;
    SELECT e.merchant_id INTO wrong FROM new_entries e
    WHERE e.merchant_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM merchants m WHERE m.id = e.merchant_id) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger entries name no merchant %', wrong;
    END IF;
    RETURN NULL;
END
$$;
