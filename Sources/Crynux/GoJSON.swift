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
        /// `[v1,v2]`; `[]` when empty (Go writes a nil slice as `null`: use `.null` for that).
        case array([Value])
        /// An unsigned integer as Go writes it after decoding it into `interface{}` (a float64), as the
        /// Relay's re-marshal does: exact up to 2^53, above that the float64's shortest digits, zero-padded.
        case float64Integer(UInt64)
    }

    /// A Go-quoted JSON string literal, including the surrounding quotes.
    public static func quote(_ s: String) -> String {
        var out: [UInt8] = []
        appendQuoted(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `{"k1":v1,"k2":v2}` with the keys in the order given (Go uses struct field order).
    ///
    /// `go122`: write `\b` and `\f` in their short forms, as Go 1.22 and later do (the Lithium Relay is
    /// built with Go 1.24); otherwise as `\u0008` / `\u000c` (Go before 1.22, the era-D Relay).
    public static func object(_ fields: [(String, Value)], go122: Bool = false) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "{")]
        for (i, (key, value)) in fields.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendQuoted(key, to: &out, go122: go122)
            out.append(UInt8(ascii: ":"))
            append(value, to: &out, go122: go122)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    private static func append(_ value: Value, to out: inout [UInt8], go122: Bool) {
        switch value {
        case .string(let s): appendQuoted(s, to: &out, go122: go122)
        case .uint(let n): out.append(contentsOf: Array(String(n).utf8))
        case .int(let n): out.append(contentsOf: Array(String(n).utf8))
        case .bool(let b): out.append(contentsOf: Array((b ? "true" : "false").utf8))
        case .null: out.append(contentsOf: Array("null".utf8))
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (i, v) in values.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                append(v, to: &out, go122: go122)
            }
            out.append(UInt8(ascii: "]"))
        case .float64Integer(let n): out.append(contentsOf: Array(float64Integer(n).utf8))
        }
    }

    /// strconv.FormatFloat(float64(n), 'f', -1, 64), which encoding/json uses below 1e21 (every UInt64).
    static func float64Integer(_ n: UInt64) -> String {
        if n <= 1 << 53 { return String(n) }
        // Swift's description is the shortest round-trip form too, e.g. "1.2345678901234567e+19".
        let text = Double(n).description
        guard let e = text.firstIndex(of: "e"), let exponent = Int(text[text.index(after: e)...]) else {
            return String(text.prefix { $0 != "." })  // "9007199254740994.0": integral, no exponent
        }
        let digits = text[..<e].filter { $0 != "." }
        return digits + String(repeating: "0", count: max(0, exponent + 1 - digits.count))
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

    static func appendQuoted(_ s: String, to out: inout [UInt8], go122: Bool = false) {
        out.reserveCapacity(out.count + s.utf8.count + 2)
        out.append(UInt8(ascii: "\""))
        for scalar in s.unicodeScalars {
            switch scalar.value {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08 where go122: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C where go122: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
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
