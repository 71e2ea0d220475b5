-- A wallet whose records the database lost (a restore, a failover to a lagging replica): the chain
-- has used nonces from reconcile_from on that the database does not know. Until a worker has
-- adopted the tasks those lost transactions created (and raised next_nonce past them), no worker
-- signs a new transaction for any wallet: an unsigned job whose lost task is on chain must not pay
-- for a second one.
ALTER TABLE crynux.wallets
    ADD COLUMN reconcile_from bigint CHECK (reconcile_from >= 0),
    ADD COLUMN reconcile_requested_at timestamptz;
COMMENT ON COLUMN crynux.wallets.reconcile_from IS
    'Lost records: the first nonce the chain used that the database may not know; NULL when reconciled. While any wallet has one, no new transaction is signed.';
