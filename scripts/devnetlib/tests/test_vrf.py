"""devnetlib.vrf reproduces vechain/go-ecvrf@96fa0442e765 (the relay's pinned VRF) byte for
byte on its vectors, refuses tampered proofs and keys, keeps the pinned version's s >= n
behaviour, and applies the relay's mod-100 selection rule.  Pure functions: no devnet."""

import ast
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "scripts"))
from devnetlib import vrf  # noqa: E402

FIXTURE = REPO / "Tests" / "EthereumTests" / "Fixtures" / "ecvrf-secp256k1.json"
VECTORS = [
    {k: bytes.fromhex(v[k]) for k in ("sk", "pk", "alpha", "pi", "beta")} | {"index": v["index"]}
    for v in json.loads(FIXTURE.read_text())["vectors"]
]
ids = [f"vector{v['index']}" for v in VECTORS]
V0 = VECTORS[0]
PK0 = vrf.public_key_64(V0["sk"])


def flip(data: bytes, byte: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[byte] ^= 1 << bit
    return bytes(out)


def with_s(pi: bytes, s: int) -> bytes:
    return pi[:49] + s.to_bytes(32, "big")


def off_curve_x() -> int:
    # the smallest x for which x^3 + 7 has no square root mod p: no point has it
    x = 1
    while vrf.decode_point(b"\x02" + x.to_bytes(32, "big")) is not None:
        x += 1
    return x


# --- the vectors ---------------------------------------------------------------------------

@pytest.mark.parametrize("v", VECTORS, ids=ids)
def test_vector_prove(v):
    assert vrf.prove(v["sk"], v["alpha"]) == (v["beta"], v["pi"])


@pytest.mark.parametrize("v", VECTORS, ids=ids)
def test_vector_verify_in_every_key_form(v):
    pk64 = vrf.public_key_64(v["sk"])
    assert vrf.encode_point(vrf.parse_public_key(pk64)) == v["pk"]
    for pk in (pk64, b"\x04" + pk64, v["pk"]):
        assert vrf.verify(pk, v["alpha"], v["pi"]) == v["beta"]


@pytest.mark.parametrize("v", VECTORS, ids=ids)
def test_beta_for_and_gamma_to_beta_match_prove(v):
    assert vrf.beta_for(v["sk"], v["alpha"]) == v["beta"]
    assert vrf.gamma_to_beta(v["pi"][:33]) == v["beta"]


# --- tampering -----------------------------------------------------------------------------

@pytest.mark.parametrize("byte", [0, 1, 32, 33, 48, 49, 80], ids=lambda b: f"byte{b}")
def test_flipped_bit_is_refused(byte):
    # 0: Gamma's prefix (gives -Gamma, still a curve point); 1, 32: Gamma's x (another point
    # or none); 33, 48: c; 49, 80: s
    assert vrf.verify(PK0, V0["alpha"], flip(V0["pi"], byte)) is None


def test_wrong_alpha_is_refused():
    assert vrf.verify(PK0, V0["alpha"] + b"x", V0["pi"]) is None
    assert vrf.verify(PK0, b"", V0["pi"]) is None


def test_wrong_key_is_refused():
    other = VECTORS[1]
    assert vrf.verify(vrf.public_key_64(other["sk"]), V0["alpha"], V0["pi"]) is None
    assert vrf.verify(other["pk"], V0["alpha"], V0["pi"]) is None


@pytest.mark.parametrize("pi", [b"", V0["pi"][:80], V0["pi"] + b"\x00", V0["pi"][:33]], ids=["0", "80", "82", "33"])
def test_wrong_proof_length_is_refused(pi):
    assert vrf.verify(PK0, V0["alpha"], pi) is None


@pytest.mark.parametrize("pk", [PK0[:63], PK0 + b"\x00", PK0[:32], b"", b"\x05" + PK0, b"\x06" + PK0, V0["pk"][:32]],
                         ids=["63", "65-no-prefix", "32", "0", "prefix05", "hybrid06", "compressed32"])
def test_wrong_key_length_or_format_is_refused(pk):
    assert vrf.verify(pk, V0["alpha"], V0["pi"]) is None


def test_gamma_not_on_curve_is_refused():
    x = off_curve_x()
    for prefix in (b"\x02", b"\x03"):
        gamma = prefix + x.to_bytes(32, "big")
        assert vrf.decode_point(gamma) is None
        assert vrf.verify(PK0, V0["alpha"], gamma + V0["pi"][33:]) is None
    # x >= p and a non-compressed prefix are refused by the pinned Decompress too
    assert vrf.verify(PK0, V0["alpha"], b"\x02" + vrf.P.to_bytes(32, "big") + V0["pi"][33:]) is None
    assert vrf.verify(PK0, V0["alpha"], b"\x04" + V0["pi"][1:]) is None


def test_key_not_on_curve_is_refused():
    # the relay's secp256k1.ParsePubKey refuses these before go-ecvrf sees them
    x, y = PK0[:32], int.from_bytes(PK0[32:], "big")
    bad_y = x + ((y + 1) % vrf.P).to_bytes(32, "big")
    assert vrf.parse_public_key(bad_y) is None
    assert vrf.verify(bad_y, V0["alpha"], V0["pi"]) is None
    assert vrf.verify(b"\x04" + bad_y, V0["alpha"], V0["pi"]) is None
    # coordinates >= p, even when they are congruent to a curve point's
    y_plus_p = y + vrf.P
    if y_plus_p < 2**256:
        assert vrf.verify(x + y_plus_p.to_bytes(32, "big"), V0["alpha"], V0["pi"]) is None
    assert vrf.verify(vrf.P.to_bytes(32, "big") + PK0[32:], V0["alpha"], V0["pi"]) is None
    # a compressed key whose x has no point
    assert vrf.verify(b"\x02" + off_curve_x().to_bytes(32, "big"), V0["alpha"], V0["pi"]) is None


def test_prove_refuses_invalid_secret_keys():
    for sk in (bytes(32), vrf.N.to_bytes(32, "big"), b"", b"\x01" * 33):
        with pytest.raises(ValueError):
            vrf.prove(sk, b"a")


# --- the pinned version's s >= n behaviour ---------------------------------------------------

def test_s_at_or_above_n_is_reduced_not_refused():
    # Pinned DecodeProof (core.go:153-172) checks only the length and Gamma; s goes through
    # decred's ModNScalar.SetByteSlice, i.e. mod n.  So s + n, when it fits in 32 bytes,
    # verifies like s.  (go-ecvrf refuses s >= n, s == 0 and c == 0 only from 481dd12 on.)
    # A real proof's s is uniform below n, so s + n fits only with probability ~2^-128; build
    # one with sk = 1 and nonce k = 1, giving s = 1 + c < 2^129.
    alpha = b"s >= n"
    beta, pi = vrf._prove(1, alpha, nonce=1)
    pk = vrf.public_key_64((1).to_bytes(32, "big"))
    s = int.from_bytes(pi[49:], "big")
    assert s + vrf.N < 2**256
    assert vrf.verify(pk, alpha, pi) == beta
    assert vrf.verify(pk, alpha, with_s(pi, s + vrf.N)) == beta
    assert vrf.verify(pk, alpha, with_s(pi, s + 1 + vrf.N)) is None


def test_decode_proof_keeps_out_of_range_scalars():
    gamma = V0["pi"][:33]
    for c, s in ((0, 0), (1, vrf.N), (1, 2**256 - 1)):
        decoded = vrf.decode_proof(gamma + c.to_bytes(16, "big") + s.to_bytes(32, "big"))
        assert decoded is not None and decoded[1:] == (c, s)
    assert vrf.verify(PK0, V0["alpha"], with_s(V0["pi"], 2**256 - 1)) is None


# --- the relay's selection rule ---------------------------------------------------------------

@pytest.mark.parametrize("value,selected", [
    (0, True), (100, True), (200, True), (10**20, True), (2**256 - 36, True),  # 2^256 = 36 mod 100
    (1, False), (99, False), (101, False), (50, False), (2**256 - 100, False), (2**256 - 1, False),
])
def test_selects(value, selected):
    assert vrf.selects(value.to_bytes(32, "big")) is selected


def test_selects_reads_beta_big_endian():
    # 100 little-endian would be 0x64 in the first byte: not a multiple of 100 big-endian
    assert vrf.selects(b"\x64" + bytes(31)) is ((0x64 << 248) % 100 == 0)
    assert vrf.selects(bytes(31) + b"\x64")
    for v in VECTORS:
        assert vrf.selects(v["beta"]) is (int.from_bytes(v["beta"], "big") % 100 == 0)


# --- independence from libsecp256k1 -----------------------------------------------------------

def test_uses_the_standard_library_only():
    tree = ast.parse(Path(vrf.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "hashlib", "hmac"}
