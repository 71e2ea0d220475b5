"""Strict JSON-RPC value parsing and encoding, following geth's hexutil rules.

Being strict is the point: a client that sends "0x01" for a quantity, an odd
length hex string, or a 19-byte address has a bug that geth would reject too.
"""

from __future__ import annotations

import re

_HEX_CHARS = re.compile(r"[0-9a-fA-F]*")


class ParamError(ValueError):
    """An invalid argument (JSON-RPC -32602)."""


def parse_quantity(value, what: str = "quantity", bits: int = 256) -> int:
    """QUANTITY: 0x-prefixed, no leading zeros, at most `bits` bits."""
    if not isinstance(value, str):
        raise ParamError(f"{what}: json: cannot unmarshal non-string into Go value of type hexutil.Big")
    if not value.startswith(("0x", "0X")):
        raise ParamError(f"{what}: hex string without 0x prefix")
    digits = value[2:]
    if digits == "":
        raise ParamError(f'{what}: hex string "0x"')
    if not _HEX_CHARS.fullmatch(digits):
        raise ParamError(f"{what}: invalid hex string")
    if len(digits) > 1 and digits[0] == "0":
        raise ParamError(f"{what}: hex number with leading zero digits")
    number = int(digits, 16)
    if number.bit_length() > bits:
        raise ParamError(f"{what}: hex number > {bits} bits")
    return number


def parse_uint64(value, what: str = "quantity") -> int:
    return parse_quantity(value, what, bits=64)


def parse_data(value, what: str = "data", length: int | None = None) -> bytes:
    """DATA: 0x-prefixed, even number of hex digits; optionally a fixed size."""
    if not isinstance(value, str):
        raise ParamError(f"{what}: json: cannot unmarshal non-string into Go value of type hexutil.Bytes")
    if not value.startswith(("0x", "0X")):
        raise ParamError(f"{what}: hex string without 0x prefix")
    digits = value[2:]
    if len(digits) % 2:
        raise ParamError(f"{what}: hex string of odd length")
    if not _HEX_CHARS.fullmatch(digits):
        raise ParamError(f"{what}: invalid hex string")
    raw = bytes.fromhex(digits)
    if length is not None and len(raw) != length:
        raise ParamError(f"{what}: hex string has length {len(digits)}, want {2 * length}")
    return raw


def parse_address(value, what: str = "address") -> bytes:
    return parse_data(value, what, 20)


def parse_hash(value, what: str = "hash") -> bytes:
    return parse_data(value, what, 32)


def quantity(number: int) -> str:
    return hex(number)


def data(raw: bytes) -> str:
    return "0x" + bytes(raw).hex()


def address(raw: bytes | None) -> str | None:
    # geth marshals addresses as lowercase hex in JSON-RPC results
    return None if raw is None else data(raw)
