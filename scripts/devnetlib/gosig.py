"""The relay's request-signature check (crynux-relay@969e500 validate_signature.go).

    dataBytes = json.Marshal(input without timestamp/signature)
    hash      = keccak256(dataBytes || decimal(timestamp))      (no prefix)
    sig       = hex.DecodeString(signature[2:])                 (first 2 chars dropped blindly)
    reject |now - timestamp| > 60
    pub       = crypto.SigToPub(hash, sig)     -> needs 65 bytes, v (recovery id) < 4
    ok        = crypto.VerifySignature(pub, hash, sig[:64])  -> low-S only
Recovery uses coincurve (libsecp256k1), independent of the client under test.
"""

from __future__ import annotations

import re
import time

from coincurve import PublicKey
from eth_utils import keccak, to_checksum_address

_HEX = re.compile(r"[0-9a-fA-F]*")
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class SignaturePanic(Exception):
    """Go would panic (signature shorter than 2 chars): gin answers 500."""


def recover_signers(payloads: list[bytes], timestamp: int, signature: str, now: int | None = None) -> list[str] | None:
    """Checksummed signer addresses (one per payload), or None for "Invalid signature".

    `payloads` are alternative encodings of the same input: normally one; two
    when the \\b/\\f escaping of the relay's Go version matters. The caller
    treats the request as signed by X if X is among the results.
    """
    if len(signature) < 2:
        raise SignaturePanic("slice bounds out of range")
    digits = signature[2:]
    if len(digits) % 2 or not _HEX.fullmatch(digits):
        return None  # hex.DecodeString error
    sig = bytes.fromhex(digits)
    now = int(time.time()) if now is None else now
    if abs(now - timestamp) > 60:
        return None
    if len(sig) != 65 or sig[64] >= 4:
        return None  # SigToPub: wrong length / recovery id (27/28 end here)
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    # VerifySignature: r, s in range and s in the lower half (no malleable sigs)
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_N // 2):
        return None
    signers = []
    for payload in payloads:
        digest = keccak(payload + str(timestamp).encode())
        try:
            pub = PublicKey.from_signature_and_message(sig, digest, hasher=None)
        except Exception:
            return None
        signers.append(to_checksum_address(keccak(pub.format(compressed=False)[1:])[12:]))
    return signers
