"""Deterministic task results: PNG images for SD, a gpt-task response for GPT."""

from __future__ import annotations

import hashlib
import json
import random
import re
import struct
import zlib

IMAGE_SIZE = 64


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_image(task_id: int, index: int) -> bytes:
    """A valid 64x64 RGB PNG whose pixels derive from (task_id, index).

    A colour gradient plus a little noise: distinct per image and a few KB.
    """
    seed = hashlib.sha256(f"crynux-devnet image {task_id} {index}".encode()).digest()
    rng = random.Random(seed)
    r0, g0, b0 = seed[0], seed[1], seed[2]
    rows = bytearray()
    for y in range(IMAGE_SIZE):
        pixels = bytearray()
        for x in range(IMAGE_SIZE):
            n = rng.randrange(4)
            pixels += bytes(((r0 + 3 * x + n) & 0xFF, (g0 + 3 * y) & 0xFF, (b0 + x + y + n) & 0xFF))
        # PNG filter 1 (Sub): store each byte minus the same channel of the
        # pixel to its left, which turns the gradient into small repeats
        rows.append(1)
        rows += bytes((pixels[i] - (pixels[i - 3] if i >= 3 else 0)) & 0xFF for i in range(len(pixels)))
    header = struct.pack(">IIBBBBB", IMAGE_SIZE, IMAGE_SIZE, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + _chunk(b"IEND", b"")


# Per-task marker: every image of the task is padded to this many bytes (for memory benchmarks).
RESULT_BYTES_MARKER = re.compile(r"devnet:result-bytes=(\d{1,9})")
MAX_RESULT_BYTES = 64 << 20


def padded_png(png: bytes, size: int) -> bytes:
    """The same image with a private ancillary chunk ("deVp": viewers skip it) before IEND, so
    that the file is `size` bytes long; unchanged when it is already that big."""
    extra = size - len(png) - 12  # a chunk costs 12 bytes besides its payload
    if extra < 0:
        return png
    seed = hashlib.sha256(png).digest()
    payload = (seed * (extra // len(seed) + 1))[:extra]
    iend = len(png) - 12
    return png[:iend] + _chunk(b"deVp", payload) + png[iend:]


def gpt_response(task_id: int, args: dict) -> bytes:
    """0.json as a node writes it: json.dump (default separators, ASCII) of a
    gpt-task GPTTaskResponse."""
    messages = args.get("messages") or []
    prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    content = f"Devnet answer to task {task_id}: " + hashlib.sha256(prompt.encode()).hexdigest()[:16]
    prompt_tokens = max(1, len(prompt.split()))
    completion_tokens = len(content.split())
    response = {
        "model": args.get("model", ""),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }
    return json.dumps(response).encode()


def task_results(task_id: int, task_type: int, task_args: str) -> tuple[list[bytes], bytes]:
    """(files, on-chain result bytes). The result stands in for the real pHash /
    SHA-256: 8 bytes per image (SD) or the SHA-256 of 0.json (GPT)."""
    try:
        args = json.loads(task_args)
    except ValueError:
        args = {}
    if task_type == 0:
        count = (args.get("task_config") or {}).get("num_images", 6)
        files = [png_image(task_id, i) for i in range(int(count))]
        marker = RESULT_BYTES_MARKER.search(task_args)
        if marker:
            size = min(int(marker.group(1)), MAX_RESULT_BYTES)
            files = [padded_png(f, size) for f in files]
        return files, b"".join(hashlib.sha256(f).digest()[:8] for f in files)
    body = gpt_response(task_id, args)
    return [body], hashlib.sha256(body).digest()
