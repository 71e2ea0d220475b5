import BigInt
import Ethereum
import Foundation
import Testing

@Suite struct RLPTests {
    private func item(_ json: Any) throws -> RLP {
        if let hex = json as? String { return .bytes(try bytes(hex)) }
        guard let list = json as? [Any] else { throw FixtureError("bad RLP item \(json)") }
        return .list(try list.map(item))
    }

    private var fixtures: [String: Any] {
        get throws {
            guard let object = try Fixtures.object("rlp.json") as? [String: Any] else { throw FixtureError("rlp.json") }
            return object
        }
    }

    @Test func encodesAndDecodesFixtureItems() throws {
        let valid = try fixtures["valid"] as? [[String: Any]] ?? []
        #expect(valid.count >= 20)
        for entry in valid {
            let expected = try bytes(entry["encoded"] as? String ?? "")
            let value = try item(entry["item"] as Any)
            #expect(value.encoded() == expected, "\(Array(expected.prefix(8)).hex)")
            #expect(try RLP.decode(expected) == value)
        }
    }

    @Test func encodesFixtureIntegers() throws {
        let uints = try fixtures["uints"] as? [[String: String]] ?? []
        #expect(uints.count >= 10)
        for entry in uints {
            let value = try big(entry["value"] ?? "")
            let expected = try bytes(entry["encoded"] ?? "")
            #expect(RLP.uint(value).encoded() == expected, "\(value)")
            if value.bitWidth <= 64 { #expect(RLP.uint(UInt64(value)).encoded() == expected) }
            #expect(try RLP.decode(expected).uintValue() == value)
        }
    }

    @Test func rejectsWhatPyrlpRejects() throws {
        let invalid = try fixtures["invalid"] as? [String] ?? []
        #expect(invalid.count >= 10)
        for hex in invalid {
            let input = try bytes(hex)
            #expect(throws: RLPError.self, "\(hex.prefix(20))") { try RLP.decode(input) }
        }
    }

    @Test func specificNonCanonicalForms() throws {
        #expect(throws: RLPError.nonCanonical("single byte below 0x80 must be encoded as itself")) {
            try RLP.decode([0x81, 0x05])
        }
        #expect(throws: RLPError.trailingBytes(1)) { try RLP.decode([0x80, 0x80]) }
        #expect(throws: RLPError.truncated) { try RLP.decode([]) }
        #expect(throws: RLPError.self) { try RLP.decode([0x00, 0x01]).uintValue() }
        #expect(throws: RLPError.nonCanonical("integer with leading zero byte")) {
            try RLP.decode([0x82, 0x00, 0x01]).uintValue()
        }
        #expect(try RLP.decode([0x81, 0x80]) == .bytes([0x80]))
        #expect(try RLP.decode([0x80]).uintValue() == 0)
        // Deeply nested input stops at the depth limit instead of overflowing the stack.
        let deep = [UInt8](repeating: 0xc1, count: 5000) + [0xc0]
        #expect(throws: RLPError.self) { try RLP.decode(deep) }
    }

    @Test func knownSmallEncodings() {
        #expect(RLP.bytes(Array("dog".utf8)).encoded() == [0x83, 0x64, 0x6f, 0x67])
        #expect(RLP.list([.bytes(Array("cat".utf8)), .bytes(Array("dog".utf8))]).encoded()
            == [0xc8, 0x83, 0x63, 0x61, 0x74, 0x83, 0x64, 0x6f, 0x67])
        #expect(RLP.uint(0).encoded() == [0x80])
        #expect(RLP.uint(15).encoded() == [0x0f])
        #expect(RLP.uint(1024).encoded() == [0x82, 0x04, 0x00])
        #expect(RLP.list([]).encoded() == [0xc0])
    }
}
