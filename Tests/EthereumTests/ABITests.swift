import BigInt
import Ethereum
import Foundation
import Testing

@Suite struct ABITests {
    private var fixtures: [String: Any] {
        get throws {
            guard let object = try Fixtures.object("abi.json") as? [String: Any] else { throw FixtureError("abi.json") }
            return object
        }
    }

    @Test func fixtureValuesEncodeAndDecode() throws {
        let cases = try fixtures["cases"] as? [[String: Any]] ?? []
        #expect(cases.count >= 70)
        for c in cases {
            let name = c["name"] as? String ?? "?"
            let types = try (c["types"] as? [String] ?? []).map { try ABIType(parsing: $0) }
            let jsonValues = c["values"] as? [Any] ?? []
            let values = try zip(types, jsonValues).map { try abiValue($0, $1) }
            let expected = try bytes(c["encoded"] as? String ?? "")
            #expect(try ABI.encode(values, types: types) == expected, "\(name)")
            #expect(try ABI.decode(types, from: expected) == values, "\(name)")
        }
    }

    /// The getTask return value (protocol §1.3): one dynamic tuple, so the data starts with offset 0x20.
    @Test func taskInfoRoundTripsAndMatchesEthAbi() throws {
        let cases = (try fixtures["cases"] as? [[String: Any]] ?? []).filter { ($0["name"] as? String)?.hasPrefix("TaskInfo") == true }
        #expect(cases.count == 3)
        let taskInfo = try ABIType(parsing: "(uint256,uint256,address,bytes32,bytes32,uint256,bool,address[],bytes32[],"
            + "bytes32[],uint256[],bytes[],uint256[],address,bool,uint256,uint256,uint256)")
        guard case .tuple(let fields) = taskInfo else { Issue.record("not a tuple"); return }
        #expect(fields.count == 18)
        #expect(taskInfo.isDynamic)
        for c in cases {
            let expected = try bytes(c["encoded"] as? String ?? "")
            let value = try abiValue(taskInfo, (c["values"] as? [Any] ?? [])[0])
            #expect(try ABI.encode([value], types: [taskInfo]) == expected)
            let decoded = try ABI.decode([taskInfo], from: expected)
            #expect(decoded == [value])
            #expect(Array(expected[0..<32]) == [UInt8](repeating: 0, count: 31) + [0x20])
            // Static fields sit at 32 + 32k as protocol §1.3 says (id k=0, resultNode k=13, timeout k=15).
            let items = decoded[0].tuple ?? []
            #expect(items[0].uint == BigUInt(Data(expected[32..<64])))
            #expect(items[13].address?.bytes == Array(expected[(32 + 32 * 13 + 12)..<(32 + 32 * 14)]))
            #expect(items[15].uint == BigUInt(Data(expected[(32 + 32 * 15)..<(32 + 32 * 16)])))
        }
    }

    @Test func selectorsAndTopics() throws {
        #expect(ABI.selector("createTask(uint256,bytes32,bytes32,uint256,uint256)").hex == "0x043b438f")
        #expect(ABI.selector("getTask(uint256)").hex == "0x1d65e77e")
        // Solidity shorthand is canonicalized before hashing.
        #expect(ABI.selector("createTask(uint,bytes32,bytes32,uint,uint)").hex == "0x043b438f")
        for s in try fixtures["selectors"] as? [[String: String]] ?? [] {
            #expect(ABI.selector(s["signature"]!).hex == s["selector"]!)
        }
        let topics = try fixtures["topics"] as? [[String: String]] ?? []
        #expect(topics.count >= 5)
        for t in topics {
            #expect(ABI.eventTopic(t["signature"]!).hex == t["topic"]!)
        }
        // Protocol §1.2 table.
        #expect(ABI.eventTopic("TaskPending(uint256,uint256,address,bytes32,bytes32)").hex
            == "0xa8b23b175c46381c07d9001d248005cebb7fd414d3f64bf1cebfe320a23f6050")
        #expect(ABI.eventTopic("TaskSuccess(uint256,bytes,address)").hex
            == "0x3cd644a756687c7dd87bbe74e2fd65bde569a3335e26f68f8fa334b2849673f7")
        #expect(ABI.eventTopic("TaskAborted(uint256,string)").hex
            == "0x346216bb718ede47b40f85e7caf58cd997eebda879d146a8b49091c106c851d9")
        #expect(ABI.eventTopic("TaskResultUploaded(uint256)").hex
            == "0x11f72037be5686bd54d7042f5a9392a74a7c127754536da6a05710bfdf1f9a0e")
        #expect(ABI.eventTopic("TaskStarted(uint256,uint256,address,address,bytes32,bytes32,uint256)").hex
            == "0x1399dffd65fe4e2d81d94992e9227fc0a75a5289ba36619c5afe826c0e686440")
    }

    @Test func encodeCallMatchesSelectorPlusArguments() throws {
        let taskHash = keccak256("args")
        let data = try ABI.encodeCall("createTask(uint256,bytes32,bytes32,uint256,uint256)",
                                      [.uint(1), .fixedBytes(taskHash), .fixedBytes([UInt8](repeating: 0, count: 32)),
                                       .uint(8), .uint(1)])
        #expect(data.count == 4 + 5 * 32)
        #expect(Array(data.prefix(4)).hex == "0x043b438f")
        #expect(Array(data[36..<68]) == taskHash)
        #expect(try ABI.encodeCall("getTask(uint256)", [.uint(42)]).hex
            == "0x1d65e77e000000000000000000000000000000000000000000000000000000000000002a")
        #expect(try ABI.encodeCall("totalTasks()", []).count == 4)
        #expect(throws: ABIError.self) { try ABI.encodeCall("getTask(uint256)", []) }
        #expect(throws: ABIError.self) { try ABI.encodeCall("getTask(uint256)", [.string("x")]) }
    }

    @Test func revertReasons() throws {
        let reverts = try fixtures["reverts"] as? [[String: String]] ?? []
        #expect(reverts.count >= 10)
        for r in reverts {
            let data = try bytes(r["data"]!)
            if r["kind"] == "error" {
                #expect(RevertReason.decode(data) == .error(r["value"]!))
                #expect(RevertReason.decode(data)?.description == r["value"]!)
            } else {
                #expect(RevertReason.decode(data) == .panic(try big(r["value"]!)))
            }
        }
        let divisionByZero = try bytes(reverts.first { $0["kind"] == "panic" && $0["value"] == "18" }!["data"]!)
        #expect(RevertReason.decode(divisionByZero)?.description == "panic 0x12 (division by zero)")
        #expect(RevertReason.panic(0x11).description == "panic 0x11 (arithmetic overflow or underflow)")
        #expect(RevertReason.panic(0x99).description == "panic 0x99")
        #expect(RevertReason.decode([]) == nil)
        #expect(RevertReason.decode([0xde, 0xad, 0xbe, 0xef]) == .raw([0xde, 0xad, 0xbe, 0xef]))
        #expect(RevertReason.decode([0x08, 0xc3, 0x79, 0xa0, 0x01]) == .raw([0x08, 0xc3, 0x79, 0xa0, 0x01]))
        #expect(RevertReason.raw([0xab]).description == "0xab")
    }

    @Test func logDecoding() throws {
        let logs = try fixtures["logs"] as? [[String: Any]] ?? []
        #expect(logs.count >= 4)
        for l in logs {
            let event = try ABIEvent(l["declaration"] as? String ?? "")
            let topics = try (l["topics"] as? [String] ?? []).map(bytes)
            let data = try bytes(l["data"] as? String ?? "")
            let types = try (l["types"] as? [String] ?? []).map { try ABIType(parsing: $0) }
            let expected = try zip(types, l["values"] as? [Any] ?? []).map { try abiValue($0, $1) }
            #expect(event.topic == topics[0])
            #expect(try event.decode(topics: topics, data: data) == expected, "\(event.name)")
            let log = Log(address: .zero, topics: topics, data: data)
            #expect(try log.decode(event) == expected)
        }
        let success = try ABIEvent("TaskSuccess(uint256 indexed taskId, bytes result, address indexed resultNode)")
        #expect(success.signature == "TaskSuccess(uint256,bytes,address)")
        #expect(success.parameters.map(\.indexed) == [true, false, true])
        #expect(success.parameters.map(\.name) == ["taskId", "result", "resultNode"])
        let aborted = try ABIEvent("TaskAborted(uint256 indexed, string)")
        #expect(try Log(address: .zero, topics: [aborted.topic], data: []).decode(success) == nil)
        #expect(throws: ABIError.self) { try aborted.decode(topics: [aborted.topic], data: []) }

        // An indexed string is only its hash.
        let named = try ABIEvent("Named(string indexed name, uint256 value)")
        let hash = keccak256("crynux")
        let values = try named.decode(topics: [named.topic, hash], data: ABI.encode([.uint(5)], types: [.uint(256)]))
        #expect(values == [.fixedBytes(hash), .uint(5)])
    }

    @Test func typeParsing() throws {
        #expect(try ABIType(parsing: "uint") == .uint(256))
        #expect(try ABIType(parsing: "int") == .int(256))
        #expect(try ABIType(parsing: "bytes32[]") == .array(.fixedBytes(32)))
        #expect(try ABIType(parsing: "address[3][]") == .array(.fixedArray(.address, 3)))
        #expect(try ABIType(parsing: "(uint256,address[])") == .tuple([.uint(256), .array(.address)]))
        #expect(try ABIType(parsing: "tuple(uint8,(bool,string)[2])[]").canonical == "(uint8,(bool,string)[2])[]")
        #expect(try ABIType(parsing: " ( uint , bytes ) ").canonical == "(uint256,bytes)")
        #expect(try ABIType(parsing: "()") == .tuple([]))
        for bad in ["uint7", "uint264", "bytes0", "bytes33", "int0", "address[0]", "foo", "(uint256", "uint256]",
                    "uint256[", "(uint256,)", "", "uint256 x"] {
            #expect(throws: ABIError.self, "\(bad)") { try ABIType(parsing: bad) }
        }
        #expect(ABIType.tuple([.uint(256), .string]).isDynamic)
        #expect(!ABIType.fixedArray(.uint(256), 3).isDynamic)
        #expect(ABIType.fixedArray(.string, 3).isDynamic)
    }

    @Test func encodingRejectsOutOfRangeValues() {
        #expect(throws: ABIError.self) { try ABI.encode([.uint(256)], types: [.uint(8)]) }
        #expect(throws: ABIError.self) { try ABI.encode([.int(128)], types: [.int(8)]) }
        #expect(throws: ABIError.self) { try ABI.encode([.int(-129)], types: [.int(8)]) }
        #expect(throws: ABIError.self) { try ABI.encode([.int(-1)], types: [.uint(256)]) }
        #expect(throws: ABIError.self) { try ABI.encode([.fixedBytes([1, 2])], types: [.fixedBytes(32)]) }
        #expect(throws: ABIError.self) { try ABI.encode([.array([.uint(1)])], types: [.fixedArray(.uint(256), 2)]) }
        #expect(throws: ABIError.self) { try ABI.encode([.uint(1), .uint(2)], types: [.uint(256)]) }
        #expect(throws: ABIError.self) { try ABI.encode([.bool(true)], types: [.address]) }
        #expect((try? ABI.encode([.int(-128)], types: [.int(8)]))
            == [UInt8](repeating: 0xff, count: 31) + [0x80])
        #expect((try? ABI.encode([.uint(5)], types: [.int(256)])) == [UInt8](repeating: 0, count: 31) + [5])
    }

    @Test func decodingRejectsMalformedData() throws {
        let word = { (v: UInt8) in [UInt8](repeating: 0, count: 31) + [v] }
        #expect(throws: ABIError.self) { try ABI.decode([.uint(256)], from: [1, 2, 3]) }
        #expect(throws: ABIError.self) { try ABI.decode([.bool], from: word(2)) }
        #expect(throws: ABIError.self) { try ABI.decode([.uint(8)], from: [UInt8](repeating: 0, count: 30) + [1, 0]) }
        #expect(throws: ABIError.self) { try ABI.decode([.address], from: [UInt8](repeating: 1, count: 32)) }
        #expect(throws: ABIError.self) { try ABI.decode([.fixedBytes(1)], from: [UInt8](repeating: 1, count: 32)) }
        // Offset beyond the data; length beyond the data; a huge array length.
        #expect(throws: ABIError.self) { try ABI.decode([.bytes], from: word(64)) }
        #expect(throws: ABIError.self) { try ABI.decode([.bytes], from: word(32) + word(100)) }
        #expect(throws: ABIError.self) {
            try ABI.decode([.array(.uint(256))], from: word(32) + [UInt8](repeating: 0xff, count: 32))
        }
        #expect(throws: ABIError.self) { try ABI.decode([.array(.string)], from: word(32) + word(200)) }
        // Trailing bytes after the tuple are ignored.
        #expect(try ABI.decode([.uint(256)], from: word(7) + [1, 2, 3]) == [.uint(7)])
        #expect(try ABI.decode([.int(8)], from: [UInt8](repeating: 0xff, count: 32)) == [.int(-1)])
    }

    @Test func valueAccessors() {
        #expect(ABIValue.uint(5).uint == 5)
        #expect(ABIValue.int(5).uint == 5)
        #expect(ABIValue.int(-5).uint == nil)
        #expect(ABIValue.uint(5).int == 5)
        #expect(ABIValue.fixedBytes([1]).bytes == [1])
        #expect(ABIValue.bytes([2]).bytes == [2])
        #expect(ABIValue.string("x").string == "x")
        #expect(ABIValue.bool(true).bool == true)
        #expect(ABIValue.address(.zero).address == .zero)
        #expect(ABIValue.tuple([.uint(1)]).tuple == [.uint(1)])
        #expect(ABIValue.array([.uint(1)]).array == [.uint(1)])
        #expect(ABIValue.uint(1).array == nil)
    }
}
