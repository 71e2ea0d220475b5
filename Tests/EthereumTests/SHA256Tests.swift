import Ethereum
import Foundation
import Testing

@Suite struct SHA256Tests {
    private func hex(_ bytes: [UInt8]) -> String { String(bytes.hex.dropFirst(2)) }

    /// FIPS 180-2 appendix B and the NIST example messages.
    @Test func nistVectors() {
        #expect(hex(SHA256.hash([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(hex(SHA256.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // 448 bits: fills the first block's length field, so the padding needs a second block.
        let m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        #expect(hex(SHA256.hash(Array(m448.utf8))) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        let m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
        #expect(hex(SHA256.hash(Array(m896.utf8))) == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        #expect(hex(SHA256.hash([UInt8](repeating: 0x61, count: 1_000_000)))
            == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Every length 0..<300 (all padding cases around one to four blocks): SHA-256 of the
    /// concatenated digests of `pattern(n)`, computed with Python's hashlib.
    @Test func everyLengthAroundTheBlockBoundaries() {
        var chain = SHA256()
        for n in 0..<300 { chain.update(SHA256.hash(pattern(n))) }
        #expect(hex(chain.finalize()) == "fa70b867db0a30acb7218d62945db0df52eb393808b30675ea9aac6b058a9a9d")
    }

    @Test func incrementalUpdatesMatchOneShot() {
        var generator = SystemRandomNumberGenerator()
        for length in [0, 1, 55, 56, 63, 64, 65, 127, 128, 129, 1000, 4097] {
            let input = pattern(length)
            var hasher = SHA256()
            var rest = input[...]
            while !rest.isEmpty {
                let n = Int.random(in: 0...min(rest.count, 150), using: &generator)
                hasher.update(Array(rest.prefix(n)))
                rest = rest.dropFirst(n)
            }
            #expect(hasher.finalize() == SHA256.hash(input), "length \(length)")
        }
    }

    /// RFC 4231 test cases 1–4, 6 and 7 (5 is a truncated output).
    @Test func hmacRFC4231() {
        let cases: [(key: [UInt8], data: [UInt8], mac: String)] = [
            ([UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8),
             "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
            (Array("Jefe".utf8), Array("what do ya want for nothing?".utf8),
             "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
            ([UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50),
             "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
            (Array(1...25), [UInt8](repeating: 0xcd, count: 50),
             "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
            ([UInt8](repeating: 0xaa, count: 131), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
             "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
            ([UInt8](repeating: 0xaa, count: 131),
             Array(("This is a test using a larger than block-size key and a larger than block-size data. "
                 + "The key needs to be hashed before being used by the HMAC algorithm.").utf8),
             "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
        ]
        for (i, c) in cases.enumerated() {
            #expect(hex(SHA256.hmac(key: c.key, message: c.data)) == c.mac, "case \(i)")
        }
    }

    /// Key lengths 0..<200 (shorter than, equal to and longer than a block): SHA-256 of the
    /// concatenated HMAC(pattern(k), pattern(300 - k)), computed with Python's hmac.
    @Test func hmacEveryKeyLength() {
        var chain = SHA256()
        for k in 0..<200 { chain.update(SHA256.hmac(key: pattern(k), message: pattern(300 - k))) }
        #expect(hex(chain.finalize()) == "08ce9ed69fb2d8cbb6c7294ee09bc91a8f7dedac28d4f53e161baa5d60348330")
    }
}
