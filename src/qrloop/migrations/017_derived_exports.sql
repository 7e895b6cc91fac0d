-- Exports are derived on demand from (campaign, serial, key): no file, no shared folder. The
-- order keeps what makes a re-download identical and verifiable.
ALTER TABLE orders
    -- The claim links' base (`<public URL>/c/`) when the order was placed: every export of the
    -- order uses it, whatever the serving process's QRLOOP_PUBLIC_URL says later. NULL for
    -- older orders, which use the serving process's.
    ADD COLUMN claim_base text,
    -- SHA-256 of the CSV export, set by the signer as the order becomes done; served as the
    -- export's ETag and Repr-Digest. NULL until then, and for orders done before this.
    ADD COLUMN export_sha256 bytea CHECK (octet_length(export_sha256) = 32);

COMMENT ON COLUMN orders.export_bytes IS
    'Length of the CSV export holding exactly `done` codes (header included).';
-- merchant_quotas.export_bytes is no longer read (there are no export files to bound); it
-- stays for processes of the previous release during a rolling upgrade.
COMMENT ON COLUMN merchant_quotas.export_bytes IS 'Unused since migration 017.';
