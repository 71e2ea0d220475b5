-- crynux-worker schema, version 8: indexes for what reads finished jobs and approvals.

-- The dashboard's last hour, its recent failures, the finished-job gauges and prune's "older
-- than" all look at finished jobs by finished_at. Partial, so a pending job has no entry: a job
-- gets one entry when it finishes (an update that is not HOT anyway, since it leaves the due
-- index), and none of the stage machine's other writes touch it. Status and stage ride along so
-- the counts read the index alone.
CREATE INDEX jobs_finished_idx ON crynux.jobs (finished_at, status, stage) WHERE finished_at IS NOT NULL;

-- Hydrogen: before signing an approval the store checks, with the wallet row locked, that no
-- other approval of the wallet was signed since the stage looked. A wallet has few approvals
-- and many transactions: this keeps that check off the rest.
CREATE INDEX job_transactions_approvals_idx ON crynux.job_transactions (wallet_address, signed_at) WHERE purpose = 'approve';
