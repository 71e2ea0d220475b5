-- crynux-worker schema, version 8: finished jobs by time, for the dashboard, the metrics and prune.

-- The dashboard's last hour, its recent failures, the finished-job gauges and prune's "older
-- than" all look at finished jobs by finished_at. Partial, so a pending job has no entry: a job
-- gets one entry when it finishes (an update that is not HOT anyway, since it leaves the due
-- index), and none of the stage machine's other writes touch it. Status and stage ride along so
-- the counts read the index alone.
CREATE INDEX jobs_finished_idx ON crynux.jobs (finished_at, status, stage) WHERE finished_at IS NOT NULL;
