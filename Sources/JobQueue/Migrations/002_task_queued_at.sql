-- crynux-worker schema, version 2.
-- When a job's task was first seen waiting in the on-chain queue for free nodes. Before, the
-- worker searched the history text for this; the history is for people, not for state.
ALTER TABLE crynux.jobs ADD COLUMN task_queued_at timestamptz;
