import Foundation

/// Well-known type OIDs (`pg_type.oid`) that have a fixed value in every database.
public enum PostgresOID {
    public static let bool: UInt32 = 16
    public static let bytea: UInt32 = 17
    public static let name: UInt32 = 19
    public static let int8: UInt32 = 20
    public static let int2: UInt32 = 21
    public static let int4: UInt32 = 23
    public static let text: UInt32 = 25
    public static let oid: UInt32 = 26
    public static let json: UInt32 = 114
    public static let float4: UInt32 = 700
    public static let float8: UInt32 = 701
    public static let bpchar: UInt32 = 1042
    public static let varchar: UInt32 = 1043
    public static let timestamp: UInt32 = 1114
    public static let timestamptz: UInt32 = 1184
    public static let interval: UInt32 = 1186
    public static let numeric: UInt32 = 1700
    public static let uuid: UInt32 = 2950
    public static let jsonb: UInt32 = 3802
}

/// One bound parameter as libpq takes it. Strings travel as text with an unspecified type
/// (the server infers it, so a string can feed a `numeric` or `jsonb` column); the other
/// types travel in binary with their exact OID, so bytes are never hex-inflated.
public struct PostgresParameter: Sendable {
    public let oid: UInt32
    public let isBinary: Bool
    public let bytes: [UInt8]?

    public static let null = PostgresParameter(oid: 0, isBinary: false, bytes: nil)

    public init(oid: UInt32, isBinary: Bool, bytes: [UInt8]?) {
        self.oid = oid
        self.isBinary = isBinary
        self.bytes = bytes
    }
}

public protocol PostgresEncodable {
    var postgresParameter: PostgresParameter { get }
}

/// A type that can be read from a result column (results are always requested in binary).
public protocol PostgresDecodable {
    static func decode(_ bytes: [UInt8], oid: UInt32) throws -> Self
}

// MARK: - Big-endian helpers

@inline(__always)
private func bigEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}

@inline(__always)
private func readBigEndian<T: FixedWidthInteger>(_ bytes: [UInt8], as: T.Type, at offset: Int = 0) -> T {
    var value: T = 0
    for i in 0..<MemoryLayout<T>.size { value = (value << 8) | T(truncatingIfNeeded: bytes[offset + i]) }
    return value
}

private func decodingError(_ type: String, _ oid: UInt32) -> PostgresError {
    PostgresError(.decoding, "cannot read a column of type OID \(oid) as \(type)")
}

/// Seconds between 1970-01-01 and PostgreSQL's epoch 2000-01-01.
private let postgresEpochOffset: Double = 946_684_800

// MARK: - Encodable conformances

extension String: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .init(oid: 0, isBinary: false, bytes: Array(utf8)) }
}
extension Substring: PostgresEncodable {
    public var postgresParameter: PostgresParameter { String(self).postgresParameter }
}
extension Int64: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .init(oid: PostgresOID.int8, isBinary: true, bytes: bigEndianBytes(self)) }
}
extension Int: PostgresEncodable {
    public var postgresParameter: PostgresParameter { Int64(self).postgresParameter }
}
extension Int32: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .init(oid: PostgresOID.int4, isBinary: true, bytes: bigEndianBytes(self)) }
}
extension UInt64: PostgresEncodable {
    /// As text: a UInt64 above Int64.max would not fit `int8`; the server casts to the column's type.
    public var postgresParameter: PostgresParameter { String(self).postgresParameter }
}
extension Bool: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .init(oid: PostgresOID.bool, isBinary: true, bytes: [self ? 1 : 0]) }
}
extension Double: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .init(oid: PostgresOID.float8, isBinary: true, bytes: bigEndianBytes(self.bitPattern)) }
}
extension Date: PostgresEncodable {
    public var postgresParameter: PostgresParameter {
        let micros = Int64(((timeIntervalSince1970 - postgresEpochOffset) * 1_000_000).rounded())
        return .init(oid: PostgresOID.timestamptz, isBinary: true, bytes: bigEndianBytes(micros))
    }
}
extension Data: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .init(oid: PostgresOID.bytea, isBinary: true, bytes: Array(self)) }
}
extension Array: PostgresEncodable where Element == UInt8 {
    public var postgresParameter: PostgresParameter { .init(oid: PostgresOID.bytea, isBinary: true, bytes: self) }
}
extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    public var postgresParameter: PostgresParameter { self?.postgresParameter ?? .null }
}

// MARK: - Decodable conformances

extension String: PostgresDecodable {
    public static func decode(_ bytes: [UInt8], oid: UInt32) throws -> String {
        switch oid {
        case PostgresOID.numeric: return try PostgresNumeric.decimalString(bytes)
        case PostgresOID.jsonb:
            // Binary jsonb is a version byte (1) followed by the JSON text.
            guard bytes.first == 1 else { throw decodingError("String", oid) }
            return String(decoding: bytes.dropFirst(), as: UTF8.self)
        case PostgresOID.int2, PostgresOID.int4, PostgresOID.int8:
            return String(try Int64.decode(bytes, oid: oid))
        case PostgresOID.bytea, PostgresOID.bool, PostgresOID.float4, PostgresOID.float8,
             PostgresOID.timestamp, PostgresOID.timestamptz, PostgresOID.uuid, PostgresOID.interval:
            throw decodingError("String", oid)
        default:
            // text, varchar, name, json, enum labels, ...: the binary form is the UTF-8 text.
            return String(decoding: bytes, as: UTF8.self)
        }
    }
}
extension Int64: PostgresDecodable {
    public static func decode(_ bytes: [UInt8], oid: UInt32) throws -> Int64 {
        switch (oid, bytes.count) {
        case (PostgresOID.int8, 8): return readBigEndian(bytes, as: Int64.self)
        case (PostgresOID.int4, 4), (PostgresOID.oid, 4): return Int64(readBigEndian(bytes, as: Int32.self))
        case (PostgresOID.int2, 2): return Int64(readBigEndian(bytes, as: Int16.self))
        case (PostgresOID.numeric, _):
            guard let value = Int64(try PostgresNumeric.decimalString(bytes)) else { throw decodingError("Int64", oid) }
            return value
        default: throw decodingError("Int64", oid)
        }
    }
}
extension Int: PostgresDecodable {
    public static func decode(_ bytes: [UInt8], oid: UInt32) throws -> Int { Int(try Int64.decode(bytes, oid: oid)) }
}
extension Int32: PostgresDecodable {
    public static func decode(_ bytes: [UInt8], oid: UInt32) throws -> Int32 {
        guard let value = Int32(exactly: try Int64.decode(bytes, oid: oid)) else { throw decodingError("Int32", oid) }
        return value
    }
}
extension UInt64: PostgresDecodable {
    public static func decode(_ bytes: [UInt8], oid: UInt32) throws -> UInt64 {
        if oid == PostgresOID.numeric, let value = UInt64(try PostgresNumeric.decimalString(bytes)) { return value }
        guard let value = UInt64(exactly: try Int64.decode(bytes, oid: oid)) else { throw decodingError("UInt64", oid) }
        return value
    }
}
extension Bool: PostgresDecodable {
    public static func decode(_ bytes: [UInt8], oid: UInt32) throws -> Bool {
        guard oid == PostgresOID.bool, bytes.count == 1 else { throw decodingError("Bool", oid) }
        return bytes[0] != 0
    }
}
extension Double: PostgresDecodable {
    public static func decode(_ bytes: [UInt8], oid: UInt32) throws -> Double {
        switch (oid, bytes.count) {
        case (PostgresOID.float8, 8): return Double(bitPattern: readBigEndian(bytes, as: UInt64.self))
        case (PostgresOID.float4, 4): return Double(Float(bitPattern: readBigEndian(bytes, as: UInt32.self)))
        case (PostgresOID.numeric, _):
            guard let value = Double(try PostgresNumeric.decimalString(bytes)) else { throw decodingError("Double", oid) }
            return value
        case (PostgresOID.int2, _), (PostgresOID.int4, _), (PostgresOID.int8, _):
            return Double(try Int64.decode(bytes, oid: oid))
        default: throw decodingError("Double", oid)
        }
    }
}
extension Date: PostgresDecodable {
    public static func decode(_ bytes: [UInt8], oid: UInt32) throws -> Date {
        guard oid == PostgresOID.timestamptz || oid == PostgresOID.timestamp, bytes.count == 8 else {
            throw decodingError("Date", oid)
        }
        let micros = readBigEndian(bytes, as: Int64.self)
        return Date(timeIntervalSince1970: Double(micros) / 1_000_000 + postgresEpochOffset)
    }
}
extension Data: PostgresDecodable {
    public static func decode(_ bytes: [UInt8], oid: UInt32) throws -> Data {
        guard oid == PostgresOID.bytea else { throw decodingError("Data", oid) }
        return Data(bytes)
    }
}
extension Array: PostgresDecodable where Element == UInt8 {
    public static func decode(_ bytes: [UInt8], oid: UInt32) throws -> [UInt8] {
        guard oid == PostgresOID.bytea else { throw decodingError("[UInt8]", oid) }
        return bytes
    }
}

/// Binary `numeric`: int16 ndigits, int16 weight, uint16 sign, int16 dscale, then base-10000 digits.
enum PostgresNumeric {
    static func decimalString(_ bytes: [UInt8]) throws -> String {
        guard bytes.count >= 8 else { throw PostgresError(.decoding, "truncated numeric value") }
        let ndigits = Int(readBigEndian(bytes, as: Int16.self, at: 0))
        let weight = Int(readBigEndian(bytes, as: Int16.self, at: 2))
        let sign = readBigEndian(bytes, as: UInt16.self, at: 4)
        let dscale = Int(readBigEndian(bytes, as: Int16.self, at: 6))
        guard bytes.count == 8 + 2 * ndigits else { throw PostgresError(.decoding, "malformed numeric value") }
        if sign == 0xC000 { return "NaN" }
        let digits = (0..<ndigits).map { Int(readBigEndian(bytes, as: Int16.self, at: 8 + 2 * $0)) }

        var integer = ""
        if weight >= 0 {
            for i in 0...weight {
                let group = i < digits.count ? digits[i] : 0
                integer += i == 0 ? String(group) : pad4(group)
            }
        } else {
            integer = "0"
        }
        var fraction = ""
        if dscale > 0 {
            var i = weight + 1
            while fraction.count < dscale {
                let group = (i >= 0 && i < digits.count) ? digits[i] : 0
                fraction += pad4(group)
                i += 1
            }
            fraction = String(fraction.prefix(dscale))
        }
        let body = fraction.isEmpty ? integer : "\(integer).\(fraction)"
        return sign == 0x4000 ? "-" + body : body
    }

    private static func pad4(_ n: Int) -> String {
        let s = String(n)
        return String(repeating: "0", count: 4 - s.count) + s
    }
}
