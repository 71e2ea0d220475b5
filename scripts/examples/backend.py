"""A backend, end to end: submit a Stable Diffusion job, wait for it without polling, save its images.

    scripts/examples/backend OUT_DIR [PROMPT]     (DATABASE_URL names the database; a worker runs)

Prints the job id, then one line per image written. Exits 0 when the job succeeded, 1 when it
failed or was cancelled (its reason on stderr), 2 when it did not end within the timeout.
"""
import json
import os
import pathlib
import sys
import time

import psycopg

TIMEOUT_S = float(os.environ.get("BACKEND_TIMEOUT_S", "600"))


def main() -> int:
    out = pathlib.Path(sys.argv[1])
    prompt = sys.argv[2] if len(sys.argv) > 2 else "a lighthouse at dusk"
    args = json.dumps({"base_model": "crynux-network/sdxl-turbo", "prompt": prompt,
                       "task_config": {"num_images": 2, "steps": 1, "seed": 7}})
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        # Listen first, then look: a job that ends between the two is still seen.
        conn.execute("LISTEN crynux_job_finished")
        job_id = conn.execute("SELECT crynux.submit_job('sd', %s, p_idempotency_key => %s)",
                              (args, f"example-{prompt}")).fetchone()[0]
        print(f"job {job_id}", flush=True)
        status = conn.execute("SELECT status FROM crynux.jobs WHERE id = %s", (job_id,)).fetchone()[0]
        deadline = time.monotonic() + TIMEOUT_S
        while status == "pending" and time.monotonic() < deadline:
            for note in conn.notifies(timeout=deadline - time.monotonic()):
                finished = json.loads(note.payload)
                if finished.get("id") == job_id:
                    status = finished["status"]
                    break
        if status == "pending":
            print(f"job {job_id} still pending after {TIMEOUT_S:.0f} s", file=sys.stderr)
            return 2
        if status != "succeeded":
            reason = conn.execute("SELECT last_error FROM crynux.jobs WHERE id = %s", (job_id,)).fetchone()[0]
            print(f"job {job_id} {status}: {reason}", file=sys.stderr)
            return 1
        out.mkdir(parents=True, exist_ok=True)
        for index, data in conn.execute(
                "SELECT result_index, data FROM crynux.job_results WHERE job_id = %s ORDER BY result_index", (job_id,)):
            path = out / f"job-{job_id}-{index}.png"
            path.write_bytes(data)
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
