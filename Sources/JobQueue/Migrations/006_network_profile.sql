-- crynux-worker schema, version 6: which network generation a job runs on, and what the
-- Hydrogen network (era B) adds to a job's record.

-- The profile is set when the job's first transaction is signed. A backend may set it at
-- insert to pin a job to one profile; a job without one goes to any worker.
ALTER TABLE crynux.jobs
    ADD COLUMN network_profile text CHECK (network_profile IN ('era-d', 'hydrogen')),
    -- Hydrogen: the CNX the Task contract pulled for the task (its Transfer in the receipt).
    -- Era D's fee is fee_wei, paid as the createTask's value.
    ADD COLUMN token_fee_wei numeric(78, 0) CHECK (token_fee_wei >= 0 AND token_fee_wei < 'Infinity'),
    -- Hydrogen: the approval transaction this job signed because the allowance was short.
    ADD COLUMN approval_tx_hash text CHECK (approval_tx_hash ~ '^0x[0-9a-f]{64}$');

-- Every job signed before this version ran on era D, the only profile there was.
UPDATE crynux.jobs SET network_profile = 'era-d' WHERE wallet_address IS NOT NULL;

-- An ERC20 approve(task contract, amount) is a transaction of its job like any other.
ALTER TABLE crynux.job_transactions DROP CONSTRAINT job_transactions_purpose_check;
ALTER TABLE crynux.job_transactions ADD CONSTRAINT job_transactions_purpose_check
    CHECK (purpose IN ('create_task', 'cancel_task', 'fill_nonce', 'approve'));
