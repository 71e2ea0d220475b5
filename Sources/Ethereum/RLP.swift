import BigInt

public enum RLPError: Error, Sendable, Equatable, CustomStringConvertible {
    case truncated
    case trailingBytes(Int)
    case nonCanonical(String)
    case unexpectedType(String)
    case tooDeep

    public var description: String {
        switch self {
        case .truncated: return "RLP: input ends inside an item"
        case .trailingBytes(let n): return "RLP: \(n) bytes after the item"
        case .nonCanonical(let why): return "RLP: non-canonical encoding (\(why))"
        case .unexpectedType(let why): return "RLP: \(why)"
        case .tooDeep: return "RLP: nesting too deep"
        }
    }
}

/// Recursive Length Prefix item: a byte string or a list of items.
public enum RLP: Equatable, Sendable {
    case bytes([UInt8])
    case list([RLP])

    /// An unsigned integer: big-endian without leading zeros, zero as the empty string.
    public static func uint(_ v: BigUInt) -> RLP { .bytes(v.minimalBytes) }
    public static func uint(_ v: UInt64) -> RLP { .uint(BigUInt(v)) }
    /// Also what an integer literal picks, so `RLP.uint(5)` is not ambiguous.
    public static func uint(_ v: Int) -> RLP {
        precondition(v >= 0, "RLP integers are unsigned")
        return .uint(BigUInt(v))
    }

    public func encoded() -> [UInt8] {
        var out = [UInt8]()
        encode(into: &out)
        return out
    }

    private func encode(into out: inout [UInt8]) {
        switch self {
        case .bytes(let b):
            if b.count == 1 && b[0] < 0x80 {
                out.append(b[0])
            } else {
                Self.appendHeader(b.count, short: 0x80, into: &out)
                out.append(contentsOf: b)
            }
        case .list(let items):
            var payload = [UInt8]()
            for item in items { item.encode(into: &payload) }
            Self.appendHeader(payload.count, short: 0xc0, into: &out)
            out.append(contentsOf: payload)
        }
    }

    private static func appendHeader(_ length: Int, short: UInt8, into out: inout [UInt8]) {
        if length < 56 {
            out.append(short + UInt8(length))
        } else {
            let lengthBytes = BigUInt(length).minimalBytes
            out.append(short + 55 + UInt8(lengthBytes.count))
            out.append(contentsOf: lengthBytes)
        }
    }

    /// Decodes exactly one item spanning all of `bytes`; rejects every non-canonical form
    /// (single bytes below 0x80 wrapped in a header, long forms for short payloads, lengths with leading zeros).
    public static func decode(_ bytes: [UInt8]) throws -> RLP {
        var decoder = Decoder(bytes: bytes)
        let item = try decoder.item(end: bytes.count, depth: 0)
        guard decoder.position == bytes.count else { throw RLPError.trailingBytes(bytes.count - decoder.position) }
        return item
    }

    // MARK: - Accessors

    public var bytesValue: [UInt8]? {
        if case .bytes(let b) = self { return b }
        return nil
    }

    public var listValue: [RLP]? {
        if case .list(let l) = self { return l }
        return nil
    }

    /// Reads an unsigned integer, rejecting leading zero bytes.
    public func uintValue() throws -> BigUInt {
        guard case .bytes(let b) = self else { throw RLPError.unexpectedType("expected an integer, got a list") }
        if b.first == 0 { throw RLPError.nonCanonical("integer with leading zero byte") }
        return BigUInt(bigEndian: b)
    }

    public func uint64Value() throws -> UInt64 {
        let value = try uintValue()
        guard value.bitWidth <= 64 else { throw RLPError.unexpectedType("integer does not fit in 64 bits") }
        return UInt64(value)
    }

    private struct Decoder {
        let bytes: [UInt8]
        var position = 0

        mutating func item(end: Int, depth: Int) throws -> RLP {
            guard depth < 1024 else { throw RLPError.tooDeep }
            guard position < end else { throw RLPError.truncated }
            let prefix = bytes[position]
            position += 1
            switch prefix {
            case 0x00...0x7f:
                return .bytes([prefix])
            case 0x80...0xb7:
                let length = Int(prefix - 0x80)
                let payload = try take(length, end: end)
                if length == 1 && payload[0] < 0x80 {
                    throw RLPError.nonCanonical("single byte below 0x80 must be encoded as itself")
                }
                return .bytes(payload)
            case 0xb8...0xbf:
                let length = try longLength(Int(prefix - 0xb7), end: end)
                return .bytes(try take(length, end: end))
            case 0xc0...0xf7:
                return .list(try listItems(length: Int(prefix - 0xc0), end: end, depth: depth))
            default:
                let length = try longLength(Int(prefix - 0xf7), end: end)
                return .list(try listItems(length: length, end: end, depth: depth))
            }
        }

        private mutating func take(_ length: Int, end: Int) throws -> [UInt8] {
            guard length <= end - position else { throw RLPError.truncated }
            defer { position += length }
            return Array(bytes[position..<position + length])
        }

        private mutating func longLength(_ count: Int, end: Int) throws -> Int {
            guard count <= end - position else { throw RLPError.truncated }
            guard bytes[position] != 0 else { throw RLPError.nonCanonical("length with leading zero byte") }
            guard count <= 7 else { throw RLPError.truncated }  // more than any real input could hold
            var length = 0
            for b in bytes[position..<position + count] { length = length << 8 | Int(b) }
            position += count
            guard length >= 56 else { throw RLPError.nonCanonical("long form for a length below 56") }
            return length
        }

        private mutating func listItems(length: Int, end: Int, depth: Int) throws -> [RLP] {
            guard length <= end - position else { throw RLPError.truncated }
            let listEnd = position + length
            var items = [RLP]()
            while position < listEnd {
                items.append(try item(end: listEnd, depth: depth + 1))
            }
            return items
        }
    }
}
