import CSecp256k1

public enum VRFError: Error, Sendable, Equatable, CustomStringConvertible {
    /// None of the 256 try-and-increment counters gave a curve point (probability about 2^-256).
    case hashToCurveFailed
    /// A libsecp256k1 step refused its input: a zero scalar or the point at infinity, each with
    /// probability about 2^-128 or less. Names the step only; never includes key material.
    case arithmeticFailed(String)

    public var description: String {
        switch self {
        case .hashToCurveFailed: return "ECVRF hash to curve found no point in 256 tries"
        case .arithmeticFailed(let step): return "ECVRF arithmetic failed at \(step)"
        }
    }
}

/// ECVRF-SECP256K1-SHA256-TAI as vechain/go-ecvrf 96fa0442e765 (the version crynux-relay pins) computes it:
/// draft-irtf-cfrg-vrf-06 with suite byte 0xFE, try-and-increment hash to curve, the RFC 6979 nonce,
/// a 16-byte challenge, no trailing 0x00 in the hashes and the public key not in the challenge
/// (unlike RFC 9381). The proof is Gamma (33, compressed) ‖ c (16) ‖ s (32) = 81 bytes;
/// beta = SHA256(FE 03 ‖ Gamma) is the 32-byte output.
public enum ECVRF {
    public static let proofLength = 81
    static let suite: UInt8 = 0xFE

    /// The proof and output for `alpha` under `key`; deterministic.
    public static func prove(key: PrivateKey, alpha: [UInt8]) throws -> (proof: [UInt8], beta: [UInt8]) {
        let x = key.secretBytes
        let (h, hBytes) = try hashToCurve(publicKey: compressed(publicKey64: key.publicKey), alpha: alpha)

        let gamma = try multiply(h, by: x, step: "Gamma = x*H")
        let k = nonce(secret: x, hBytes: hBytes)
        var u = secp256k1_pubkey()
        guard secp256k1_ec_pubkey_create(secp.pointer, &u, k) == 1 else { throw VRFError.arithmeticFailed("U = k*G") }
        let v = try multiply(h, by: k, step: "V = k*H")

        let gammaBytes = serialize(gamma)
        let c = challenge(hBytes, gammaBytes, serialize(u), serialize(v))

        // s = (k + c*x) mod n, with libsecp256k1's scalar arithmetic. Fails only when c*x or the sum is zero.
        var s = x
        guard secp256k1_ec_seckey_tweak_mul(secp.pointer, &s, padded(c)) == 1 else {
            throw VRFError.arithmeticFailed("c*x")
        }
        guard secp256k1_ec_seckey_tweak_add(secp.pointer, &s, k) == 1 else {
            throw VRFError.arithmeticFailed("k + c*x")
        }
        return (gammaBytes + c + s, gammaToHash(gammaBytes))
    }

    /// Beta when `proof` is `publicKey`'s (64 bytes x ‖ y) proof for `alpha`, otherwise nil.
    /// Stricter than go-ecvrf in one way only: an s not below the group order is refused (go-ecvrf
    /// reduces it; an honest prover never produces one).
    public static func verify(publicKey: [UInt8], alpha: [UInt8], proof: [UInt8]) -> [UInt8]? {
        guard publicKey.count == 64, proof.count == proofLength else { return nil }
        var y = secp256k1_pubkey()
        guard secp256k1_ec_pubkey_parse(secp.pointer, &y, [0x04] + publicKey, 65) == 1 else { return nil }
        let gammaBytes = Array(proof[0..<33])
        let c = Array(proof[33..<49])
        let s = Array(proof[49..<81])
        guard let gamma = parse(compressed: gammaBytes),
              let hashed = try? hashToCurve(publicKey: compressed(publicKey64: publicKey), alpha: alpha)
        else { return nil }
        let (h, hBytes) = hashed

        // U = s*B - c*Y, V = s*H - c*Gamma. A zero or oversized s or c, or a sum at infinity, is refused.
        var sB = secp256k1_pubkey()
        guard secp256k1_ec_pubkey_create(secp.pointer, &sB, s) == 1,
              let cY = try? multiply(y, by: padded(c), step: "c*Y"),
              let u = difference(sB, cY),
              let sH = try? multiply(h, by: s, step: "s*H"),
              let cGamma = try? multiply(gamma, by: padded(c), step: "c*Gamma"),
              let v = difference(sH, cGamma)
        else { return nil }

        guard challenge(hBytes, gammaBytes, serialize(u), serialize(v)) == c else { return nil }
        return gammaToHash(gammaBytes)
    }

    /// The Crynux Relay's validation sampling: beta read as a big-endian unsigned integer, selected
    /// when it is divisible by 100 (about 1 task in 100).
    /// crynux-relay 24ffc26 utils/vrf.go:5-9 (`VrfNeedValidation`: `big.Int.SetBytes(beta) mod 100 == 0`),
    /// applied to the verified beta in service/validate_task.go:70-80 (selected: the task must be
    /// submitted as a validation group; not selected: as a single task).
    public static func selects(beta: [UInt8]) -> Bool {
        var remainder = 0
        for byte in beta { remainder = (remainder * 256 + Int(byte)) % 100 }
        return remainder == 0
    }

    // MARK: - The suite's pieces

    /// Try and increment: the first ctr in 0..<256 for which 0x02 ‖ SHA256(FE 01 ‖ pk ‖ alpha ‖ ctr)
    /// parses as a compressed point (x on the curve and below p). Returns H and its 33-byte encoding.
    static func hashToCurve(publicKey: [UInt8], alpha: [UInt8]) throws -> (secp256k1_pubkey, [UInt8]) {
        var prefix = SHA256()
        prefix.update([suite, 0x01])
        prefix.update(publicKey)
        prefix.update(alpha)
        for ctr in 0...255 {
            var hasher = prefix
            hasher.update([UInt8(ctr)])
            let candidate = [0x02] + hasher.finalize()
            if let point = parse(compressed: candidate) { return (point, candidate) }
        }
        throw VRFError.hashToCurveFailed
    }

    /// The first 16 bytes of SHA256(FE 02 ‖ H ‖ Gamma ‖ U ‖ V), each point compressed.
    static func challenge(_ points: [UInt8]...) -> [UInt8] {
        var hasher = SHA256()
        hasher.update([suite, 0x02])
        for point in points { hasher.update(point) }
        return Array(hasher.finalize().prefix(16))
    }

    static func gammaToHash(_ gamma: [UInt8]) -> [UInt8] {
        SHA256.hash([suite, 0x03] + gamma)
    }

    /// RFC 6979 section 3.2 with HMAC-SHA256, as go-ecvrf's rfc6979nonce does it: the message is the
    /// compressed H, hashed once with SHA-256; that digest (qlen = hlen = 256, so no shift) is reduced
    /// mod n (bits2octets) and follows the 32-byte secret in the HMAC input; no extra data.
    static func nonce(secret: [UInt8], hBytes: [UInt8]) -> [UInt8] {
        let seed = secret + reducedModN(SHA256.hash(hBytes))
        var k = [UInt8](repeating: 0x00, count: 32)
        var v = [UInt8](repeating: 0x01, count: 32)
        k = SHA256.hmac(key: k, message: v + [0x00] + seed)
        v = SHA256.hmac(key: k, message: v)
        k = SHA256.hmac(key: k, message: v + [0x01] + seed)
        v = SHA256.hmac(key: k, message: v)
        while true {
            v = SHA256.hmac(key: k, message: v)
            // seckey_verify is exactly the RFC's test 1 <= k <= n-1.
            if secp256k1_ec_seckey_verify(secp.pointer, v) == 1 { return v }
            k = SHA256.hmac(key: k, message: v + [0x00])
            v = SHA256.hmac(key: k, message: v)
        }
    }

    // MARK: - libsecp256k1 helpers

    /// The secp256k1 group order n, big-endian.
    private static let order: [UInt8] = [
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,
        0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48, 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36, 0x41, 0x41,
    ]

    /// A 32-byte big-endian value below 2^256 < 2n, reduced mod n by at most one subtraction.
    static func reducedModN(_ value: [UInt8]) -> [UInt8] {
        guard !value.lexicographicallyPrecedes(order) else { return value }
        var out = value
        var borrow = 0
        for i in stride(from: 31, through: 0, by: -1) {
            let d = Int(value[i]) - Int(order[i]) - borrow
            out[i] = UInt8((d + 256) & 0xFF)
            borrow = d < 0 ? 1 : 0
        }
        return out
    }

    private static func padded(_ c: [UInt8]) -> [UInt8] {
        [UInt8](repeating: 0, count: 32 - c.count) + c
    }

    private static func compressed(publicKey64 p: [UInt8]) -> [UInt8] {
        let prefix: UInt8 = p[63] & 1 == 1 ? 0x03 : 0x02
        return [prefix] + p[0..<32]
    }

    private static func parse(compressed bytes: [UInt8]) -> secp256k1_pubkey? {
        var point = secp256k1_pubkey()
        guard bytes.count == 33, secp256k1_ec_pubkey_parse(secp.pointer, &point, bytes, 33) == 1 else { return nil }
        return point
    }

    private static func serialize(_ point: secp256k1_pubkey) -> [UInt8] {
        var point = point
        var out = [UInt8](repeating: 0, count: 33)
        var length = 33
        _ = secp256k1_ec_pubkey_serialize(secp.pointer, &out, &length, &point, UInt32(SECP256K1_EC_COMPRESSED))
        return out
    }

    /// scalar (32 bytes, 1...n-1) times point.
    private static func multiply(_ point: secp256k1_pubkey, by scalar: [UInt8], step: String) throws -> secp256k1_pubkey {
        var point = point
        guard secp256k1_ec_pubkey_tweak_mul(secp.pointer, &point, scalar) == 1 else {
            throw VRFError.arithmeticFailed(step)
        }
        return point
    }

    /// a - b, or nil at infinity.
    private static func difference(_ a: secp256k1_pubkey, _ b: secp256k1_pubkey) -> secp256k1_pubkey? {
        var negB = b
        guard secp256k1_ec_pubkey_negate(secp.pointer, &negB) == 1 else { return nil }
        var sum = secp256k1_pubkey()
        let ok = withUnsafePointer(to: a) { pa in
            withUnsafePointer(to: negB) { pb in
                let inputs: [UnsafePointer<secp256k1_pubkey>?] = [pa, pb]
                return secp256k1_ec_pubkey_combine(secp.pointer, &sum, inputs, 2)
            }
        }
        return ok == 1 ? sum : nil
    }
}
