-- crynux-worker schema, version 5: what a claim and a stage write cost PostgreSQL.

-- The due index carries the whole claim order, id included. Without id, jobs submitted in
-- one statement (one run_at) formed a single group that every claim sorted in full: 5 ms
-- per claim with 5,000 jobs due, growing with the backlog. Now a claim reads LIMIT entries.
CREATE INDEX jobs_claim_idx ON crynux.jobs (priority DESC, stage_rank DESC, run_at, id) WHERE status = 'pending';
DROP INDEX crynux.jobs_due_idx;
ALTER INDEX crynux.jobs_claim_idx RENAME TO jobs_due_idx;

-- A claim writes only lease columns (locked_by, locked_until, lease_token). With none of them
-- in an index and free room on the page, PostgreSQL updates the row in place (HOT): no new
-- index entries and less WAL. The lease index served only graceful shutdown and `status`,
-- which read the few pending rows through the due index instead; status and stage counts
-- are an occasional operator query, not worth an index entry on every stage change.
DROP INDEX crynux.jobs_locked_by_idx;
DROP INDEX crynux.jobs_status_stage_idx;

-- Room for an updated row version on its own page, which HOT needs. A job's row is rewritten
-- a dozen times in its life; 70 % keeps about three versions' worth free per page.
ALTER TABLE crynux.jobs SET (fillfactor = 70);
