import BigInt
import Ethereum
import Foundation

/// Reads the JSON vectors written by `scripts/make-fixtures` (Python: eth-hash, eth-keys, eth-account, eth-abi, rlp).
enum Fixtures {
    static func data(_ name: String) throws -> Data {
        guard let dir = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw FixtureError("Fixtures folder missing from the test bundle")
        }
        return try Data(contentsOf: dir.appendingPathComponent(name))
    }

    static func load<T: Decodable>(_ name: String, as type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(T.self, from: data(name))
    }

    static func object(_ name: String) throws -> Any {
        try JSONSerialization.jsonObject(with: data(name))
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func bytes(_ hex: String) throws -> [UInt8] {
    guard let b = [UInt8](hex: hex) else { throw FixtureError("bad hex in fixture: \(hex.prefix(40))") }
    return b
}

func big(_ decimal: String) throws -> BigUInt {
    guard let v = BigUInt(decimal, radix: 10) else { throw FixtureError("bad integer in fixture: \(decimal)") }
    return v
}

/// The deterministic long inputs of keccak.json "patterns" (same formula as the generator).
func pattern(_ length: Int) -> [UInt8] {
    (0..<length).map { UInt8($0 % 251) }
}

/// Builds an `ABIValue` from the generator's JSON (integers as decimal strings, bytes as hex, lists for
/// arrays and tuples), guided by the type.
func abiValue(_ type: ABIType, _ json: Any) throws -> ABIValue {
    switch type {
    case .uint:
        return .uint(try big(json as? String ?? ""))
    case .int:
        guard let s = json as? String, let v = BigInt(s, radix: 10) else { throw FixtureError("bad int \(json)") }
        return .int(v)
    case .address:
        guard let s = json as? String, let a = Address(hex: s) else { throw FixtureError("bad address \(json)") }
        return .address(a)
    case .bool:
        guard let b = json as? Bool else { throw FixtureError("bad bool \(json)") }
        return .bool(b)
    case .fixedBytes:
        return .fixedBytes(try bytes(json as? String ?? "?"))
    case .bytes:
        return .bytes(try bytes(json as? String ?? "?"))
    case .string:
        guard let s = json as? String else { throw FixtureError("bad string \(json)") }
        return .string(s)
    case .array(let inner), .fixedArray(let inner, _):
        guard let items = json as? [Any] else { throw FixtureError("bad array \(json)") }
        return .array(try items.map { try abiValue(inner, $0) })
    case .tuple(let types):
        guard let items = json as? [Any], items.count == types.count else { throw FixtureError("bad tuple \(json)") }
        return .tuple(try zip(types, items).map { try abiValue($0, $1) })
    }
}
