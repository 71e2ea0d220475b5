import BigInt

public enum ABIError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidType(String)
    case typeMismatch(String)
    case valueOutOfRange(String)
    case invalidData(String)

    public var description: String {
        switch self {
        case .invalidType(let s): return "ABI: invalid type \(s)"
        case .typeMismatch(let s): return "ABI: type mismatch: \(s)"
        case .valueOutOfRange(let s): return "ABI: value out of range: \(s)"
        case .invalidData(let s): return "ABI: invalid data: \(s)"
        }
    }
}

/// A Solidity ABI type.
public indirect enum ABIType: Sendable, Equatable, CustomStringConvertible {
    /// Bit width 8…256, a multiple of 8.
    case uint(Int)
    case int(Int)
    case address
    case bool
    /// `bytes1` … `bytes32`.
    case fixedBytes(Int)
    case bytes
    case string
    case array(ABIType)
    case fixedArray(ABIType, Int)
    case tuple([ABIType])

    /// Parses canonical and common forms: `uint256`, `uint` (= uint256), `bytes32[]`, `address[3]`,
    /// `(uint256,address[])`, `tuple(uint256,bool)[]`.
    public init(parsing text: String) throws {
        var parser = TypeParser(text)
        let type = try parser.parseType()
        parser.skipSpaces()
        guard parser.atEnd else { throw ABIError.invalidType(text) }
        self = type
    }

    /// The form used in signatures: `uint256`, `(address,bytes32[])[2]`.
    public var canonical: String {
        switch self {
        case .uint(let bits): return "uint\(bits)"
        case .int(let bits): return "int\(bits)"
        case .address: return "address"
        case .bool: return "bool"
        case .fixedBytes(let n): return "bytes\(n)"
        case .bytes: return "bytes"
        case .string: return "string"
        case .array(let inner): return inner.canonical + "[]"
        case .fixedArray(let inner, let n): return inner.canonical + "[\(n)]"
        case .tuple(let items): return "(" + items.map(\.canonical).joined(separator: ",") + ")"
        }
    }

    public var description: String { canonical }

    /// Dynamic types are encoded in the tail and referenced by an offset.
    public var isDynamic: Bool {
        switch self {
        case .bytes, .string, .array: return true
        case .fixedArray(let inner, _): return inner.isDynamic
        case .tuple(let items): return items.contains { $0.isDynamic }
        default: return false
        }
    }

    /// Bytes this type takes in the head of an enclosing tuple.
    var headSize: Int {
        if isDynamic { return 32 }
        switch self {
        case .fixedArray(let inner, let n): return inner.headSize * n
        case .tuple(let items): return items.reduce(0) { $0 + $1.headSize }
        default: return 32
        }
    }

    func validate() throws {
        switch self {
        case .uint(let bits), .int(let bits):
            guard bits >= 8, bits <= 256, bits % 8 == 0 else { throw ABIError.invalidType(canonical) }
        case .fixedBytes(let n):
            guard n >= 1, n <= 32 else { throw ABIError.invalidType(canonical) }
        case .array(let inner):
            try inner.validate()
        case .fixedArray(let inner, let n):
            guard n >= 1 else { throw ABIError.invalidType(canonical) }
            try inner.validate()
        case .tuple(let items):
            for item in items { try item.validate() }
        case .address, .bool, .bytes, .string:
            break
        }
    }
}

/// Parses `name(type,type,…)` into the name and argument types.
func parseSignature(_ signature: String) throws -> (name: String, types: [ABIType]) {
    guard let open = signature.firstIndex(of: "(") else { throw ABIError.invalidType(signature) }
    let name = signature[..<open].trimmingSpaces
    guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "$" }) else {
        throw ABIError.invalidType(signature)
    }
    guard case .tuple(let types) = try ABIType(parsing: String(signature[open...])) else {
        throw ABIError.invalidType(signature)
    }
    return (name, types)
}

/// `name(canonical types)`, or the input unchanged when it does not parse.
func canonicalSignature(_ signature: String) -> String {
    guard let parsed = try? parseSignature(signature) else { return signature }
    return parsed.name + ABIType.tuple(parsed.types).canonical
}

extension Substring {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}

struct TypeParser {
    private let chars: [Character]
    private(set) var position = 0
    private let text: String

    init(_ text: String) {
        self.text = text
        chars = Array(text)
    }

    var atEnd: Bool { position >= chars.count }

    mutating func skipSpaces() {
        while position < chars.count, chars[position] == " " { position += 1 }
    }

    mutating func parseType() throws -> ABIType {
        skipSpaces()
        var type: ABIType
        if position < chars.count, chars[position] == "(" {
            type = try parseTupleBody()
        } else {
            let start = position
            while position < chars.count, chars[position].isLetter || chars[position].isNumber {
                position += 1
            }
            let word = String(chars[start..<position])
            if word == "tuple", position < chars.count, chars[position] == "(" {
                type = try parseTupleBody()
            } else {
                type = try Self.elementary(word, in: text)
            }
        }
        while position < chars.count, chars[position] == "[" {
            position += 1
            let start = position
            while position < chars.count, chars[position].isNumber { position += 1 }
            let digits = String(chars[start..<position])
            guard position < chars.count, chars[position] == "]" else { throw ABIError.invalidType(text) }
            position += 1
            if digits.isEmpty {
                type = .array(type)
            } else {
                guard let n = Int(digits), n >= 1 else { throw ABIError.invalidType(text) }
                type = .fixedArray(type, n)
            }
        }
        try type.validate()
        return type
    }

    private mutating func parseTupleBody() throws -> ABIType {
        position += 1  // "("
        var items = [ABIType]()
        skipSpaces()
        if position < chars.count, chars[position] == ")" {
            position += 1
            return .tuple([])
        }
        while true {
            items.append(try parseType())
            skipSpaces()
            guard position < chars.count else { throw ABIError.invalidType(text) }
            if chars[position] == "," {
                position += 1
            } else if chars[position] == ")" {
                position += 1
                return .tuple(items)
            } else {
                throw ABIError.invalidType(text)
            }
        }
    }

    private static func elementary(_ word: String, in text: String) throws -> ABIType {
        switch word {
        case "address": return .address
        case "bool": return .bool
        case "string": return .string
        case "bytes": return .bytes
        case "uint": return .uint(256)
        case "int": return .int(256)
        default:
            if word.hasPrefix("uint"), let bits = Int(word.dropFirst(4)), String(bits) == word.dropFirst(4) {
                return .uint(bits)
            }
            if word.hasPrefix("int"), let bits = Int(word.dropFirst(3)), String(bits) == word.dropFirst(3) {
                return .int(bits)
            }
            if word.hasPrefix("bytes"), let n = Int(word.dropFirst(5)), String(n) == word.dropFirst(5) {
                return .fixedBytes(n)
            }
            throw ABIError.invalidType(word.isEmpty ? text : word)
        }
    }
}
