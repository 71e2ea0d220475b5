import CSecp256k1
import Foundation

public enum KeyError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidHex
    case invalidLength(Int)
    /// Zero or not below the curve order.
    case outOfRange
    case unreadableFile(path: String, reason: String)

    // Never includes key material.
    public var description: String {
        switch self {
        case .invalidHex: return "private key is not valid hex"
        case .invalidLength(let n): return "private key must be 32 bytes, got \(n)"
        case .outOfRange: return "private key is zero or not below the secp256k1 group order"
        case .unreadableFile(let path, let reason): return "cannot read private key file \(path): \(reason)"
        }
    }
}

public enum SignatureError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidHashLength(Int)
    case invalidSignature(String)
    case recoveryFailed
    case signingFailed(String)

    public var description: String {
        switch self {
        case .invalidHashLength(let n): return "message hash must be 32 bytes, got \(n)"
        case .invalidSignature(let why): return "invalid signature: \(why)"
        case .recoveryFailed: return "public key recovery failed"
        case .signingFailed(let why): return "signing failed: \(why)"
        }
    }
}

/// One process-wide context. After creation and randomization it is only passed as `const`,
/// which libsecp256k1 documents as safe to share between threads. Internal: ECVRF.swift uses it too.
final class Secp256k1Context: @unchecked Sendable {
    let pointer: OpaquePointer

    init() {
        guard let ctx = secp256k1_context_create(UInt32(SECP256K1_CONTEXT_NONE)) else {
            fatalError("secp256k1_context_create failed")
        }
        var seed = [UInt8](repeating: 0, count: 32)
        var rng = SystemRandomNumberGenerator()
        for i in seed.indices { seed[i] = rng.next() }
        // Blinding against timing side channels; failure only means no blinding.
        _ = secp256k1_context_randomize(ctx, seed)
        pointer = ctx
    }
}

let secp = Secp256k1Context()

/// A secp256k1 private key. Its `description`, `debugDescription` and mirror never show the secret.
public struct PrivateKey: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable {
    private let secret: [UInt8]
    /// 64 bytes: uncompressed point without the 0x04 prefix.
    public let publicKey: [UInt8]
    public let address: Address

    public init(bytes: [UInt8]) throws {
        guard bytes.count == 32 else { throw KeyError.invalidLength(bytes.count) }
        guard secp256k1_ec_seckey_verify(secp.pointer, bytes) == 1 else { throw KeyError.outOfRange }
        var pubkey = secp256k1_pubkey()
        guard secp256k1_ec_pubkey_create(secp.pointer, &pubkey, bytes) == 1 else { throw KeyError.outOfRange }
        secret = bytes
        publicKey = serializeUncompressed(pubkey)
        address = Address(publicKey: publicKey)
    }

    /// 64 hex digits; `0x` prefix and surrounding whitespace/newlines are ignored.
    public init(hex: String) throws {
        let trimmed = hex.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let bytes = [UInt8](hex: trimmed) else { throw KeyError.invalidHex }
        try self.init(bytes: bytes)
    }

    /// A file holding the key as hex (as `init(hex:)`), e.g. with a trailing newline.
    public init(contentsOfFile path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw KeyError.unreadableFile(path: path, reason: (error as NSError).localizedDescription)
        }
        guard let text = String(data: data, encoding: .utf8) else { throw KeyError.invalidHex }
        try self.init(hex: text)
    }

    public static func random() -> PrivateKey {
        var rng = SystemRandomNumberGenerator()
        while true {
            let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
            if let key = try? PrivateKey(bytes: bytes) { return key }
        }
    }

    /// The 32 secret bytes, for this module's own proving code (ECVRF.swift). Internal; never log it.
    var secretBytes: [UInt8] { secret }

    /// 32 bytes only this key's holder can compute: HMAC-SHA256 keyed with the secret over a
    /// domain tag and `label`. Lithium derives a task's id and nonce from it, so that nobody else
    /// can predict them and the same job always derives the same ones.
    public func derive(_ label: [UInt8]) -> [UInt8] {
        SHA256.hmac(key: secret, message: Array("crynux-worker derive v1".utf8) + label)
    }

    /// The secret as `0x`-hex. Only for tests and fixtures; never log it.
    public var hexForTests: String { secret.hex }

    /// Recoverable ECDSA over a 32-byte hash with the RFC 6979 nonce; low-S, `v` = recovery id 0/1.
    public func sign(hash: [UInt8]) throws -> Signature {
        guard hash.count == 32 else { throw SignatureError.invalidHashLength(hash.count) }
        var sig = secp256k1_ecdsa_recoverable_signature()
        guard secp256k1_ecdsa_sign_recoverable(secp.pointer, &sig, hash, secret, nil, nil) == 1 else {
            throw SignatureError.signingFailed("secp256k1_ecdsa_sign_recoverable")
        }
        var compact = [UInt8](repeating: 0, count: 64)
        var recid: Int32 = 0
        _ = secp256k1_ecdsa_recoverable_signature_serialize_compact(secp.pointer, &compact, &recid, &sig)

        var plain = secp256k1_ecdsa_signature()
        _ = secp256k1_ecdsa_recoverable_signature_convert(secp.pointer, &plain, &sig)
        // normalize returns 1 when it had to flip a high S; libsecp256k1 must never produce one.
        guard secp256k1_ecdsa_signature_normalize(secp.pointer, nil, &plain) == 0 else {
            throw SignatureError.signingFailed("libsecp256k1 produced a high-S signature")
        }
        // Ids 2/3 only occur when r overflowed the group order (probability ~2^-127); Ethereum cannot express them.
        guard recid == 0 || recid == 1 else { throw SignatureError.signingFailed("recovery id \(recid)") }
        return try Signature(r: Array(compact[0..<32]), s: Array(compact[32..<64]), v: UInt8(recid))
    }

    public static func == (a: PrivateKey, b: PrivateKey) -> Bool { a.secret == b.secret }

    public var description: String { "PrivateKey(\(address.checksummed), secret redacted)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["address": address], displayStyle: .struct) }
}

/// r ‖ s ‖ v with v the recovery id (0 or 1), as geth's `crypto.Sign` returns.
public struct Signature: Sendable, Equatable, CustomStringConvertible {
    public let r: [UInt8]
    public let s: [UInt8]
    public let v: UInt8

    public init(r: [UInt8], s: [UInt8], v: UInt8) throws {
        guard r.count == 32, s.count == 32 else { throw SignatureError.invalidSignature("r and s must be 32 bytes") }
        guard v <= 1 else { throw SignatureError.invalidSignature("v must be 0 or 1, got \(v)") }
        self.r = r
        self.s = s
        self.v = v
    }

    /// 65 bytes r ‖ s ‖ v. A final byte of 27/28 (the Bitcoin/`eth_sign` convention) is read as 0/1.
    public init(bytes65: [UInt8]) throws {
        guard bytes65.count == 65 else { throw SignatureError.invalidSignature("expected 65 bytes, got \(bytes65.count)") }
        let last = bytes65[64]
        try self.init(r: Array(bytes65[0..<32]), s: Array(bytes65[32..<64]), v: last >= 27 ? last &- 27 : last)
    }

    public var bytes65: [UInt8] { r + s + [v] }

    /// S in the lower half of the group order, as Ethereum (EIP-2) requires.
    public var isLowS: Bool {
        var plain = secp256k1_ecdsa_signature()
        guard secp256k1_ecdsa_signature_parse_compact(secp.pointer, &plain, r + s) == 1 else { return false }
        return secp256k1_ecdsa_signature_normalize(secp.pointer, nil, &plain) == 0
    }

    /// The 64-byte public key (no 0x04 prefix) that produced this signature over `hash`.
    public func recoverPublicKey(hash: [UInt8]) throws -> [UInt8] {
        guard hash.count == 32 else { throw SignatureError.invalidHashLength(hash.count) }
        var sig = secp256k1_ecdsa_recoverable_signature()
        guard secp256k1_ecdsa_recoverable_signature_parse_compact(secp.pointer, &sig, r + s, Int32(v)) == 1 else {
            throw SignatureError.invalidSignature("r or s out of range")
        }
        var pubkey = secp256k1_pubkey()
        guard secp256k1_ecdsa_recover(secp.pointer, &pubkey, &sig, hash) == 1 else {
            throw SignatureError.recoveryFailed
        }
        return serializeUncompressed(pubkey)
    }

    public func recoverAddress(hash: [UInt8]) throws -> Address {
        Address(publicKey: try recoverPublicKey(hash: hash))
    }

    public var description: String { "Signature(\(bytes65.hex))" }
}

/// True when `signature` is a valid low-S signature over `hash` by the key behind `address`.
public func verify(signature: Signature, hash: [UInt8], address: Address) -> Bool {
    guard hash.count == 32, signature.isLowS,
          let publicKey = try? signature.recoverPublicKey(hash: hash),
          Address(publicKey: publicKey) == address else { return false }
    var plain = secp256k1_ecdsa_signature()
    var pubkey = secp256k1_pubkey()
    guard secp256k1_ecdsa_signature_parse_compact(secp.pointer, &plain, signature.r + signature.s) == 1,
          secp256k1_ec_pubkey_parse(secp.pointer, &pubkey, [0x04] + publicKey, 65) == 1 else { return false }
    return secp256k1_ecdsa_verify(secp.pointer, &plain, hash, &pubkey) == 1
}

private func serializeUncompressed(_ pubkey: secp256k1_pubkey) -> [UInt8] {
    var pubkey = pubkey
    var out = [UInt8](repeating: 0, count: 65)
    var length = 65
    _ = secp256k1_ec_pubkey_serialize(secp.pointer, &out, &length, &pubkey, UInt32(SECP256K1_EC_UNCOMPRESSED))
    return Array(out[1..<65])
}
