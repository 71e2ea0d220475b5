"""Result files the simulated nodes write (no running devnet needed)."""

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from devnetlib import results  # noqa: E402
from test_tasks import check_png  # noqa: E402


def test_result_bytes_marker_pads_every_image_to_a_valid_png():
    args = json.dumps({"base_model": "m", "prompt": "big devnet:result-bytes=250000", "task_config": {"num_images": 3}})
    files, onchain = results.task_results(7, 0, args)
    assert [len(f) for f in files] == [250000] * 3
    for f in files:
        check_png(f)  # CRCs hold and the image data is untouched
    assert onchain == b"".join(hashlib.sha256(f).digest()[:8] for f in files)
    # Without the marker, the same task's images are small and differ from the padded ones.
    plain, _ = results.task_results(7, 0, json.dumps({"prompt": "big", "task_config": {"num_images": 3}}))
    assert all(len(p) < 10000 for p in plain)
    assert all(f.startswith(p[:-12]) for f, p in zip(files, plain))


def test_result_bytes_marker_is_capped():
    args = json.dumps({"prompt": "devnet:result-bytes=999999999", "task_config": {"num_images": 1}})
    files, _ = results.task_results(1, 0, args)
    assert len(files[0]) == results.MAX_RESULT_BYTES
