import BigInt
import Ethereum
import Foundation
import Testing

struct ECVRFFixtures: Decodable {
    struct Vector: Decodable {
        let index: Int
        let sk: String
        let pk: String
        let alpha: String
        let pi: String
        let beta: String
    }
    let source: String
    let vectors: [Vector]
}

extension ECVRFFixtures.Vector {
    /// go-ecvrf's file writes the secret without leading zeros ("01").
    func key() throws -> PrivateKey {
        try PrivateKey(hex: String(repeating: "0", count: max(0, 64 - sk.count)) + sk)
    }
}

@Suite struct ECVRFTests {
    private func vectors() throws -> [ECVRFFixtures.Vector] {
        try Fixtures.load("ecvrf-secp256k1.json", as: ECVRFFixtures.self).vectors
    }

    /// n, the secp256k1 group order.
    private let order = BigUInt("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141", radix: 16)!

    private func word(_ value: BigUInt) -> [UInt8] {
        let raw = [UInt8](value.serialize())
        return [UInt8](repeating: 0, count: 32 - raw.count) + raw
    }

    @Test func goECVRFVectorsProveByteForByte() throws {
        let all = try vectors()
        #expect(all.count == 15)
        for v in all {
            let key = try v.key()
            let pk = try bytes(v.pk)
            // The file's compressed key is this key's x with the parity of its y.
            #expect(Array(pk.dropFirst()) == Array(key.publicKey.prefix(32)), "vector \(v.index)")
            #expect(pk[0] == 0x02 | (key.publicKey[63] & 1), "vector \(v.index)")

            let (proof, beta) = try ECVRF.prove(key: key, alpha: try bytes(v.alpha))
            #expect(proof.count == ECVRF.proofLength)
            #expect(proof == (try bytes(v.pi)), "vector \(v.index) pi")
            #expect(beta == (try bytes(v.beta)), "vector \(v.index) beta")
            #expect(ECVRF.verify(publicKey: key.publicKey, alpha: try bytes(v.alpha), proof: try bytes(v.pi))
                == (try bytes(v.beta)), "vector \(v.index) verify")
        }
    }

    @Test func proofsAreDeterministicAndRoundTrip() throws {
        var generator = SystemRandomNumberGenerator()
        for i in 0..<20 {
            let key = PrivateKey.random()
            let alpha = (0..<[0, 1, 32, 33, 200][i % 5]).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            let first = try ECVRF.prove(key: key, alpha: alpha)
            let second = try ECVRF.prove(key: key, alpha: alpha)
            #expect(first.proof == second.proof && first.beta == second.beta)
            #expect(first.beta.count == 32)
            #expect(ECVRF.verify(publicKey: key.publicKey, alpha: alpha, proof: first.proof) == first.beta)
        }
    }

    @Test func tamperedProofsAreRefused() throws {
        for v in try vectors() {
            let key = try v.key(), alpha = try bytes(v.alpha), pi = try bytes(v.pi)
            // Gamma's prefix (its negation), Gamma's x, c's first and last byte, s's first and last byte.
            for (byte, bit) in [(0, 0), (1, 0), (17, 5), (32, 7), (33, 7), (48, 0), (49, 3), (80, 0)] {
                var bad = pi
                bad[byte] ^= 1 << bit
                #expect(ECVRF.verify(publicKey: key.publicKey, alpha: alpha, proof: bad) == nil,
                        "vector \(v.index) byte \(byte) bit \(bit)")
            }
        }
        // Every byte of one proof, one random bit each.
        let v = try vectors()[0]
        let key = try v.key(), alpha = try bytes(v.alpha), pi = try bytes(v.pi)
        for byte in pi.indices {
            var bad = pi
            bad[byte] ^= 1 << UInt8.random(in: 0...7)
            #expect(ECVRF.verify(publicKey: key.publicKey, alpha: alpha, proof: bad) == nil, "byte \(byte)")
        }
    }

    @Test func malformedProofsAndKeysAreRefused() throws {
        let v = try vectors()[0]
        let key = try v.key(), alpha = try bytes(v.alpha), pi = try bytes(v.pi)
        #expect(ECVRF.verify(publicKey: key.publicKey, alpha: alpha, proof: pi) != nil)
        #expect(ECVRF.verify(publicKey: key.publicKey, alpha: alpha, proof: Array(pi.dropLast())) == nil)
        #expect(ECVRF.verify(publicKey: key.publicKey, alpha: alpha, proof: pi + [0]) == nil)
        #expect(ECVRF.verify(publicKey: key.publicKey, alpha: alpha, proof: []) == nil)
        // Gamma as an uncompressed-point prefix, or with x >= p.
        #expect(ECVRF.verify(publicKey: key.publicKey, alpha: alpha, proof: [0x04] + pi.dropFirst()) == nil)
        #expect(ECVRF.verify(publicKey: key.publicKey, alpha: alpha,
                             proof: [0x02] + [UInt8](repeating: 0xff, count: 32) + pi.dropFirst(33)) == nil)
        // Zero c, zero s, s = n, and s + n (go-ecvrf would reduce that one; this verifier refuses it).
        let gammaC = Array(pi.prefix(49))
        let s = BigUInt(Data(pi.suffix(32)))
        #expect(ECVRF.verify(publicKey: key.publicKey, alpha: alpha,
                             proof: Array(pi.prefix(33)) + [UInt8](repeating: 0, count: 16) + pi.suffix(32)) == nil)
        #expect(ECVRF.verify(publicKey: key.publicKey, alpha: alpha, proof: gammaC + [UInt8](repeating: 0, count: 32)) == nil)
        #expect(ECVRF.verify(publicKey: key.publicKey, alpha: alpha, proof: gammaC + word(order)) == nil)
        if s + order < BigUInt(1) << 256 {
            #expect(ECVRF.verify(publicKey: key.publicKey, alpha: alpha, proof: gammaC + word(s + order)) == nil)
        }
        // Public keys: wrong length, not on the curve.
        #expect(ECVRF.verify(publicKey: Array(key.publicKey.dropLast()), alpha: alpha, proof: pi) == nil)
        var offCurve = key.publicKey
        offCurve[63] ^= 1
        #expect(ECVRF.verify(publicKey: offCurve, alpha: alpha, proof: pi) == nil)
    }

    @Test func wrongAlphaOrKeyIsRefused() throws {
        let all = try vectors()
        for (i, v) in all.enumerated() {
            let key = try v.key(), alpha = try bytes(v.alpha), pi = try bytes(v.pi)
            #expect(ECVRF.verify(publicKey: key.publicKey, alpha: alpha + [0], proof: pi) == nil)
            #expect(ECVRF.verify(publicKey: key.publicKey, alpha: Array(alpha.dropLast()), proof: pi) == nil)
            #expect(ECVRF.verify(publicKey: key.publicKey, alpha: [], proof: pi) == nil)
            let other = try all[(i + 1) % all.count].key()
            #expect(ECVRF.verify(publicKey: other.publicKey, alpha: alpha, proof: pi) == nil, "vector \(v.index)")
        }
    }

    /// crynux-relay utils/vrf.go: beta as a big-endian integer, selected when divisible by 100.
    @Test func selectionIsBetaModHundred() throws {
        #expect(ECVRF.selects(beta: [UInt8](repeating: 0, count: 32)))
        #expect(ECVRF.selects(beta: [UInt8](repeating: 0, count: 31) + [100]))
        #expect(ECVRF.selects(beta: [UInt8](repeating: 0, count: 30) + [0x01, 0x2c]))   // 300
        #expect(ECVRF.selects(beta: [UInt8](repeating: 0, count: 30) + [0x64, 0x00]))   // 25600
        #expect(!ECVRF.selects(beta: [UInt8](repeating: 0, count: 31) + [1]))
        #expect(!ECVRF.selects(beta: [UInt8](repeating: 0, count: 31) + [200 + 1]))
        // 256: the last byte alone is 0, the number is not a multiple of 100.
        #expect(!ECVRF.selects(beta: [UInt8](repeating: 0, count: 30) + [0x01, 0x00]))
        // 2^256 - 1 ≡ 35 (mod 100); 2^256 - 36 ≡ 0.
        #expect(!ECVRF.selects(beta: [UInt8](repeating: 0xff, count: 32)))
        #expect(ECVRF.selects(beta: [UInt8](repeating: 0xff, count: 31) + [0xff - 35]))

        var generator = SystemRandomNumberGenerator()
        var selected = 0
        for _ in 0..<2000 {
            let beta = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            let expected = BigUInt(Data(beta)) % 100 == 0
            #expect(ECVRF.selects(beta: beta) == expected)
            if expected { selected += 1 }
        }
        #expect(selected < 100)   // about 20 expected
        for v in try vectors() {
            let beta = try bytes(v.beta)
            #expect(ECVRF.selects(beta: beta) == (BigUInt(Data(beta)) % 100 == 0), "vector \(v.index)")
        }
    }

    @Test func errorsNameTheStepOnly() {
        #expect("\(VRFError.arithmeticFailed("c*x"))" == "ECVRF arithmetic failed at c*x")
        #expect("\(VRFError.hashToCurveFailed)".contains("256"))
    }
}
