/// A 20-byte account address.
public struct Address: Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public let bytes: [UInt8]

    public static let zero = Address(bytes: [UInt8](repeating: 0, count: 20))

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 20, "an address is 20 bytes, got \(bytes.count)")
        self.bytes = bytes
    }

    /// 40 hex digits, `0x` optional. All-lowercase and all-uppercase are accepted as is; mixed case must
    /// be a valid EIP-55 checksum, so a mistyped address is rejected instead of silently used.
    public init?(hex: String) {
        guard let bytes = [UInt8](hex: hex), bytes.count == 20 else { return nil }
        self.bytes = bytes
        let digits = hex.hasPrefix("0x") || hex.hasPrefix("0X") ? String(hex.dropFirst(2)) : hex
        let hasLower = digits.contains { $0.isLowercase }
        let hasUpper = digits.contains { $0.isUppercase }
        if hasLower && hasUpper && String(checksummed.dropFirst(2)) != digits { return nil }
    }

    /// The address from a 64-byte uncompressed public key (without the 0x04 prefix).
    public init(publicKey: [UInt8]) {
        precondition(publicKey.count == 64, "public key must be 64 bytes")
        self.init(bytes: Array(keccak256(publicKey)[12...]))
    }

    /// EIP-55 mixed-case checksum form, `0x`-prefixed.
    public var checksummed: String {
        let lower = Array(bytes.hex.utf8.dropFirst(2))
        let hash = keccak256(lower)
        var out = Array("0x".utf8)
        for (i, c) in lower.enumerated() {
            let nibble = i % 2 == 0 ? hash[i / 2] >> 4 : hash[i / 2] & 0x0f
            if c >= UInt8(ascii: "a") && nibble >= 8 {
                out.append(c - 32)
            } else {
                out.append(c)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { checksummed }
    public var debugDescription: String { "Address(\(checksummed))" }
}
