-- Lists: every list is a merchant's rows newest first, read by keyset (`id < cursor ORDER BY id
-- DESC LIMIT n`), so each gets an index on (owner, key) that hands the page over in order and
-- stops after it, however deep the page. Single-column indexes they replace served equality
-- only (and the composite serves the same lookups).

DROP INDEX stores_merchant;
-- Unique so that terminals can reference (merchant_id, id) below.
CREATE UNIQUE INDEX stores_merchant_id ON stores (merchant_id, id);

DROP INDEX campaigns_merchant;
CREATE INDEX campaigns_merchant_id ON campaigns (merchant_id, id);

CREATE INDEX orders_merchant_id ON orders (merchant_id, id);
-- A campaign's orders are asked for with their merchant too (the list never trusts the
-- campaign id alone). The planner takes the two conditions as independent and so expects a
-- tenth of the rows (a merchant's share), and would rather sort them than read the index in
-- order; the statistics tell it the campaign decides the merchant, and the index holds both.
DROP INDEX orders_campaign;
CREATE INDEX orders_campaign_merchant_id ON orders (campaign_id, merchant_id, id);
CREATE STATISTICS orders_campaign_decides_merchant (dependencies)
    ON campaign_id, merchant_id FROM orders;

DROP INDEX api_keys_merchant;
CREATE INDEX api_keys_merchant_id ON api_keys (merchant_id, id);

CREATE INDEX webhook_endpoints_merchant_id ON webhook_endpoints (merchant_id, id);

-- A terminal carries its merchant, so a merchant's terminals are one index range (not a join
-- through every store and a sort). The foreign key pins it to the store's merchant.
ALTER TABLE terminals ADD COLUMN merchant_id bigint;
UPDATE terminals t SET merchant_id = s.merchant_id FROM stores s WHERE s.id = t.store_id;
ALTER TABLE terminals
    ALTER COLUMN merchant_id SET NOT NULL,
    ADD CONSTRAINT terminals_store_of_merchant
        FOREIGN KEY (merchant_id, store_id) REFERENCES stores (merchant_id, id);
CREATE INDEX terminals_merchant_id ON terminals (merchant_id, id);
DROP INDEX terminals_store;
CREATE INDEX terminals_store_id ON terminals (store_id, id);

-- Pool ids are random text, so pools get a creation sequence to page by (existing pools are
-- numbered in the order the table holds them).
ALTER TABLE pools ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX pools_merchant_seq ON pools (merchant_id, seq);
