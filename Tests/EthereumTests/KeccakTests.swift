import Ethereum
import Foundation
import Testing

struct KeccakFixtures: Decodable {
    struct Case: Decodable { let input: String; let hash: String }
    struct Pattern: Decodable { let length: Int; let hash: String }
    struct Text: Decodable { let text: String; let hash: String }
    let cases: [Case]
    let patterns: [Pattern]
    let strings: [Text]
}

@Suite struct KeccakTests {
    @Test func emptyInputIsKeccakNotSHA3() {
        #expect(keccak256([UInt8]()).hex == "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
        #expect(keccak256("").hex == "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
        // SHA3-256("") would be a7ffc6f8…; the original padding must be used.
        #expect(!keccak256([UInt8]()).hex.hasPrefix("0xa7ffc6f8"))
    }

    @Test func fixtureInputs() throws {
        let fixtures = try Fixtures.load("keccak.json", as: KeccakFixtures.self)
        let lengths = Set(try fixtures.cases.map { try bytes($0.input).count })
        #expect(lengths.isSuperset(of: [0, 135, 136, 137, 271, 272, 273, 10000]))
        for c in fixtures.cases {
            let input = try bytes(c.input)
            #expect(keccak256(input).hex == c.hash, "length \(input.count)")
        }
        for s in fixtures.strings {
            #expect(keccak256(s.text).hex == s.hash, "\(s.text)")
            #expect(keccak256(Array(s.text.utf8)).hex == s.hash)
        }
    }

    @Test func longPatternInputs() throws {
        let fixtures = try Fixtures.load("keccak.json", as: KeccakFixtures.self)
        #expect(fixtures.patterns.contains { $0.length > 5_000_000 })
        for p in fixtures.patterns {
            #expect(keccak256(pattern(p.length)).hex == p.hash, "pattern length \(p.length)")
        }
    }

    @Test func incrementalUpdatesMatchOneShot() throws {
        let fixtures = try Fixtures.load("keccak.json", as: KeccakFixtures.self)
        var generator = SystemRandomNumberGenerator()
        for c in fixtures.cases {
            let input = try bytes(c.input)
            var hasher = Keccak256()
            var rest = input[...]
            while !rest.isEmpty {
                let n = Int.random(in: 0...min(rest.count, 300), using: &generator)
                hasher.update(Array(rest.prefix(n)))
                rest = rest.dropFirst(n)
            }
            #expect(hasher.finalize().hex == c.hash, "length \(input.count)")
        }
    }

    /// crynux-protocol.md §2.5: Go-JSON payload ‖ decimal timestamp, hashed without any prefix.
    @Test func relaySigningVectors() {
        let vectors: [(String, String)] = [
            (#"{"image_num":"0","task_id":42}1700000000"#,
             "0x4ba6a26c06c8520a7ff2562462984dfe3b480a9ada737ed80b1246a7d86acdf7"),
            (#"{"task_id":42}1700000000"#,
             "0x5b66ce7ed90590b05b2dc2c5e0696b8e1c7e4ce2b7516bc496883f516bd5f9df"),
            (#"{"task_args":"{\"a\":\"x \u003c y \u0026 z\"}","task_id":42}1700000000"#,
             "0xece3a0d8447b38decb07ae225be518c202a795d4a8b350860fcf9cc9c747840c"),
        ]
        for (message, hash) in vectors {
            #expect(keccak256(message).hex == hash, "\(message)")
        }
    }

    @Test func hashesLargeInputsQuickly() {
        let input = [UInt8](repeating: 0x61, count: 16 << 20)
        let start = Date()
        let digest = keccak256(input)
        let seconds = Date().timeIntervalSince(start)
        #expect(digest.count == 32)
        // Generous even for unoptimized debug builds; a per-byte allocation would blow well past it.
        #expect(seconds < 10, "16 MiB took \(seconds) s")
    }
}
