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
