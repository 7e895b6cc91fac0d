-- Redemptions, their reversals and their ledger bookings are partitioned by month, so that
-- the hot queries read one or two months however many years the tables hold, and old months
-- can be detached (`qrloop partitions detach`) instead of deleted row by row.
--
-- The partition key of all four tables is the redemption's time, `redeemed_at` (UTC months):
-- it comes from the stream entry, so a retried event carries the same key and lands on the
-- same partition, where the unique keys (which must include the partition key) make the
-- retry a no-op as before. A reversal and every ledger row of a redemption live in the
-- redemption's month, so each foreign key stays inside one month and a month detaches whole.
--
-- The tables are converted in place: each is recreated partitioned, its rows copied into
-- their months (ids kept), its indexes and foreign keys recreated on the new parent.

-- Months taken out by `qrloop partitions detach`. Such a month is never created again: an
-- event of it that comes back (a replay after the detach) is parked, never settled twice.
CREATE TABLE detached_months (
    month        date PRIMARY KEY CHECK (month = date_trunc('month', month)),
    detached_at  timestamptz NOT NULL DEFAULT now()
);

-- The partitions of one UTC month in the four tables, those missing only: idempotent, and
-- serialised by a transaction-level advisory lock, so two workers (or a worker and `migrate`)
-- may call it at once. Each partition is created on its own and then attached, which takes a
-- SHARE UPDATE EXCLUSIVE lock on the parent (not ACCESS EXCLUSIVE, as CREATE TABLE ...
-- PARTITION OF would): reads and inserts of other months carry on meanwhile.
CREATE FUNCTION create_month_partitions(month date) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    first_day date := date_trunc('month', month)::date;
    bounds text := format(
        'FROM (%L) TO (%L)', first_day || ' 00:00:00+00',
        (first_day + interval '1 month')::date || ' 00:00:00+00');
    parent text;
    partition text;
    created integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(124736259452786);  -- 0x71726C6F6F72: next to migrate's, rebuild's
    IF EXISTS (SELECT FROM detached_months d WHERE d.month = first_day) THEN
        RAISE EXCEPTION 'month % was detached; it is never created again',
            to_char(first_day, 'YYYY-MM')
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- Referenced tables first: a new partition takes its parent's foreign keys at once.
    FOREACH parent IN ARRAY ARRAY['redemptions', 'reversals', 'ledger_transactions',
                                  'ledger_entries'] LOOP
        partition := parent || '_' || to_char(first_day, 'YYYY_MM');
        CONTINUE WHEN EXISTS (
            SELECT FROM pg_inherits
            WHERE inhrelid = to_regclass(partition) AND inhparent = parent::regclass
        );
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       partition, parent);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES %s',
                       parent, partition, bounds);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

-- The indexes and foreign keys of the old tables that this migration does not make itself
-- (those other migrations added), as their definitions, to be made again on the new tables.
CREATE TEMPORARY TABLE carried_over (statement text NOT NULL) ON COMMIT DROP;
INSERT INTO carried_over
SELECT pg_get_indexdef(i.indexrelid)
FROM pg_index i
WHERE i.indrelid IN ('redemptions'::regclass, 'reversals'::regclass,
                     'ledger_transactions'::regclass, 'ledger_entries'::regclass)
  AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid);
INSERT INTO carried_over
SELECT format('ALTER TABLE %s ADD CONSTRAINT %I %s',
              c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
FROM pg_constraint c
WHERE c.contype = 'f'
  AND c.conrelid IN ('redemptions'::regclass, 'reversals'::regclass,
                     'ledger_transactions'::regclass, 'ledger_entries'::regclass)
  AND c.confrelid NOT IN ('redemptions'::regclass, 'reversals'::regclass,
                          'ledger_transactions'::regclass, 'ledger_entries'::regclass);

ALTER TABLE redemptions RENAME TO redemptions_unpartitioned;
ALTER TABLE reversals RENAME TO reversals_unpartitioned;
ALTER TABLE ledger_transactions RENAME TO ledger_transactions_unpartitioned;
ALTER TABLE ledger_entries RENAME TO ledger_entries_unpartitioned;

-- The same columns, checks and defaults; the three tables that follow a redemption gain its
-- time. Constraints and indexes come after the rows: building them once is faster than
-- keeping them up to date row by row.
CREATE TABLE redemptions (
    LIKE redemptions_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS
) PARTITION BY RANGE (redeemed_at);
CREATE TABLE reversals (
    LIKE reversals_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    redeemed_at timestamptz NOT NULL
) PARTITION BY RANGE (redeemed_at);
CREATE TABLE ledger_transactions (
    LIKE ledger_transactions_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    redeemed_at timestamptz NOT NULL
) PARTITION BY RANGE (redeemed_at);
CREATE TABLE ledger_entries (
    LIKE ledger_entries_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    redeemed_at timestamptz NOT NULL
) PARTITION BY RANGE (redeemed_at);

-- Every month that holds a redemption, and the current one (the worker makes the months
-- ahead, QRLOOP_PARTITION_MONTHS_AHEAD).
SELECT create_month_partitions(month::date)
FROM (
    SELECT DISTINCT date_trunc('month', redeemed_at AT TIME ZONE 'UTC') FROM redemptions_unpartitioned
    UNION SELECT date_trunc('month', now() AT TIME ZONE 'UTC')
) AS months (month);

INSERT INTO redemptions SELECT * FROM redemptions_unpartitioned;
INSERT INTO reversals
SELECT v.*, r.redeemed_at
FROM reversals_unpartitioned v JOIN redemptions_unpartitioned r USING (campaign_id, serial, use_no);
INSERT INTO ledger_transactions
SELECT t.*, r.redeemed_at
FROM ledger_transactions_unpartitioned t
JOIN redemptions_unpartitioned r USING (campaign_id, serial, use_no);
INSERT INTO ledger_entries
SELECT e.*, t.redeemed_at
FROM ledger_entries_unpartitioned e JOIN ledger_transactions t ON t.id = e.transaction_id;

-- Ledger transaction ids come from a sequence that goes on where the identity stopped (an
-- identity column on a partitioned table needs PostgreSQL 17).
CREATE SEQUENCE ledger_transactions_id;
SELECT setval('ledger_transactions_id', last_value, is_called) FROM ledger_transactions_id_seq;

DROP TABLE ledger_entries_unpartitioned, ledger_transactions_unpartitioned,
    reversals_unpartitioned, redemptions_unpartitioned;

ALTER SEQUENCE ledger_transactions_id RENAME TO ledger_transactions_id_seq;
ALTER SEQUENCE ledger_transactions_id_seq OWNED BY ledger_transactions.id;
ALTER TABLE ledger_transactions ALTER COLUMN id SET DEFAULT nextval('ledger_transactions_id_seq');

-- The keys as before, each with the partition key: a retried event has the same time, so it
-- meets its first settlement's row in the same partition and inserts nothing. A code's uses
-- are in time order in the redemptions' key, so its latest use is found reading the months
-- newest first, stopping at the first that holds one.
ALTER TABLE redemptions ADD PRIMARY KEY (campaign_id, serial, redeemed_at, use_no);
ALTER TABLE reversals
    ADD PRIMARY KEY (campaign_id, serial, use_no, redeemed_at),
    ADD FOREIGN KEY (campaign_id, serial, use_no, redeemed_at)
        REFERENCES redemptions (campaign_id, serial, use_no, redeemed_at);
ALTER TABLE ledger_transactions
    ADD PRIMARY KEY (id, redeemed_at),
    ADD UNIQUE (kind, campaign_id, serial, use_no, redeemed_at),
    ADD FOREIGN KEY (campaign_id, serial, use_no, redeemed_at)
        REFERENCES redemptions (campaign_id, serial, use_no, redeemed_at);
ALTER TABLE ledger_entries
    ADD FOREIGN KEY (transaction_id, redeemed_at) REFERENCES ledger_transactions;

DO $$
DECLARE
    statement text;
BEGIN
    FOR statement IN SELECT c.statement FROM carried_over c LOOP
        EXECUTE statement;
    END LOOP;
END
$$;

-- The ledger's rules, as migrations 002 and 005 made them.
CREATE TRIGGER ledger_entries_balance AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_statement_balances();
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
