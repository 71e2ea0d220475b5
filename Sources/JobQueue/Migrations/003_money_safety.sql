-- crynux-worker schema, version 3: several wallets, bounded fee bumps, filled nonces, refunds.

-- A task evicted from the full on-chain queue ("Task fee is too low", no refund) is created
-- again, up to a limit; every paid fee stays visible in job_transactions and the history.
ALTER TABLE crynux.jobs ADD COLUMN recreations integer NOT NULL DEFAULT 0 CHECK (recreations >= 0);
-- Why the worker is cancelling the job's task on chain (for the refund), once it decided to.
ALTER TABLE crynux.jobs ADD COLUMN refund_reason text;

-- The tip of an EIP-1559 transaction (NULL for legacy ones); replacements raise it too.
ALTER TABLE crynux.job_transactions ADD COLUMN priority_fee_wei numeric(78, 0);
-- The node refused these bytes for good (e.g. "replacement transaction underpriced"); they are
-- not the job's latest transaction and are not sent again.
ALTER TABLE crynux.job_transactions ADD COLUMN refused_at timestamptz;
ALTER TABLE crynux.job_transactions ADD COLUMN refusal text;

-- Transactions now also fill a nonce that could not be used otherwise (a zero-value transfer
-- to the wallet itself), so that later transactions of the wallet are not stuck behind it.
ALTER TABLE crynux.job_transactions DROP CONSTRAINT job_transactions_purpose_check;
ALTER TABLE crynux.job_transactions ADD CONSTRAINT job_transactions_purpose_check
    CHECK (purpose IN ('create_task', 'cancel_task', 'fill_nonce'));
-- A fill may be signed by a wallet's keeper for no job in particular.
ALTER TABLE crynux.job_transactions ALTER COLUMN job_id DROP NOT NULL;
CREATE INDEX job_transactions_unmined_idx ON crynux.job_transactions (wallet_address, nonce) WHERE mined_block IS NULL;
