-- crynux-worker schema, version 1.
-- One row per job in crynux.jobs; its history in crynux.job_events; every transaction we
-- ever signed in crynux.job_transactions; the generated files in crynux.job_results.
-- Applied by `crynux-worker migrate` (which records it in crynux.schema_migrations);
-- a DBA can also read and apply it by hand with psql.

CREATE SCHEMA IF NOT EXISTS crynux;

-- Wallets that pay for tasks. The next nonce is allocated here, under a row lock, so any
-- number of workers on any number of machines can share one wallet without nonce races.
CREATE TABLE crynux.wallets (
    address         text PRIMARY KEY CHECK (address ~ '^0x[0-9a-f]{40}$'),  -- lowercase hex
    chain_id        bigint NOT NULL,
    next_nonce      bigint NOT NULL CHECK (next_nonce >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE crynux.jobs (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind                text NOT NULL CHECK (kind IN ('sd', 'gpt')),
    -- The exact argument string: uploaded byte for byte to the relay; task_hash is its keccak-256.
    task_args           text NOT NULL,
    idempotency_key     text UNIQUE,
    priority            integer NOT NULL DEFAULT 0,        -- higher runs first

    -- Where the job is. status: pending (in the pipeline), succeeded, failed, cancelled.
    -- stage: the step it is at (or ended at): create -> upload -> poll -> fetch.
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    stage               text NOT NULL DEFAULT 'create'
                        CHECK (stage IN ('create', 'upload', 'poll', 'fetch')),
    run_at              timestamptz DEFAULT now(),         -- next due time; NULL once finished
    -- Claim order within a priority: work closest to done first (fetch, poll, upload, create), so
    -- a backlog of new jobs never delays results that are ready to be collected.
    stage_rank          smallint GENERATED ALWAYS AS (
                            CASE stage WHEN 'fetch' THEN 3 WHEN 'poll' THEN 2 WHEN 'upload' THEN 1 ELSE 0 END) STORED,
    stage_attempts      integer NOT NULL DEFAULT 0,        -- failed tries of the current stage
    stage_entered_at    timestamptz NOT NULL DEFAULT now(),
    cancel_requested_at timestamptz,

    -- Lease: a worker owns a due job until locked_until. lease_token grows on every claim and
    -- is checked when a stage completes, so a worker whose lease expired cannot overwrite.
    locked_by           text,
    locked_until        timestamptz,
    lease_token         bigint NOT NULL DEFAULT 0,

    -- Inputs that override the defaults derived from the arguments (NULL = derive).
    fee_wei_override    numeric(78, 0) CHECK (fee_wei_override >= 0),
    vram_limit_override integer CHECK (vram_limit_override > 0),
    task_type_override  integer,

    -- On-chain facts, filled in as the job proceeds.
    task_type           integer,                           -- 0 = Stable Diffusion, 1 = GPT
    task_hash           text,                              -- 0x keccak-256 of task_args
    cap                 integer CHECK (cap > 0),           -- number of results (num_images, or 1)
    vram_limit          integer,                           -- GB
    fee_wei             numeric(78, 0),                    -- value sent with createTask
    wallet_address      text,
    chain_id            bigint,
    tx_nonce            bigint,
    tx_hash             text,       -- the createTask transaction that was mined (or the latest sent)
    tx_block_number     bigint,
    task_id             bigint,     -- id assigned by the Task contract (TaskPending event)
    task_deadline       timestamptz,                       -- on-chain timeout of the task
    result_node         text,
    abort_reason        text,       -- reason from the contract's TaskAborted event

    -- When each step happened.
    submitted_at        timestamptz NOT NULL DEFAULT now(),
    tx_signed_at        timestamptz,
    tx_mined_at         timestamptz,   -- receipt seen: the task exists on chain (or reverted)
    args_uploaded_at    timestamptz,
    task_finished_at    timestamptz,   -- success or abort seen on chain
    results_stored_at   timestamptz,
    finished_at         timestamptz,   -- succeeded, failed or cancelled
    updated_at          timestamptz NOT NULL DEFAULT now(),

    -- Why the job failed (one sentence), and where `crynux-worker retry` restarts it: 'create'
    -- when the on-chain task is certainly dead (or never existed), else the stage that failed.
    last_error          text,
    retry_stage         text CHECK (retry_stage IN ('create', 'upload', 'poll', 'fetch')),

    CHECK ((status = 'pending') = (finished_at IS NULL)),
    CHECK (status <> 'pending' OR run_at IS NOT NULL)
);

-- Claiming: due, unfinished jobs in claim order. Leased rows are filtered on the fly.
CREATE INDEX jobs_due_idx ON crynux.jobs (priority DESC, stage_rank DESC, run_at) WHERE status = 'pending';
CREATE INDEX jobs_status_stage_idx ON crynux.jobs (status, stage);
CREATE INDEX jobs_task_id_idx ON crynux.jobs (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX jobs_locked_by_idx ON crynux.jobs (locked_by) WHERE locked_by IS NOT NULL;

-- Every transaction signed for a job, stored before it is broadcast. A createTask may have
-- several (re-priced replacements share one nonce); whichever is mined is the job's tx_hash.
CREATE TABLE crynux.job_transactions (
    tx_hash         text PRIMARY KEY,
    job_id          bigint NOT NULL REFERENCES crynux.jobs (id) ON DELETE CASCADE,
    purpose         text NOT NULL CHECK (purpose IN ('create_task', 'cancel_task')),
    wallet_address  text NOT NULL,
    nonce           bigint NOT NULL,
    gas_price_wei   numeric(78, 0) NOT NULL,   -- gasPrice, or maxFeePerGas for EIP-1559
    gas_limit       bigint NOT NULL,
    value_wei       numeric(78, 0) NOT NULL,
    raw_tx          bytea NOT NULL,
    signed_at       timestamptz NOT NULL DEFAULT now(),
    last_sent_at    timestamptz,
    send_count      integer NOT NULL DEFAULT 0,
    mined_block     bigint,
    mined_status    boolean                    -- receipt status; NULL while not mined
);
CREATE INDEX job_transactions_job_idx ON crynux.job_transactions (job_id);
CREATE UNIQUE INDEX job_transactions_nonce_idx
    ON crynux.job_transactions (wallet_address, nonce, tx_hash);

-- Append-only history: one row per change of stage or status, and per notable event.
CREATE TABLE crynux.job_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      bigint NOT NULL REFERENCES crynux.jobs (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    from_status text,
    from_stage  text,
    to_status   text NOT NULL,
    to_stage    text NOT NULL,
    detail      text NOT NULL DEFAULT '',
    worker      text
);
CREATE INDEX job_events_job_idx ON crynux.job_events (job_id, at);

-- Results: image i of an SD task (PNG) or the GPT response (JSON), stored as fetched.
CREATE TABLE crynux.job_results (
    job_id        bigint NOT NULL REFERENCES crynux.jobs (id) ON DELETE CASCADE,
    result_index  integer NOT NULL CHECK (result_index >= 0),
    content_type  text NOT NULL,
    data          bytea NOT NULL,
    size_bytes    integer GENERATED ALWAYS AS (octet_length(data)) STORED,
    sha256        bytea GENERATED ALWAYS AS (sha256(data)) STORED,
    stored_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, result_index)
);

-- A new job (or one put back in the queue) wakes idle workers at once.
CREATE FUNCTION crynux.notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('crynux_jobs', '');
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_notify_insert AFTER INSERT ON crynux.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION crynux.notify_jobs();

-- The submission API for backends: returns the job id. With an idempotency key, a second
-- call returns the existing job instead of creating another.
CREATE FUNCTION crynux.submit_job(
    p_kind              text,
    p_task_args         text,
    p_priority          integer DEFAULT 0,
    p_not_before        timestamptz DEFAULT NULL,
    p_idempotency_key   text DEFAULT NULL,
    p_fee_wei           numeric DEFAULT NULL,
    p_vram_limit        integer DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO crynux.jobs (kind, task_args, priority, run_at, idempotency_key,
                             fee_wei_override, vram_limit_override)
    VALUES (p_kind, p_task_args, coalesce(p_priority, 0), coalesce(p_not_before, now()),
            p_idempotency_key, p_fee_wei, p_vram_limit)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        SELECT id INTO v_id FROM crynux.jobs WHERE idempotency_key = p_idempotency_key;
    END IF;
    RETURN v_id;
END $$;

-- The first history row of every job, however it was inserted.
CREATE FUNCTION crynux.record_submission() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crynux.job_events (job_id, at, to_status, to_stage, detail)
    VALUES (NEW.id, NEW.submitted_at, NEW.status, NEW.stage, 'submitted');
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_record_submission AFTER INSERT ON crynux.jobs
    FOR EACH ROW EXECUTE FUNCTION crynux.record_submission();
