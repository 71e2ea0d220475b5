"""Byte-exact Go `encoding/json` output for the values the relay signs.

The relay verifies signatures over `json.Marshal(struct)`: compact, fields in
struct order, strings HTML-escaped. Go's string rules (encode.go appendString):
  * `"` and `\\` are backslash-escaped; \\n \\r \\t use short forms;
  * other bytes < 0x20, and `<` `>` `&`, become \\u00XX (lowercase hex);
  * U+2028 / U+2029 become \\u2028 / \\u2029;
  * `/`, DEL and all other non-ASCII stay raw UTF-8;
  * invalid UTF-8 becomes \\ufffd.
\\b and \\f: Go < 1.22 writes \\u0008 / \\u000c, Go >= 1.22 writes \\b / \\f.
The deployed relay's Go version is unknown, so `go122=True` gives the newer
form and the relay accepts a signature over either.
"""

from __future__ import annotations

_HEX = "0123456789abcdef"


def quote(s: str, go122: bool = False) -> str:
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif go122 and ch == "\b":
            out.append("\\b")
        elif go122 and ch == "\f":
            out.append("\\f")
        elif c < 0x20 or ch in "<>&":
            out.append("\\u00" + _HEX[c >> 4] + _HEX[c & 0xF])
        elif c in (0x2028, 0x2029):
            out.append("\\u%04x" % c)
        elif 0xD800 <= c <= 0xDFFF:
            out.append("\\ufffd")  # lone surrogate: not valid UTF-8 in Go
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def marshal_object(fields: list[tuple[str, object]], go122: bool = False) -> bytes:
    """A Go struct with string / unsigned integer fields, in the given order."""
    parts = []
    for name, value in fields:
        if isinstance(value, str):
            encoded = quote(value, go122)
        elif isinstance(value, int) and not isinstance(value, bool):
            encoded = str(value)
        else:
            raise TypeError(f"unsupported field type {type(value).__name__}")
        parts.append(quote(name) + ":" + encoded)
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def needs_alternatives(s: str) -> bool:
    return "\b" in s or "\f" in s


def _go_float(number: int | float) -> str:
    """A number as Go marshals a float64 (the relay's re-marshal decodes every
    JSON number into float64): shortest round-trip digits, positional below
    1e21, so integers past 2**53 come out rounded (2**63 -> 9223372036854775808
    becomes 9223372036854776000)."""
    from decimal import Decimal

    value = float(number)
    if value == int(value) and abs(value) < 1e21:
        return format(Decimal(repr(value)), "f").removesuffix(".0")
    text = repr(value)
    if "e" in text:  # Go: e+21 / e-07 with at least two exponent digits
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        exp = exp.lstrip("+-").lstrip("0") or "0"
        return f"{mantissa}e{sign}{exp.zfill(2)}"
    return text


class Number(str):
    """A JSON number kept as its literal text (Go's json.Number, decoder.UseNumber)."""


def remarshal(value, go122: bool = False) -> str:
    """`json.Marshal` of `json.Unmarshal` into interface{}: what the relay
    signs (validate_signature.go jsonRemarshal). Objects come out with their
    keys sorted (Go sorts map keys bytewise; for valid strings that is code
    point order), numbers through float64, strings with Go's escaping."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Number):
        return str(value)
    if isinstance(value, str):
        return quote(value, go122)
    if isinstance(value, (int, float)):
        return _go_float(value)
    if isinstance(value, dict):
        return "{" + ",".join(quote(k, go122) + ":" + remarshal(value[k], go122) for k in sorted(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(remarshal(v, go122) for v in value) + "]"
    raise TypeError(f"unsupported value type {type(value).__name__}")

