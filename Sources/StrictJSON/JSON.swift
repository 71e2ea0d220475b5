/// The one JSON value type of the code base: task arguments, Relay answers and JSON-RPC. Kept close
/// to the source text: numbers keep their literal, booleans are never confused with numbers, and
/// object keys keep their order.
///
/// A strict RFC 8259 parser of our own is used instead of JSONSerialization because the network
/// (Go's encoding/json in the Relay, Python's json on the nodes) must accept whatever we accept, and
/// Foundation's number bridging blurs `true` and `1`.
public enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSON])
    case object(JSONObject)
}

public struct JSONNumber: Sendable, Equatable {
    /// The literal as written, e.g. `"1e3"` or `"-0.5"`.
    public let literal: String
    public let value: Double

    init(literal: String, value: Double) {
        self.literal = literal
        self.value = value
    }

    public init(_ value: Int) {
        self.init(literal: String(value), value: Double(value))
    }

    /// Numbers are equal when their values are: `3e2` is `300`.
    public static func == (a: JSONNumber, b: JSONNumber) -> Bool { a.value == b.value }

    /// A number to send; JSON has no infinities or NaN, so those are written as 0.
    public init(_ value: Double) {
        self.init(literal: value.isFinite ? "\(value)" : "0", value: value.isFinite ? value : 0)
    }

    /// The value as an integer when it is mathematically one (`6`, `6.0`, `6e0`), as JSON Schema's
    /// "integer" type (and pydantic's lax int) accept; nil for `1.5` or values beyond ±2^53.
    public var integerValue: Int64? {
        guard value.rounded(.towardZero) == value, abs(value) <= 9_007_199_254_740_992 else { return nil }
        return Int64(value)
    }
}

/// Object members in document order; a repeated key keeps its last value, as Go and Python do.
public struct JSONObject: Sendable, Equatable {
    public private(set) var keys: [String] = []
    private var storage: [String: JSON] = [:]

    public init() {}

    /// Members in key order, so that the same dictionary always serializes the same way.
    public init(_ dictionary: [String: JSON]) {
        for key in dictionary.keys.sorted() { set(key, dictionary[key]!) }
    }

    public subscript(key: String) -> JSON? { storage[key] }

    /// Objects are equal when they have the same members, in whatever order.
    public static func == (a: JSONObject, b: JSONObject) -> Bool { a.storage == b.storage }

    public mutating func set(_ key: String, _ value: JSON) {
        if storage.updateValue(value, forKey: key) == nil { keys.append(key) }
    }

    public var count: Int { keys.count }
}

public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    public let column: Int
    public let message: String
    public var description: String { "invalid JSON at line \(line), column \(column): \(message)" }
}

extension JSON {
    public static func parse(_ text: String) throws(JSONParseError) -> JSON {
        var parser = JSONParser(bytes: Array(text.utf8))
        return try parser.parseDocument()
    }

    public static func parse(bytes: [UInt8]) throws(JSONParseError) -> JSON {
        var parser = JSONParser(bytes: bytes)
        return try parser.parseDocument()
    }

    public var objectValue: JSONObject? { if case .object(let o) = self { o } else { nil } }
    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }
    public var arrayValue: [JSON]? { if case .array(let a) = self { a } else { nil } }
    public var numberValue: JSONNumber? { if case .number(let n) = self { n } else { nil } }

    /// Short human description of a value for error messages: `12`, `1.5`, `true`, `null`,
    /// `"text"` (truncated), `an array`, `an object`.
    public var brief: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n): return n.literal
        case .string(let s):
            let limit = 40
            let shown = s.count > limit ? String(s.prefix(limit)) + "…" : s
            return "\"" + shown + "\""
        case .array(let a): return a.isEmpty ? "an empty array" : "an array"
        case .object: return "an object"
        }
    }
}

private struct JSONParser {
    let bytes: [UInt8]
    var index = 0
    var depth = 0
    // Far beyond any task argument; keeps the recursion away from the thread's stack limit.
    static let maxDepth = 200

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func parseDocument() throws(JSONParseError) -> JSON {
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        if index < bytes.count { throw error("unexpected \(found()) after the end of the JSON value") }
        return value
    }

    private func position(_ at: Int) -> (line: Int, column: Int) {
        var line = 1, column = 1
        var i = 0
        while i < at && i < bytes.count {
            if bytes[i] == 0x0A {
                line += 1; column = 1
            } else if bytes[i] & 0xC0 != 0x80 {
                column += 1
            }
            i += 1
        }
        return (line, column)
    }

    private func error(_ message: String, at: Int? = nil) -> JSONParseError {
        let p = position(at ?? index)
        return JSONParseError(line: p.line, column: p.column, message: message)
    }

    private func found() -> String {
        guard index < bytes.count else { return "end of input" }
        let b = bytes[index]
        if b >= 0x21 && b < 0x7F { return "'\(Character(Unicode.Scalar(b)))'" }
        // Decode the whole scalar so that the message shows the real character.
        var end = index + 1
        while end < bytes.count && bytes[end] & 0xC0 == 0x80 && end - index < 4 { end += 1 }
        let scalar = String(decoding: bytes[index..<end], as: UTF8.self).unicodeScalars.first
        if let scalar {
            return "character U+" + hex4(scalar.value)
        }
        return "byte 0x" + String(b, radix: 16)
    }

    private func hex4(_ v: UInt32) -> String {
        let s = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue() throws(JSONParseError) -> JSON {
        guard index < bytes.count else { throw error("unexpected end of input, expected a value") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw error("unexpected \(found()), expected a value")
        }
    }

    private mutating func expectLiteral(_ word: String) throws(JSONParseError) {
        let start = index
        for b in word.utf8 {
            guard index < bytes.count, bytes[index] == b else {
                throw error("invalid literal, expected '\(word)'", at: start)
            }
            index += 1
        }
    }

    private mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > Self.maxDepth { throw error("nesting deeper than \(Self.maxDepth) levels") }
    }

    private mutating func parseObject() throws(JSONParseError) -> JSON {
        try enter()
        index += 1
        var object = JSONObject()
        skipWhitespace()
        if index < bytes.count && bytes[index] == UInt8(ascii: "}") {
            index += 1; depth -= 1
            return .object(object)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                throw error("unexpected \(found()), expected a string key")
            }
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else {
                throw error("unexpected \(found()), expected ':' after an object key")
            }
            index += 1
            skipWhitespace()
            object.set(key, try parseValue())
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input, expected ',' or '}'") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "}") { index += 1; break }
            throw error("unexpected \(found()), expected ',' or '}'")
        }
        depth -= 1
        return .object(object)
    }

    private mutating func parseArray() throws(JSONParseError) -> JSON {
        try enter()
        index += 1
        var items: [JSON] = []
        skipWhitespace()
        if index < bytes.count && bytes[index] == UInt8(ascii: "]") {
            index += 1; depth -= 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input, expected ',' or ']'") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "]") { index += 1; break }
            throw error("unexpected \(found()), expected ',' or ']'")
        }
        depth -= 1
        return .array(items)
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        let start = index
        index += 1
        var out: [UInt8] = []
        while true {
            guard index < bytes.count else { throw error("unterminated string", at: start) }
            let b = bytes[index]
            if b == UInt8(ascii: "\"") { index += 1; break }
            if b < 0x20 {
                throw error("control character U+\(hex4(UInt32(b))) in a string must be escaped")
            }
            if b != UInt8(ascii: "\\") {
                out.append(b); index += 1
                continue
            }
            index += 1
            guard index < bytes.count else { throw error("unterminated string", at: start) }
            let e = bytes[index]
            index += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try parseHex4()
                // A lone surrogate is not a Unicode scalar; Go decodes it to U+FFFD, and so do we.
                if (0xD800...0xDBFF).contains(scalar) {
                    let save = index
                    if index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") {
                        index += 2
                        let low = try parseHex4()
                        if (0xDC00...0xDFFF).contains(low) {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            index = save
                            scalar = 0xFFFD
                        }
                    } else {
                        scalar = 0xFFFD
                    }
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    scalar = 0xFFFD
                }
                out.append(contentsOf: Array(String(Unicode.Scalar(scalar) ?? "\u{FFFD}").utf8))
            default:
                index -= 1
                throw error("invalid escape sequence: backslash followed by \(found())")
            }
        }
        // RFC 8259 documents are UTF-8; invalid bytes are an error, not silently replaced.
        guard let text = String(validating: out, as: UTF8.self) else { throw error("invalid UTF-8 in a string", at: start) }
        return text
    }

    private mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard index < bytes.count else { throw error("unterminated \\u escape") }
            let b = bytes[index]
            let d: UInt32
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(b - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(b - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(b - UInt8(ascii: "A") + 10)
            default: throw error("invalid \\u escape: unexpected \(found())")
            }
            v = v << 4 | d
            index += 1
        }
        return v
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSONNumber {
        let start = index
        func isDigit(_ i: Int) -> Bool { i < bytes.count && bytes[i] >= 0x30 && bytes[i] <= 0x39 }
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard isDigit(index) else { throw error("invalid number: expected a digit, found \(found())") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if isDigit(index) { throw error("invalid number: leading zeros are not allowed", at: start) }
        } else {
            while isDigit(index) { index += 1 }
        }
        if index < bytes.count && bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard isDigit(index) else { throw error("invalid number: expected a digit after '.', found \(found())") }
            while isDigit(index) { index += 1 }
        }
        if index < bytes.count && (bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")) {
            index += 1
            if index < bytes.count && (bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-")) { index += 1 }
            guard isDigit(index) else { throw error("invalid number: expected a digit in the exponent, found \(found())") }
            while isDigit(index) { index += 1 }
        }
        let literal = String(decoding: bytes[start..<index], as: UTF8.self)
        // Go decodes JSON numbers into float64 and refuses ones that overflow it.
        guard let value = Double(literal), value.isFinite else {
            throw error("number \(literal) is out of range", at: start)
        }
        return JSONNumber(literal: literal, value: value)
    }
}
