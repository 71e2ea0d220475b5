-- One job per on-chain task: two rows naming the same task of one chain would both be followed,
-- fetched and counted as paid. Adoption already refuses a task another job holds; this makes it
-- a rule of the schema (per profile and chain: task ids restart on every chain).
CREATE UNIQUE INDEX jobs_task_id_unique ON crynux.jobs (network_profile, chain_id, task_id)
    WHERE task_id IS NOT NULL AND chain_id IS NOT NULL;
