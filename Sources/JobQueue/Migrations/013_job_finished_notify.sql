-- A backend learns that its job ended without polling: every transition to succeeded, failed or
-- cancelled sends NOTIFY crynux_job_finished with a small JSON payload
--   {"id": 42, "status": "succeeded", "kind": "sd", "idempotency_key": "order-7", "results": 2}
-- (idempotency_key only when set and at most 1000 bytes: a NOTIFY payload is limited to 8000).
-- The trigger is deferred to the commit, so that a listener never hears of a change that rolled
-- back, the results written in the same transaction are counted, and notifications arrive in
-- the order of the commits. It reads the row as committed: a job that ended and went back to
-- pending within one transaction is not announced.
CREATE FUNCTION crynux.notify_job_finished() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_job record;
BEGIN
    SELECT id, status, kind, idempotency_key INTO v_job FROM crynux.jobs WHERE id = NEW.id;
    IF NOT FOUND OR v_job.status NOT IN ('succeeded', 'failed', 'cancelled') THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('crynux_job_finished', json_strip_nulls(json_build_object(
        'id', v_job.id,
        'status', v_job.status,
        'kind', v_job.kind,
        'idempotency_key', CASE WHEN octet_length(v_job.idempotency_key) <= 1000 THEN v_job.idempotency_key END,
        'results', (SELECT count(*) FROM crynux.job_results r WHERE r.job_id = v_job.id)))::text);
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER jobs_notify_finished AFTER UPDATE OF status ON crynux.jobs
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION crynux.notify_job_finished();
