-- Spending caps every worker enforces together: a budget is a limit per rolling window, for one
-- wallet or (wallet_address NULL) for all of them. A payment is checked against every budget
-- that covers its wallet with those budget rows locked, at the moment it is signed (a createTask)
-- or stored before it is sent (a Lithium Relay task), so that no number of workers passes one.
CREATE TABLE crynux.budgets (
    id             integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wallet_address text CHECK (wallet_address ~ '^0x[0-9a-f]{40}$'),
    window_seconds integer NOT NULL CHECK (window_seconds BETWEEN 1 AND 31622400),
    limit_wei      numeric(78, 0) NOT NULL CHECK (limit_wei > 0 AND limit_wei < 'Infinity'),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (wallet_address, window_seconds)
);

-- Hydrogen: the CNX a createTask commits besides its gas (the value is 0 there).
ALTER TABLE crynux.job_transactions ADD COLUMN token_fee_wei numeric(78, 0)
    CHECK (token_fee_wei >= 0 AND token_fee_wei < 'Infinity');
CREATE INDEX job_transactions_signed_idx ON crynux.job_transactions (signed_at) WHERE purpose = 'create_task';
CREATE INDEX relay_tasks_prepared_idx ON crynux.relay_tasks (prepared_at);

-- What was committed to be spent from p_since on, one row per payment, less what came back:
--   era D / Hydrogen: one payment per wallet nonce a createTask was signed at, at its first
--     signature, worth its costliest version (value + gas limit × price, and Hydrogen's CNX);
--     once mined, the mined one's; a revert or a refund (the task cancelled, or its result
--     illegal) leaves the gas only; nothing while every version was refused, or once the job no
--     longer waits for a createTask that was never mined (its nonce filled or used otherwise).
--     A replacement signed in the window for a createTask signed before it counts in full
--     (over-counting only delays).
--   Lithium: one payment per Relay task, at its preparation (stored before it is sent), worth
--     its fee; nothing once refunded (EndGroupRefund, or aborted with a refund), or once its job
--     ended without the Relay having created it.
CREATE FUNCTION crynux.payments_since(p_since timestamptz)
RETURNS TABLE (at timestamptz, wallet_address text, job_id bigint, amount_wei numeric, source text)
LANGUAGE sql STABLE AS $$
    WITH nonces AS (
        SELECT t.wallet_address, t.nonce, min(t.signed_at) AS at, min(t.job_id) AS job_id,
               max(t.value_wei + t.gas_limit::numeric * t.gas_price_wei + coalesce(t.token_fee_wei, 0)) AS committed,
               bool_and(t.refused_at IS NOT NULL) AS all_refused,
               max(t.tx_hash) FILTER (WHERE t.mined_block IS NOT NULL) AS mined_hash
        FROM crynux.job_transactions t
        WHERE t.purpose = 'create_task' AND t.signed_at >= p_since
        GROUP BY t.wallet_address, t.nonce
    )
    SELECT n.at, n.wallet_address, n.job_id,
           CASE WHEN m.tx_hash IS NULL THEN n.committed
                WHEN NOT coalesce(m.mined_status, true)
                  OR (j.tx_hash = m.tx_hash AND j.abort_reason IN ('Task Cancelled', 'Task result illegal'))
                    THEN m.gas_limit::numeric * m.gas_price_wei
                ELSE m.value_wei + m.gas_limit::numeric * m.gas_price_wei + coalesce(m.token_fee_wei, 0) END,
           'create_task'
    FROM nonces n
    LEFT JOIN crynux.job_transactions m ON m.tx_hash = n.mined_hash
    LEFT JOIN crynux.jobs j ON j.id = n.job_id
    WHERE NOT n.all_refused
      AND (m.tx_hash IS NOT NULL OR (j.status = 'pending' AND j.tx_nonce = n.nonce))
    UNION ALL
    SELECT r.prepared_at, r.wallet_address, r.job_id, r.task_fee_wei, 'relay_task'
    FROM crynux.relay_tasks r JOIN crynux.jobs j ON j.id = r.job_id
    WHERE r.prepared_at >= p_since
      AND NOT (coalesce(r.relay_status, -1) = 10 OR (coalesce(r.relay_status, -1) = 9 AND coalesce(r.abort_reason, 8) <> 8))
      AND (r.created_at IS NOT NULL OR j.status = 'pending')
$$;
