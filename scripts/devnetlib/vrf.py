"""ECVRF-SECP256K1-SHA256-TAI as the Crynux relay verifies it: vechain/go-ecvrf at
96fa0442e765 (the version crynux-relay's go.mod pins), Secp256k1Sha256Tai.

Layout (IETF draft-irtf-cfrg-vrf-06, not RFC 9381: no trailing 0x00 in the hashes and
the public key is not part of the challenge), suite byte 0xFE, points SEC1-compressed:

    H     = first valid point 0x02 || SHA256(FE 01 || pk33 || alpha || ctr), ctr = 0..255
    k     = RFC 6979 (HMAC-SHA256) over key sk, message SHA256(H33)
    Gamma = sk*H,  c = SHA256(FE 02 || H || Gamma || k*G || k*H)[:16],  s = k + c*sk mod n
    pi    = Gamma (33) || c (16) || s (32) = 81 bytes,  beta = SHA256(FE 03 || Gamma)

Verify: U = s*G - c*Y, V = s*H - c*Gamma, valid iff c == SHA256(FE 02 || H || Gamma || U || V)[:16].

Plain integer arithmetic and hashlib/hmac only, on purpose: the Swift client under test
uses libsecp256k1, so this verifier must not share its code. Not constant time (test use).
"""

from __future__ import annotations

import hashlib
import hmac

P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
     0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)
SUITE = 0xFE
PROOF_LEN = 33 + 16 + 32

# Points: affine (x, y) tuples, None for the point at infinity; Jacobian (X, Y, Z)
# internally (x = X/Z^2, y = Y/Z^3, Z == 0 is infinity) so only one inversion per product.
_INF = (0, 1, 0)


def _double(p):
    x, y, z = p
    if z == 0 or y == 0:
        return _INF
    a, b = x * x % P, y * y % P
    c = b * b % P
    d = 2 * ((x + b) ** 2 - a - c) % P
    e = 3 * a % P  # curve a = 0
    x3 = (e * e - 2 * d) % P
    return x3, (e * (d - x3) - 8 * c) % P, 2 * y * z % P


def _add(p, q):
    if p[2] == 0:
        return q
    if q[2] == 0:
        return p
    z1z1, z2z2 = p[2] * p[2] % P, q[2] * q[2] % P
    u1, u2 = p[0] * z2z2 % P, q[0] * z1z1 % P
    s1, s2 = p[1] * z2z2 * q[2] % P, q[1] * z1z1 * p[2] % P
    if u1 == u2:
        return _double(p) if s1 == s2 else _INF
    h, r = (u2 - u1) % P, (s2 - s1) % P
    hh = h * h % P
    hhh, v = h * hh % P, u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    return x3, (r * (v - x3) - s1 * hhh) % P, h * p[2] * q[2] % P


def _affine(p):
    if p[2] == 0:
        return None
    zi = pow(p[2], -1, P)
    zi2 = zi * zi % P
    return p[0] * zi2 % P, p[1] * zi2 * zi % P


def _mul2(a: int, pa, b: int = 0, pb=None):
    """a*pa + b*pb (Shamir's trick: one doubling chain for both).  Scalars are reduced
    mod n first, as decred's ModNScalar.SetByteSlice does in KoblitzCurve.ScalarMult /
    ScalarBaseMult: this is why the pinned verifier treats s and s + n alike."""
    a, b = a % N, (b % N if pb is not None else 0)
    ja = (pa[0], pa[1], 1)
    jb = (pb[0], pb[1], 1) if pb is not None else _INF
    both = _add(ja, jb)
    acc = _INF
    for i in range(max(a.bit_length(), b.bit_length()) - 1, -1, -1):
        acc = _double(acc)
        bits = (a >> i & 1, b >> i & 1)
        if bits == (1, 1):
            acc = _add(acc, both)
        elif bits[0]:
            acc = _add(acc, ja)
        elif bits[1]:
            acc = _add(acc, jb)
    return _affine(acc)


def _on_curve(x: int, y: int) -> bool:
    return x < P and y < P and (y * y - x * x * x - 7) % P == 0


def encode_point(pt) -> bytes:
    """SEC1 compressed.  Infinity encodes as 02 || 0^32: Go's big-int curve API returns
    (0, 0) for it and elliptic.MarshalCompressed lets (0, 0) through (can be U or V)."""
    if pt is None:
        return b"\x02" + bytes(32)
    return bytes([2 | pt[1] & 1]) + pt[0].to_bytes(32, "big")


def decode_point(data: bytes):
    """Compressed point or None: the pinned Decompress (vrf.go:35-60) wants 02/03,
    x < p and x^3 + 7 a square."""
    if len(data) != 33 or data[0] not in (2, 3):
        return None
    x = int.from_bytes(data[1:], "big")
    if x >= P:
        return None
    y2 = (x * x * x + 7) % P
    y = pow(y2, (P + 1) // 4, P)  # p = 3 mod 4
    if y * y % P != y2:
        return None
    return (x, y if y & 1 == data[0] & 1 else P - y)


def parse_public_key(pk: bytes):
    """64 bytes x||y (what the relay receives), 65 bytes 04||x||y, or 33 compressed.
    Off-curve keys are refused: the relay's secp256k1.ParsePubKey (validate_task.go:60-64)
    does so before go-ecvrf runs (the pinned Verify itself has no check; under Go >= 1.19
    elliptic.MarshalCompressed would panic on such a key in hash-to-curve instead)."""
    if len(pk) == 33:
        return decode_point(pk)
    if len(pk) == 65 and pk[0] == 4:
        pk = pk[1:]
    if len(pk) != 64:
        return None
    x, y = int.from_bytes(pk[:32], "big"), int.from_bytes(pk[32:], "big")
    return (x, y) if _on_curve(x, y) else None


def _hash_to_curve(pk_point, alpha: bytes):
    prefix = bytes([SUITE, 0x01]) + encode_point(pk_point) + alpha
    for ctr in range(256):
        h = decode_point(b"\x02" + hashlib.sha256(prefix + bytes([ctr])).digest())
        if h is not None:
            return h  # cofactor 1: no clearing
    return None  # go-ecvrf: "no valid point found" (never seen in practice)


def _challenge(*points) -> int:
    data = bytes([SUITE, 0x02]) + b"".join(encode_point(p) for p in points)
    # bits2int to n = 16 bytes: the first 128 bits of the digest
    return int.from_bytes(hashlib.sha256(data).digest()[:16], "big")


def _nonce(x: int, h_string: bytes) -> int:
    """RFC 6979 section 3.2, HMAC-SHA256, over SHA256(h_string) (core.go rfc6979nonce,
    decred NonceRFC6979 with no extra data)."""
    h1 = int.from_bytes(hashlib.sha256(h_string).digest(), "big")
    seed = x.to_bytes(32, "big") + (h1 - N if h1 >= N else h1).to_bytes(32, "big")  # bits2octets
    k, v = bytes(32), b"\x01" * 32
    k = hmac.new(k, v + b"\x00" + seed, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    k = hmac.new(k, v + b"\x01" + seed, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    while True:
        v = hmac.new(k, v, hashlib.sha256).digest()
        t = int.from_bytes(v, "big")
        if 1 <= t < N:
            return t
        k = hmac.new(k, v + b"\x00", hashlib.sha256).digest()
        v = hmac.new(k, v, hashlib.sha256).digest()


def gamma_to_beta(gamma) -> bytes:
    """beta = SHA256(FE 03 || Gamma); gamma as a point or its 33-byte encoding."""
    if isinstance(gamma, (bytes, bytearray)):
        gamma = decode_point(bytes(gamma))
        if gamma is None:
            raise ValueError("invalid Gamma")
    return hashlib.sha256(bytes([SUITE, 0x03]) + encode_point(gamma)).digest()


def _secret(sk: bytes) -> int:
    # big-endian, up to 32 bytes (go-ecvrf's vectors have 1-byte keys such as 01, left
    # padded by PrivKeyFromBytes); out-of-range keys are refused rather than reduced
    x = int.from_bytes(sk, "big")
    if not 1 <= len(sk) <= 32 or not 1 <= x < N:
        raise ValueError("secret key must be 1..32 bytes, in [1, n-1]")
    return x


def _prove(x: int, alpha: bytes, nonce: int | None = None) -> tuple[bytes, bytes]:
    # nonce is only overridable so the tests can build a proof with a small s
    y = _mul2(x, G)
    h = _hash_to_curve(y, alpha)
    if h is None:
        raise ValueError("no valid point found for alpha")
    gamma = _mul2(x, h)
    k = _nonce(x, encode_point(h)) if nonce is None else nonce
    c = _challenge(h, gamma, _mul2(k, G), _mul2(k, h))
    s = (k + c * x) % N
    pi = encode_point(gamma) + c.to_bytes(16, "big") + s.to_bytes(32, "big")
    return gamma_to_beta(gamma), pi


def prove(sk: bytes, alpha: bytes) -> tuple[bytes, bytes]:
    """(beta 32 bytes, pi 81 bytes), byte-identical to go-ecvrf's Prove."""
    return _prove(_secret(sk), alpha)


def beta_for(sk: bytes, alpha: bytes) -> bytes:
    """prove()'s beta without the nonce and challenge (half the scalar multiplications)."""
    x = _secret(sk)
    h = _hash_to_curve(_mul2(x, G), alpha)
    if h is None:
        raise ValueError("no valid point found for alpha")
    return gamma_to_beta(_mul2(x, h))


def decode_proof(pi: bytes):
    """(Gamma, c, s) or None.  As pinned (core.go:153-172): only the length and Gamma are
    checked; c == 0, s == 0 and s >= n are NOT refused (go-ecvrf refuses them only from
    481dd12 on), and s is used mod n by the scalar multiplication."""
    if len(pi) != PROOF_LEN:
        return None
    gamma = decode_point(pi[:33])
    if gamma is None:
        return None
    return gamma, int.from_bytes(pi[33:49], "big"), int.from_bytes(pi[49:], "big")


def verify(public_key: bytes, alpha: bytes, pi: bytes) -> bytes | None:
    """beta if pi is a valid proof for alpha under public_key, else None."""
    y = parse_public_key(public_key)
    decoded = decode_proof(pi)
    if y is None or decoded is None:
        return None
    gamma, c, s = decoded
    h = _hash_to_curve(y, alpha)
    if h is None:
        return None
    u = _mul2(s, G, N - c, y)      # s*G - c*Y
    v = _mul2(s, h, N - c, gamma)  # s*H - c*Gamma
    if _challenge(h, gamma, u, v) != c:
        return None
    return gamma_to_beta(gamma)


def public_key_64(sk: bytes) -> bytes:
    """x || y, 32 bytes each, no 04 prefix: the form the relay's publicKey field takes."""
    x, y = _mul2(_secret(sk), G)
    return x.to_bytes(32, "big") + y.to_bytes(32, "big")


def selects(beta: bytes) -> bool:
    """The relay's sampling rule: beta as a big-endian unsigned integer, mod 100 == 0
    (crynux-relay@24ffc26 utils/vrf.go:5-8, big.Int.SetBytes then Mod 100 == 0).  A selected
    task must go to a validation group, an unselected one must not
    (service/validate_task.go:74-80)."""
    return int.from_bytes(beta, "big") % 100 == 0
