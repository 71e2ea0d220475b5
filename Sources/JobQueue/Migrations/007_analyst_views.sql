-- crynux-worker schema, version 7: what analysts query, and a read-only role to query it with.

-- One row per job: when each step happened and how long it took, what it cost, how it ended.
-- The fee is what the task cost: era D's createTask value, or the CNX Hydrogen's contract pulled.
-- A task cancelled on chain ("Task Cancelled") or judged illegal ("Task result illegal") sent its
-- fee back (an era-D cancel of a running task keeps a share for the nodes it blocked).
CREATE VIEW crynux.job_history AS
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
       coalesce(j.token_fee_wei, j.fee_wei) AS fee_wei,
       CASE WHEN j.abort_reason IN ('Task Cancelled', 'Task result illegal') THEN coalesce(j.token_fee_wei, j.fee_wei) ELSE 0 END
           AS refunded_wei,
       j.refund_reason,
       j.recreations
FROM crynux.jobs j;

-- One row per day (of submission) and kind: volume, success rate among finished jobs, duration
-- percentiles of succeeded jobs, fees put on chain and fees that came back.
CREATE VIEW crynux.daily_summary AS
SELECT (h.submitted_at AT TIME ZONE 'UTC')::date AS day,
       h.kind,
       count(*) AS jobs,
       count(*) FILTER (WHERE h.status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE h.status = 'failed') AS failed,
       count(*) FILTER (WHERE h.status = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE h.status = 'pending') AS pending,
       round(count(*) FILTER (WHERE h.status = 'succeeded')::numeric
             / nullif(count(*) FILTER (WHERE h.status IN ('succeeded', 'failed')), 0), 4) AS success_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM h.total_duration))
           FILTER (WHERE h.status = 'succeeded') AS p50_seconds,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM h.total_duration))
           FILTER (WHERE h.status = 'succeeded') AS p95_seconds,
       coalesce(sum(h.fee_wei), 0) AS fees_wei,
       coalesce(sum(h.refunded_wei), 0) AS refunded_wei
FROM crynux.job_history h
GROUP BY 1, 2;

-- The read-only role analysts log in through (a role with LOGIN granted this one, or this one
-- given LOGIN and a password by a DBA). Long statements and idle transactions are cut short: on
-- the primary they would hold back vacuum of the hot jobs table. Roles belong to the whole
-- cluster and need CREATEROLE: a migrating user without it skips this with a notice, and a DBA
-- runs the same statements.
DO $$
DECLARE
    created boolean := false;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crynux_analyst') THEN
        IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            RAISE NOTICE 'crynux_analyst not created: % may not create roles', current_user;
            RETURN;
        END IF;
        -- Another database of the cluster may be migrating at the same moment.
        BEGIN
            CREATE ROLE crynux_analyst NOLOGIN;
            created := true;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
        IF created THEN
            ALTER ROLE crynux_analyst SET statement_timeout = '60s';
            ALTER ROLE crynux_analyst SET idle_in_transaction_session_timeout = '60s';
            ALTER ROLE crynux_analyst SET default_transaction_read_only = on;
        END IF;
    END IF;
    GRANT USAGE ON SCHEMA crynux TO crynux_analyst;
    GRANT SELECT ON crynux.jobs, crynux.job_events, crynux.job_transactions, crynux.job_results, crynux.wallets,
                    crynux.job_history, crynux.daily_summary TO crynux_analyst;
END $$;
