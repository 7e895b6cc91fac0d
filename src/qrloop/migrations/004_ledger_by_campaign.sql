-- Campaign stats read the ledger by campaign.
CREATE INDEX ledger_transactions_campaign ON ledger_transactions (campaign_id, kind);
