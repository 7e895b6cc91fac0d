-- GET /v1/redemptions reads a merchant's redemptions newest first, a page at a time: each
-- filter it takes drives one of these, scanned backwards from the page's cursor (or its
-- `until`) and stopped after the page. Ties on redeemed_at (a millisecond) are ordered by an
-- incremental sort of the few rows that share it, so the time is the last column each needs.
-- The issuer side reads by campaign: a merchant's campaigns are few, each scanned alike.
-- benchmarks/explain_lists.py shows the plans on 1 M redemptions.
CREATE INDEX redemptions_campaign_time ON redemptions (campaign_id, redeemed_at);
CREATE INDEX redemptions_acceptor_time ON redemptions (accepting_merchant_id, redeemed_at);
CREATE INDEX redemptions_store_time ON redemptions (store_id, redeemed_at);
CREATE INDEX redemptions_terminal_time ON redemptions (terminal_id, redeemed_at);
