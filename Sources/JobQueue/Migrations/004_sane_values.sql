-- crynux-worker schema, version 4: refuse values no job can have. A numeric 'NaN' passes
-- ">= 0" (NaN sorts above every number), so fees are bounded above by Infinity as well.
-- NOT VALID: rows written before are not rechecked (the worker fails an unreadable row with a
-- reason instead of stopping on it); every new or changed row is.
ALTER TABLE crynux.jobs
    ADD CONSTRAINT jobs_task_id_positive CHECK (task_id > 0) NOT VALID,
    ADD CONSTRAINT jobs_vram_limit_positive CHECK (vram_limit > 0) NOT VALID,
    ADD CONSTRAINT jobs_task_type_valid CHECK (task_type >= 0 AND task_type_override >= 0) NOT VALID,
    ADD CONSTRAINT jobs_chain_numbers_valid CHECK (tx_nonce >= 0 AND tx_block_number >= 0 AND chain_id > 0) NOT VALID,
    ADD CONSTRAINT jobs_fee_finite CHECK (fee_wei >= 0 AND fee_wei < 'Infinity') NOT VALID,
    ADD CONSTRAINT jobs_fee_override_finite CHECK (fee_wei_override < 'Infinity') NOT VALID,
    ADD CONSTRAINT jobs_hashes_valid CHECK (task_hash ~ '^0x[0-9a-f]{64}$' AND tx_hash ~ '^0x[0-9a-f]{64}$') NOT VALID,
    ADD CONSTRAINT jobs_wallet_valid CHECK (wallet_address ~ '^0x[0-9a-f]{40}$') NOT VALID;

ALTER TABLE crynux.job_transactions
    ADD CONSTRAINT job_transactions_numbers_valid CHECK (
        nonce >= 0 AND gas_limit > 0 AND gas_price_wei >= 0 AND gas_price_wei < 'Infinity'
        AND value_wei >= 0 AND value_wei < 'Infinity' AND priority_fee_wei >= 0 AND priority_fee_wei < 'Infinity') NOT VALID;
