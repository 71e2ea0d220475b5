import BigInt
import Ethereum
import Foundation
import Testing

struct KeyFixture: Decodable {
    let private_key: String
    let public_key: String
    let address: String
}

struct SignatureFixture: Decodable {
    let private_key: String
    let address: String
    let hash: String
    let r: String
    let s: String
    let v: UInt8
}

@Suite struct KeyTests {
    @Test func keyOneHasTheWellKnownAddress() throws {
        let key = try PrivateKey(hex: "0x" + String(repeating: "0", count: 63) + "1")
        #expect(key.address.checksummed == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf")
        #expect(key.address == Address(hex: "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"))
    }

    @Test func fixtureKeys() throws {
        let fixtures = try Fixtures.load("keys.json", as: [KeyFixture].self)
        #expect(fixtures.count >= 20)
        for f in fixtures {
            let key = try PrivateKey(hex: f.private_key)
            #expect(key.publicKey.hex == f.public_key)
            #expect(key.address.checksummed == f.address)
            #expect(key.hexForTests == f.private_key)
            #expect(Address(hex: f.address) == key.address)
            #expect(Address(hex: f.address.lowercased()) == key.address)
            #expect(Address(hex: "0x" + f.address.dropFirst(2).uppercased()) == key.address)
        }
    }

    @Test func addressParsingChecksEIP55() throws {
        let good = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
        #expect(Address(hex: good) != nil)
        #expect(Address(hex: String(good.dropFirst(2))) != nil)
        // One letter's case flipped: a mixed-case address with a wrong checksum is refused.
        #expect(Address(hex: "0x7e5F4552091A69125d5DfCb7b8C2659029395Bdf") == nil)
        #expect(Address(hex: "0x7E5F4552091A69125d5DfCb7b8C2659029395B") == nil)
        #expect(Address(hex: "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf00") == nil)
        #expect(Address(hex: "0xZZ5F4552091A69125d5DfCb7b8C2659029395Bdf") == nil)
        #expect(Address.zero.checksummed == "0x0000000000000000000000000000000000000000")
        #expect("\(Address(hex: good)!)" == good)
    }

    @Test func invalidKeysAreRejected() {
        #expect(throws: KeyError.invalidLength(31)) { try PrivateKey(hex: String(repeating: "11", count: 31)) }
        #expect(throws: KeyError.invalidHex) { try PrivateKey(hex: "0x" + String(repeating: "g", count: 64)) }
        #expect(throws: KeyError.outOfRange) { try PrivateKey(bytes: [UInt8](repeating: 0, count: 32)) }
        // The group order n itself and anything above it are invalid.
        #expect(throws: KeyError.outOfRange) {
            try PrivateKey(hex: "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
        }
        #expect(throws: KeyError.outOfRange) { try PrivateKey(bytes: [UInt8](repeating: 0xff, count: 32)) }
    }

    @Test func keyFromFileTrimsWhitespace() throws {
        let hex = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
        let expected = try PrivateKey(hex: hex)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keytest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (i, content) in ["0x\(hex)\n", "  \(hex)\r\n", "\(hex)", "\n0x\(hex.uppercased())  \n"].enumerated() {
            let path = dir.appendingPathComponent("key\(i)").path
            try content.write(toFile: path, atomically: true, encoding: .utf8)
            #expect(try PrivateKey(contentsOfFile: path) == expected)
        }
        let missing = dir.appendingPathComponent("missing").path
        #expect {
            try PrivateKey(contentsOfFile: missing)
        } throws: { error in
            guard case KeyError.unreadableFile(let path, _) = error else { return false }
            return path == missing
        }
        let bad = dir.appendingPathComponent("bad").path
        try "0x\(hex)zz\n".write(toFile: bad, atomically: true, encoding: .utf8)
        #expect {
            try PrivateKey(contentsOfFile: bad)
        } throws: { error in
            !"\(error)".contains(hex)
        }
    }

    @Test func descriptionsNeverShowTheSecret() throws {
        let hex = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
        let key = try PrivateKey(hex: hex)
        var dumped = ""
        dump(key, to: &dumped)
        for text in ["\(key)", String(describing: key), String(reflecting: key), dumped, "\([key])"] {
            #expect(!text.lowercased().contains(hex))
            #expect(!text.lowercased().contains(hex.prefix(16)))
            #expect(text.contains("redacted") || text.contains(key.address.checksummed))
        }
    }

    @Test func randomKeysAreDistinctAndUsable() throws {
        let a = PrivateKey.random(), b = PrivateKey.random()
        #expect(a != b)
        #expect(a.address != b.address)
        let hash = keccak256("random key test")
        #expect(verify(signature: try a.sign(hash: hash), hash: hash, address: a.address))
    }
}

@Suite struct SignatureTests {
    @Test func signaturesMatchEthKeysByteForByte() throws {
        let fixtures = try Fixtures.load("signatures.json", as: [SignatureFixture].self)
        #expect(fixtures.count >= 30)
        for f in fixtures {
            let key = try PrivateKey(hex: f.private_key)
            let hash = try bytes(f.hash)
            let sig = try key.sign(hash: hash)
            #expect(sig.r.hex == f.r, "hash \(f.hash)")
            #expect(sig.s.hex == f.s, "hash \(f.hash)")
            #expect(sig.v == f.v, "hash \(f.hash)")
            #expect(sig.isLowS)
            #expect(sig.v == 0 || sig.v == 1)
            #expect(sig.bytes65.count == 65 && sig.bytes65.last == sig.v)
            #expect(try sig.recoverAddress(hash: hash).checksummed == f.address)
            #expect(try sig.recoverPublicKey(hash: hash) == key.publicKey)
            #expect(verify(signature: sig, hash: hash, address: key.address))
        }
    }

    @Test func verificationRejectsWrongInputs() throws {
        let key = try PrivateKey(hex: "0x" + String(repeating: "0", count: 63) + "1")
        let other = try PrivateKey(hex: "0x" + String(repeating: "0", count: 63) + "2")
        let hash = keccak256("message")
        let sig = try key.sign(hash: hash)
        #expect(verify(signature: sig, hash: hash, address: key.address))
        #expect(!verify(signature: sig, hash: keccak256("other message"), address: key.address))
        #expect(!verify(signature: sig, hash: hash, address: other.address))
        #expect(!verify(signature: sig, hash: Array(hash.prefix(31)), address: key.address))
        let flipped = try Signature(r: sig.r, s: sig.s, v: 1 - sig.v)
        #expect(!verify(signature: flipped, hash: hash, address: key.address))

        // The same signature with s' = n - s is mathematically valid but high-S: refused (EIP-2).
        let order = BigUInt("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", radix: 16)!
        let highS = [UInt8]((order - BigUInt(Data(sig.s))).serialize())
        let highSBytes = [UInt8](repeating: 0, count: 32 - highS.count) + highS
        let malleable = try Signature(r: sig.r, s: highSBytes, v: 1 - sig.v)
        #expect(!malleable.isLowS)
        #expect(!verify(signature: malleable, hash: hash, address: key.address))
    }

    @Test func neverProducesV27Or28() throws {
        var seen = Set<UInt8>()
        for i in 0..<64 {
            let key = PrivateKey.random()
            let sig = try key.sign(hash: keccak256("message \(i)"))
            seen.insert(sig.v)
            #expect(sig.isLowS)
            #expect(sig.v <= 1)
        }
        #expect(seen == [0, 1])
    }

    @Test func bytes65RoundTripAndLegacyV() throws {
        let key = try PrivateKey(hex: "0x" + String(repeating: "0", count: 63) + "1")
        let hash = keccak256("bytes65")
        let sig = try key.sign(hash: hash)
        #expect(try Signature(bytes65: sig.bytes65) == sig)
        #expect(try Signature(bytes65: sig.r + sig.s + [sig.v + 27]) == sig)
        #expect(throws: SignatureError.self) { try Signature(bytes65: sig.r + sig.s) }
        #expect(throws: SignatureError.self) { try Signature(r: sig.r, s: sig.s, v: 2) }
        #expect(throws: SignatureError.invalidHashLength(31)) { try key.sign(hash: Array(hash.prefix(31))) }
    }
}
