/// Byte-exact output of Go's `encoding/json` `Marshal` for the small flat objects the Relay signs.
///
/// The Relay re-serialises the request with Go and checks the signature against those bytes, so the
/// signed bytes must match Go exactly: compact, keys in the given order, HTML-safe escaping of `<`, `>`,
/// `&`, U+2028 and U+2029, `/` and other non-ASCII text left raw.
public enum GoJSON {
    public enum Value: Sendable, Equatable {
        case string(String)
        case uint(UInt64)
        case int(Int64)
        case bool(Bool)
        case null
    }

    /// A Go-quoted JSON string literal, including the surrounding quotes.
    public static func quote(_ s: String) -> String {
        var out: [UInt8] = []
        appendQuoted(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `{"k1":v1,"k2":v2}` with the keys in the order given (Go uses struct field order).
    public static func object(_ fields: [(String, Value)]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "{")]
        for (i, (key, value)) in fields.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendQuoted(key, to: &out)
            out.append(UInt8(ascii: ":"))
            switch value {
            case .string(let s): appendQuoted(s, to: &out)
            case .uint(let n): out.append(contentsOf: Array(String(n).utf8))
            case .int(let n): out.append(contentsOf: Array(String(n).utf8))
            case .bool(let b): out.append(contentsOf: Array((b ? "true" : "false").utf8))
            case .null: out.append(contentsOf: Array("null".utf8))
            }
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// The byte length of `quote(s)`, without building it.
    public static func quotedLength(_ s: String) -> Int {
        var n = 2
        for b in s.utf8 {
            switch b {
            case 0x22, 0x5C, 0x0A, 0x0D, 0x09: n += 2
            case 0x00..<0x20, 0x3C, 0x3E, 0x26: n += 6
            default: n += 1
            }
        }
        // U+2028 and U+2029 (3 bytes in UTF-8) become 6-byte escapes.
        for scalar in s.unicodeScalars where scalar.value == 0x2028 || scalar.value == 0x2029 { n += 3 }
        return n
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func appendQuoted(_ s: String, to out: inout [UInt8]) {
        out.reserveCapacity(out.count + s.utf8.count + 2)
        out.append(UInt8(ascii: "\""))
        for scalar in s.unicodeScalars {
            switch scalar.value {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            // \b and \f are written as \u0008 / \u000c: Go before 1.22 does so, and the Relay's toolchain
            // is Go 1.20. Validated task arguments never contain them raw (JSON forbids raw control
            // characters inside strings), so the choice cannot matter for task_args.
            case 0x00..<0x20, 0x3C, 0x3E, 0x26:
                appendUnicodeEscape(scalar.value, to: &out)
            case 0x2028, 0x2029:
                appendUnicodeEscape(scalar.value, to: &out)
            default:
                var buffer: [UInt8] = []
                buffer.reserveCapacity(4)
                UTF8.encode(scalar) { buffer.append($0) }
                out.append(contentsOf: buffer)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static func appendUnicodeEscape(_ v: UInt32, to out: inout [UInt8]) {
        out.append(contentsOf: [0x5C, UInt8(ascii: "u")])
        for shift in stride(from: 12, through: 0, by: -4) {
            out.append(hexDigits[Int((v >> UInt32(shift)) & 0xF)])
        }
    }
}
