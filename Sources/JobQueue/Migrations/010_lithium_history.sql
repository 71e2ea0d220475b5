-- job_history for Lithium jobs: create_duration and upload_duration were empty (no transaction
-- is mined on Lithium). A failed Lithium job's outcome reads "aborted: <the Relay's reason>" since
-- the worker records the reason in jobs.abort_reason (no schema change needed for that).
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
       -- Lithium creates and uploads in one request: create is submit to the Relay's answer, and
       -- there is no upload of its own (0, not unknown).
       CASE WHEN j.network_profile = 'lithium' THEN j.args_uploaded_at - j.submitted_at
            ELSE j.tx_mined_at - j.submitted_at END AS create_duration,
       CASE WHEN j.network_profile = 'lithium' THEN CASE WHEN j.args_uploaded_at IS NOT NULL THEN interval '0' END
            ELSE j.args_uploaded_at - j.tx_mined_at END AS upload_duration,
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
