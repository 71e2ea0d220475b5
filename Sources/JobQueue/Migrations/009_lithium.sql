-- crynux-worker schema, version 9: the live network (Lithium). A task is a signed request to the
-- Relay, paid from the wallet's Relay Account and validated by the worker with a VRF proof; a job
-- may pay for up to three Relay tasks when the VRF selects its task for a validation group.

ALTER TABLE crynux.jobs DROP CONSTRAINT jobs_network_profile_check;
ALTER TABLE crynux.jobs ADD CONSTRAINT jobs_network_profile_check
    CHECK (network_profile IN ('era-d', 'hydrogen', 'lithium'));

-- The validate stage sits between poll and fetch. stage_rank is generated from the stage, so it
-- is made again (PostgreSQL 15 cannot change a generated expression in place); the due index
-- goes with it and is rebuilt as version 5 defined it.
ALTER TABLE crynux.jobs DROP CONSTRAINT jobs_stage_check;
ALTER TABLE crynux.jobs ADD CONSTRAINT jobs_stage_check CHECK (stage IN ('create', 'upload', 'poll', 'validate', 'fetch'));
ALTER TABLE crynux.jobs DROP CONSTRAINT jobs_retry_stage_check;
ALTER TABLE crynux.jobs ADD CONSTRAINT jobs_retry_stage_check
    CHECK (retry_stage IN ('create', 'upload', 'poll', 'validate', 'fetch'));
ALTER TABLE crynux.jobs DROP COLUMN stage_rank;
ALTER TABLE crynux.jobs ADD COLUMN stage_rank smallint GENERATED ALWAYS AS (
    CASE stage WHEN 'fetch' THEN 4 WHEN 'validate' THEN 3 WHEN 'poll' THEN 2 WHEN 'upload' THEN 1 ELSE 0 END) STORED;
CREATE INDEX jobs_due_idx ON crynux.jobs (priority DESC, stage_rank DESC, run_at, id) WHERE status = 'pending';

-- The job's current Relay task (its task_id_commitment). What the Relay charged and refunded
-- is summed from the job's relay_tasks rows (job_history below).
ALTER TABLE crynux.jobs ADD COLUMN relay_commitment text CHECK (relay_commitment ~ '^0x[0-9a-f]{64}$');

-- Every task a job created on the Relay: one row per (attempt, member), written before the
-- create request is sent and kept after the job ends. member 0 is the job's task; 1 and 2 the
-- two more a validation group needs (same task_id, their own nonces). A retry after a dead task
-- is a new attempt: a new task_id. task_id and nonce come from a keyed hash of the wallet key
-- and the job's identity, so a job whose rows went back in time (a restore, a lagging replica)
-- sends the same commitment again and meets "Task already uploaded" instead of paying twice.
CREATE TABLE crynux.relay_tasks (
    commitment        text PRIMARY KEY CHECK (commitment ~ '^0x[0-9a-f]{64}$'),
    job_id            bigint NOT NULL REFERENCES crynux.jobs (id) ON DELETE CASCADE,
    attempt           integer NOT NULL CHECK (attempt >= 0),
    member            smallint NOT NULL CHECK (member BETWEEN 0 AND 2),
    wallet_address    text NOT NULL CHECK (wallet_address ~ '^0x[0-9a-f]{40}$'),
    task_id           text NOT NULL CHECK (task_id ~ '^0x[0-9a-f]{64}$'),
    nonce             text NOT NULL CHECK (nonce ~ '^0x[0-9a-f]{64}$'),
    -- The create request as sent (the arguments are the job's task_args).
    task_type         smallint NOT NULL CHECK (task_type IN (0, 1)),
    task_fee_wei      numeric(78, 0) NOT NULL CHECK (task_fee_wei >= 0 AND task_fee_wei < 'Infinity'),
    min_vram          bigint NOT NULL CHECK (min_vram >= 0),
    required_gpu      text NOT NULL DEFAULT '',
    required_gpu_vram bigint NOT NULL DEFAULT 0 CHECK (required_gpu_vram >= 0),
    task_version      text NOT NULL,
    task_size         bigint NOT NULL CHECK (task_size >= 0),
    model_ids         text[] NOT NULL,
    prepared_at       timestamptz NOT NULL DEFAULT now(),
    -- What the Relay said: created (or "Task already uploaded"), and the task as last read.
    created_at        timestamptz,
    sequence          bigint,
    sampling_seed     text CHECK (sampling_seed ~ '^0x[0-9a-f]{64}$'),
    relay_status      smallint CHECK (relay_status BETWEEN 0 AND 11),
    abort_reason      smallint CHECK (abort_reason BETWEEN 0 AND 10),
    selected_node     text,
    relay_timeout     bigint,
    score_ready_at    timestamptz,
    -- member 0: the VRF proof over its sampling seed (81 bytes) and whether it selects the task
    -- for a validation group; stored before the worker acts on it.
    vrf_proof         text CHECK (vrf_proof ~ '^0x[0-9a-f]{162}$'),
    vrf_selected      boolean,
    validated_at      timestamptz,
    cancel_sent_at    timestamptz,
    ended_at          timestamptz,
    UNIQUE (job_id, attempt, member)
);
CREATE INDEX relay_tasks_wallet_idx ON crynux.relay_tasks (wallet_address, prepared_at);

-- One row per job as before, with Lithium's money: the fee is what the Relay charged the job's
-- tasks (a group counts all three); a task refunded (an abort other than a creator-validation
-- timeout, or a group member refunded) gave its fee back.
CREATE OR REPLACE VIEW crynux.job_history AS
SELECT j.id AS job_id,
       j.kind,
       j.network_profile,
       j.status,
       j.stage AS last_stage,
       CASE j.status WHEN 'failed' THEN coalesce('aborted: ' || j.abort_reason, 'failed') ELSE j.status END AS outcome,
       j.last_error AS failure_reason,
       j.wallet_address AS wallet,
       j.task_id,
       j.cap AS results_wanted,
       j.submitted_at,
       j.tx_signed_at,
       j.tx_mined_at,
       j.args_uploaded_at,
       j.task_finished_at,
       j.results_stored_at,
       j.finished_at,
       j.tx_mined_at - j.submitted_at AS create_duration,
       j.args_uploaded_at - j.tx_mined_at AS upload_duration,
       j.task_finished_at - j.args_uploaded_at AS task_duration,
       j.results_stored_at - j.task_finished_at AS fetch_duration,
       j.finished_at - j.submitted_at AS total_duration,
       CASE WHEN j.network_profile = 'lithium' THEN coalesce(r.charged, 0)::numeric(78, 0) ELSE coalesce(j.token_fee_wei, j.fee_wei) END AS fee_wei,
       CASE WHEN j.network_profile = 'lithium' THEN coalesce(r.refunded, 0)::numeric(78, 0)
            WHEN j.abort_reason IN ('Task Cancelled', 'Task result illegal') THEN coalesce(j.token_fee_wei, j.fee_wei) ELSE 0 END
           AS refunded_wei,
       j.refund_reason,
       j.recreations,
       j.relay_commitment,
       coalesce(r.tasks, 0) AS relay_tasks
FROM crynux.jobs j
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE t.created_at IS NOT NULL) AS tasks,
           sum(t.task_fee_wei) FILTER (WHERE t.created_at IS NOT NULL) AS charged,
           sum(t.task_fee_wei) FILTER (WHERE t.relay_status = 10 OR (t.relay_status = 9 AND t.abort_reason <> 8)) AS refunded
    FROM crynux.relay_tasks t WHERE t.job_id = j.id
) r ON j.network_profile = 'lithium';

-- Migration 7 creates the analysts' role when it may; without it a DBA grants this too.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crynux_analyst') THEN
        GRANT SELECT ON crynux.relay_tasks TO crynux_analyst;
    END IF;
END $$;
