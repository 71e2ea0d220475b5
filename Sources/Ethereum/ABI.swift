import BigInt

/// A value for an `ABIType`. Arrays (dynamic and fixed) are `.array`, structs are `.tuple`.
public indirect enum ABIValue: Sendable, Equatable {
    case uint(BigUInt)
    case int(BigInt)
    case address(Address)
    case bool(Bool)
    case fixedBytes([UInt8])
    case bytes([UInt8])
    case string(String)
    case array([ABIValue])
    case tuple([ABIValue])

    /// `.uint`, or a non-negative `.int`.
    public var uint: BigUInt? {
        switch self {
        case .uint(let v): return v
        case .int(let v) where v.sign == .plus: return v.magnitude
        default: return nil
        }
    }

    public var int: BigInt? {
        switch self {
        case .int(let v): return v
        case .uint(let v): return BigInt(v)
        default: return nil
        }
    }

    public var address: Address? {
        if case .address(let a) = self { return a }
        return nil
    }

    public var bool: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// Contents of `.bytes` or `.fixedBytes`.
    public var bytes: [UInt8]? {
        switch self {
        case .bytes(let b), .fixedBytes(let b): return b
        default: return nil
        }
    }

    public var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// Elements of `.array` or `.tuple`.
    public var array: [ABIValue]? {
        switch self {
        case .array(let items), .tuple(let items): return items
        default: return nil
        }
    }

    /// Elements of `.tuple` or `.array`.
    public var tuple: [ABIValue]? { array }
}

public enum ABI {
    /// Encodes `values` as a tuple of `types`, as for function arguments and return data.
    public static func encode(_ values: [ABIValue], types: [ABIType]) throws -> [UInt8] {
        for type in types { try type.validate() }
        return try encodeTuple(values, types)
    }

    /// Decodes `data` as a tuple of `types`. Bytes after the encoded tuple are ignored, as Solidity does.
    public static func decode(_ types: [ABIType], from data: [UInt8]) throws -> [ABIValue] {
        for type in types { try type.validate() }
        var decoder = Decoder(data: data)
        return try decoder.tuple(types, at: 0)
    }

    /// First four bytes of keccak256 of the canonical signature (`uint` is read as `uint256`).
    public static func selector(_ signature: String) -> [UInt8] {
        Array(keccak256(canonicalSignature(signature)).prefix(4))
    }

    /// keccak256 of the canonical event signature: a log's topic 0.
    public static func eventTopic(_ signature: String) -> [UInt8] {
        keccak256(canonicalSignature(signature))
    }

    /// Selector followed by the arguments, with the types taken from the signature.
    public static func encodeCall(_ signature: String, _ values: [ABIValue]) throws -> [UInt8] {
        let parsed = try parseSignature(signature)
        let name = parsed.name + ABIType.tuple(parsed.types).canonical
        return Array(keccak256(name).prefix(4)) + (try encodeTuple(values, parsed.types))
    }

    // MARK: - Encoding

    private static func encodeTuple(_ values: [ABIValue], _ types: [ABIType]) throws -> [UInt8] {
        guard values.count == types.count else {
            throw ABIError.typeMismatch("\(values.count) values for \(types.count) types")
        }
        let headSize = types.reduce(0) { $0 + $1.headSize }
        var head = [UInt8]()
        var tail = [UInt8]()
        head.reserveCapacity(headSize)
        for (value, type) in zip(values, types) {
            if type.isDynamic {
                head += word(BigUInt(headSize + tail.count))
                tail += try encode(value, type)
            } else {
                head += try encode(value, type)
            }
        }
        return head + tail
    }

    private static func encode(_ value: ABIValue, _ type: ABIType) throws -> [UInt8] {
        func mismatch() -> ABIError { .typeMismatch("\(value) is not a \(type.canonical)") }
        switch type {
        case .uint(let bits):
            guard let v = value.uint else { throw mismatch() }
            guard v.bitWidth <= bits else { throw ABIError.valueOutOfRange("\(v) does not fit in uint\(bits)") }
            return word(v)
        case .int(let bits):
            guard let v = value.int else { throw mismatch() }
            let limit = BigInt(1) << (bits - 1)
            guard v >= -limit, v < limit else { throw ABIError.valueOutOfRange("\(v) does not fit in int\(bits)") }
            return word(v.sign == .minus && !v.isZero ? (BigUInt(1) << 256) - v.magnitude : v.magnitude)
        case .address:
            guard let a = value.address else { throw mismatch() }
            return [UInt8](repeating: 0, count: 12) + a.bytes
        case .bool:
            guard let b = value.bool else { throw mismatch() }
            return word(b ? 1 : 0)
        case .fixedBytes(let n):
            guard let b = value.bytes else { throw mismatch() }
            guard b.count == n else { throw ABIError.valueOutOfRange("\(b.count) bytes for bytes\(n)") }
            return padRight(b)
        case .bytes:
            guard let b = value.bytes else { throw mismatch() }
            return word(BigUInt(b.count)) + padRight(b)
        case .string:
            guard let s = value.string else { throw mismatch() }
            let b = Array(s.utf8)
            return word(BigUInt(b.count)) + padRight(b)
        case .array(let inner):
            guard case .array(let items) = value else { throw mismatch() }
            return word(BigUInt(items.count)) + (try encodeTuple(items, Array(repeating: inner, count: items.count)))
        case .fixedArray(let inner, let n):
            guard case .array(let items) = value else { throw mismatch() }
            guard items.count == n else { throw ABIError.typeMismatch("\(items.count) elements for \(type.canonical)") }
            return try encodeTuple(items, Array(repeating: inner, count: n))
        case .tuple(let types):
            guard case .tuple(let items) = value else { throw mismatch() }
            return try encodeTuple(items, types)
        }
    }

    static func word(_ v: BigUInt) -> [UInt8] { v.bytes(width: 32) }

    /// A `uint256` argument word (cannot fail, unlike `encode`).
    public static func uintWord(_ v: UInt64) -> [UInt8] { word(BigUInt(v)) }
    public static func uintWord(_ v: BigUInt) -> [UInt8] { word(v) }

    private static func padRight(_ b: [UInt8]) -> [UInt8] {
        let padding = (32 - b.count % 32) % 32
        return b + [UInt8](repeating: 0, count: padding)
    }

    // MARK: - Decoding

    struct Decoder {
        let data: [UInt8]

        mutating func tuple(_ types: [ABIType], at base: Int) throws -> [ABIValue] {
            var values = [ABIValue]()
            values.reserveCapacity(types.count)
            var position = base
            for type in types {
                if type.isDynamic {
                    let offset = try integer(at: position, what: "offset")
                    guard offset <= data.count - base else { throw ABIError.invalidData("offset \(offset) out of bounds") }
                    values.append(try value(type, at: base + offset))
                } else {
                    values.append(try value(type, at: position))
                }
                position += type.headSize
            }
            return values
        }

        private func word(at position: Int) throws -> ArraySlice<UInt8> {
            guard position >= 0, position <= data.count - 32 else {
                throw ABIError.invalidData("need 32 bytes at \(position), have \(data.count)")
            }
            return data[position..<position + 32]
        }

        /// An offset or length: must fit the data.
        private func integer(at position: Int, what: String) throws -> Int {
            let w = try word(at: position)
            guard w.prefix(24).allSatisfy({ $0 == 0 }) else { throw ABIError.invalidData("\(what) too large") }
            let value = w.suffix(8).reduce(0) { $0 << 8 | UInt64($1) }
            guard value <= UInt64(data.count) else { throw ABIError.invalidData("\(what) \(value) out of bounds") }
            return Int(value)
        }

        private mutating func value(_ type: ABIType, at position: Int) throws -> ABIValue {
            switch type {
            case .uint(let bits):
                let v = BigUInt(bigEndian: try word(at: position))
                guard v.bitWidth <= bits else { throw ABIError.invalidData("value does not fit in uint\(bits)") }
                return .uint(v)
            case .int(let bits):
                let raw = BigUInt(bigEndian: try word(at: position))
                let v = raw.bitWidth == 256 ? BigInt(sign: .minus, magnitude: (BigUInt(1) << 256) - raw) : BigInt(raw)
                let limit = BigInt(1) << (bits - 1)
                guard v >= -limit, v < limit else { throw ABIError.invalidData("value does not fit in int\(bits)") }
                return .int(v)
            case .address:
                let w = try word(at: position)
                guard w.prefix(12).allSatisfy({ $0 == 0 }) else { throw ABIError.invalidData("dirty address padding") }
                return .address(Address(bytes: Array(w.suffix(20))))
            case .bool:
                let w = try word(at: position)
                guard w.prefix(31).allSatisfy({ $0 == 0 }), w.last! <= 1 else { throw ABIError.invalidData("invalid bool") }
                return .bool(w.last! == 1)
            case .fixedBytes(let n):
                let w = try word(at: position)
                guard w.dropFirst(n).allSatisfy({ $0 == 0 }) else { throw ABIError.invalidData("dirty bytes\(n) padding") }
                return .fixedBytes(Array(w.prefix(n)))
            case .bytes:
                return .bytes(try dynamicBytes(at: position))
            case .string:
                return .string(String(decoding: try dynamicBytes(at: position), as: UTF8.self))
            case .array(let inner):
                let count = try integer(at: position, what: "array length")
                let start = position + 32
                // Each element needs at least its head; this bounds allocations for hostile lengths.
                guard count <= (data.count - start) / max(inner.headSize, 32) else {
                    throw ABIError.invalidData("array length \(count) exceeds the data")
                }
                return .array(try tuple(Array(repeating: inner, count: count), at: start))
            case .fixedArray(let inner, let n):
                return .array(try tuple(Array(repeating: inner, count: n), at: position))
            case .tuple(let types):
                return .tuple(try tuple(types, at: position))
            }
        }

        private func dynamicBytes(at position: Int) throws -> [UInt8] {
            let length = try integer(at: position, what: "length")
            let start = position + 32
            guard length <= data.count - start else { throw ABIError.invalidData("length \(length) exceeds the data") }
            return Array(data[start..<start + length])
        }
    }
}

/// A Solidity event: its signature, topic 0 and log decoding.
public struct ABIEvent: Sendable, Equatable {
    public struct Parameter: Sendable, Equatable {
        public let name: String
        public let type: ABIType
        public let indexed: Bool
    }

    public let name: String
    public let parameters: [Parameter]

    /// Parses a declaration such as `TaskSuccess(uint256 indexed taskId, bytes result, address indexed resultNode)`.
    /// Parameter names are optional.
    public init(_ declaration: String) throws {
        guard let open = declaration.firstIndex(of: "("), declaration.hasSuffix(")") else {
            throw ABIError.invalidType(declaration)
        }
        name = declaration[..<open].trimmingSpaces
        guard !name.isEmpty else { throw ABIError.invalidType(declaration) }
        let body = declaration[declaration.index(after: open)..<declaration.index(before: declaration.endIndex)]
        var parameters = [Parameter]()
        for part in splitTopLevel(body) {
            var parser = TypeParser(part)
            let type = try parser.parseType()
            let words = part.dropFirst(parser.position).split(separator: " ").map(String.init)
            let indexed = words.first == "indexed"
            let rest = indexed ? Array(words.dropFirst()) : words
            guard rest.count <= 1 else { throw ABIError.invalidType(part) }
            parameters.append(Parameter(name: rest.first ?? "", type: type, indexed: indexed))
        }
        self.parameters = parameters
    }

    /// `Name(type,type,…)` without names or `indexed`.
    public var signature: String {
        name + ABIType.tuple(parameters.map(\.type)).canonical
    }

    public var topic: [UInt8] { keccak256(signature) }

    /// Values in declaration order. Indexed parameters of dynamic type (string, bytes, arrays, tuples) are
    /// stored as their keccak256 hash and come back as `.fixedBytes` of that hash.
    public func decode(topics: [[UInt8]], data: [UInt8]) throws -> [ABIValue] {
        let indexed = parameters.filter(\.indexed)
        guard topics.count == indexed.count + 1, topics.allSatisfy({ $0.count == 32 }) else {
            throw ABIError.invalidData("\(topics.count) topics for \(name) with \(indexed.count) indexed parameters")
        }
        guard topics[0] == topic else { throw ABIError.invalidData("topic 0 is not \(signature)") }
        var dataValues = try ABI.decode(parameters.filter { !$0.indexed }.map(\.type), from: data)[...]
        var topicIndex = 1
        var values = [ABIValue]()
        for parameter in parameters {
            if parameter.indexed {
                let topic = topics[topicIndex]
                topicIndex += 1
                if parameter.type.isHashedWhenIndexed {
                    values.append(.fixedBytes(topic))
                } else {
                    values.append(try ABI.decode([parameter.type], from: topic)[0])
                }
            } else {
                values.append(dataValues.removeFirst())
            }
        }
        return values
    }
}

extension ABIType {
    /// Reference types in indexed event parameters are stored as keccak256 of their encoding.
    var isHashedWhenIndexed: Bool {
        switch self {
        case .bytes, .string, .array, .fixedArray, .tuple: return true
        default: return false
        }
    }
}

private func splitTopLevel(_ text: Substring) -> [String] {
    var parts = [String]()
    var depth = 0
    var current = ""
    for c in text {
        switch c {
        case "(", "[": depth += 1
        case ")", "]": depth -= 1
        default: break
        }
        if c == "," && depth == 0 {
            parts.append(Substring(current).trimmingSpaces)
            current = ""
        } else {
            current.append(c)
        }
    }
    let last = Substring(current).trimmingSpaces
    if !last.isEmpty || !parts.isEmpty { parts.append(last) }
    return parts
}

/// Why a call reverted, from its return data.
public enum RevertReason: Sendable, Equatable, CustomStringConvertible {
    /// `Error(string)`, selector 0x08c379a0: `require(…, "message")` / `revert("message")`.
    case error(String)
    /// `Panic(uint256)`, selector 0x4e487b71: assert failures, arithmetic errors and the like.
    case panic(BigUInt)
    /// Anything else (custom errors, bare `revert()` data).
    case raw([UInt8])

    static let errorSelector: [UInt8] = [0x08, 0xc3, 0x79, 0xa0]
    static let panicSelector: [UInt8] = [0x4e, 0x48, 0x7b, 0x71]

    /// nil for empty data.
    public static func decode(_ data: [UInt8]) -> RevertReason? {
        guard !data.isEmpty else { return nil }
        let selector = Array(data.prefix(4))
        let args = Array(data.dropFirst(4))
        if selector == errorSelector, let values = try? ABI.decode([.string], from: args), let s = values[0].string {
            return .error(s)
        }
        if selector == panicSelector, let values = try? ABI.decode([.uint(256)], from: args), let code = values[0].uint {
            return .panic(code)
        }
        return .raw(data)
    }

    public var description: String {
        switch self {
        case .error(let message):
            return message
        case .panic(let code):
            let hex = String(code, radix: 16)
            let padded = hex.count < 2 ? "0" + hex : hex
            if let meaning = Self.panicMeaning(code) { return "panic 0x\(padded) (\(meaning))" }
            return "panic 0x\(padded)"
        case .raw(let data):
            return data.hex
        }
    }

    /// Solidity's panic codes (docs: "Panic via assert and Error via require").
    public static func panicMeaning(_ code: BigUInt) -> String? {
        switch code {
        case 0x00: return "generic compiler panic"
        case 0x01: return "assertion failed"
        case 0x11: return "arithmetic overflow or underflow"
        case 0x12: return "division by zero"
        case 0x21: return "invalid enum value"
        case 0x22: return "invalid storage byte array encoding"
        case 0x31: return "pop on empty array"
        case 0x32: return "array index out of bounds"
        case 0x41: return "out of memory"
        case 0x51: return "call to uninitialized internal function"
        default: return nil
        }
    }
}
