import BigInt
import Ethereum
import Foundation
import TestSupport
import Testing

@testable import Crynux

/// Canonical signatures computed from the ABI JSON, independently of the constants in the module.
struct ABIEntry {
    let type: String
    let name: String
    let inputs: [[String: Any]]
    let outputs: [[String: Any]]

    var signature: String { name + "(" + inputs.map(ABIEntry.canonical).joined(separator: ",") + ")" }

    static func canonical(_ param: [String: Any]) -> String {
        let type = param["type"] as! String
        guard type.hasPrefix("tuple") else { return type }
        let components = (param["components"] as! [[String: Any]]).map(canonical).joined(separator: ",")
        return "(" + components + ")" + type.dropFirst("tuple".count)
    }

    static func load(_ json: String) -> [ABIEntry] {
        let array = try! JSONSerialization.jsonObject(with: Data(json.utf8)) as! [[String: Any]]
        return array.compactMap { e in
            guard let name = e["name"] as? String else { return nil }
            return ABIEntry(type: e["type"] as! String, name: name,
                            inputs: e["inputs"] as? [[String: Any]] ?? [], outputs: e["outputs"] as? [[String: Any]] ?? [])
        }
    }
}

private var taskABI: [ABIEntry] { ABIEntry.load(ABIFixtures.task) }
private var queueABI: [ABIEntry] { ABIEntry.load(ABIFixtures.taskQueue) }

func entry(_ abi: [ABIEntry], _ type: String, _ name: String) -> ABIEntry {
    abi.first { $0.type == type && $0.name == name }!
}

func selector(_ e: ABIEntry) -> [UInt8] { Array(keccak256(Array(e.signature.utf8)).prefix(4)) }
func topic(_ e: ABIEntry) -> [UInt8] { keccak256(Array(e.signature.utf8)) }

func word(_ v: UInt64) -> [UInt8] { [UInt8](repeating: 0, count: 24) + withUnsafeBytes(of: v.bigEndian, Array.init) }
func word(_ a: Address) -> [UInt8] { [UInt8](repeating: 0, count: 12) + a.bytes }
func address(_ n: UInt8) -> Address { Address(bytes: [UInt8](repeating: 0, count: 19) + [n]) }

/// Hand-made ABI encoding of a `TaskInfo` return value (no use of the Ethereum module's encoder); era B's
/// struct leaves out era D's fields 10 and 17.
func encodeTaskInfo(_ t: TaskInfo, layout: TaskInfo.Layout = .eraD) -> [UInt8] {
    func u(_ v: BigUInt) -> [UInt8] {
        let b = Array(v.serialize())
        return [UInt8](repeating: 0, count: 32 - b.count) + b
    }
    func padded(_ b: [UInt8]) -> [UInt8] { b + [UInt8](repeating: 0, count: (32 - b.count % 32) % 32) }
    func staticArray(_ words: [[UInt8]]) -> [UInt8] { word(UInt64(words.count)) + words.joined() }
    func bytesArray(_ items: [[UInt8]]) -> [UInt8] {
        var heads: [UInt8] = []
        var tails: [UInt8] = []
        for item in items {
            heads += word(UInt64(items.count * 32 + tails.count))
            tails += word(UInt64(item.count)) + padded(item)
        }
        return word(UInt64(items.count)) + heads + tails
    }
    let dynamicParts: [Int: [UInt8]] = [
        7: staticArray(t.selectedNodes.map(word)),
        8: staticArray(t.commitments),
        9: staticArray(t.nonces),
        10: staticArray(t.commitmentSubmitRounds.map(u)),
        11: bytesArray(t.results),
        12: staticArray(t.resultDisclosedRounds.map(u)),
    ]
    let statics: [Int: [UInt8]] = [
        0: u(t.id), 1: u(t.taskType), 2: word(t.creator), 3: t.taskHash, 4: t.dataHash, 5: u(t.vramLimit),
        6: word(t.isSuccess ? 1 : 0), 13: word(t.resultNode), 14: word(t.aborted ? 1 : 0), 15: u(t.timeout),
        16: u(t.balance), 17: u(t.totalBalance),
    ]
    let fields = layout == .eraD ? Array(0..<18) : (0..<18).filter { $0 != 10 && $0 != 17 }
    var head: [UInt8] = []
    var tail: [UInt8] = []
    for k in fields {
        if let part = dynamicParts[k] {
            head += word(UInt64(fields.count * 32 + tail.count))
            tail += part
        } else {
            head += statics[k]!
        }
    }
    return word(32) + head + tail
}

func log(_ contract: Address, _ topics: [[UInt8]], _ data: [UInt8] = [], index: UInt64 = 0) -> Log {
    Log(address: contract, topics: topics, data: data, blockNumber: 10, transactionHash: [UInt8](repeating: 0xAB, count: 32),
        logIndex: index)
}

func receipt(_ logs: [Log]) -> TransactionReceipt {
    TransactionReceipt(transactionHash: [UInt8](repeating: 0xAB, count: 32), status: true, blockNumber: 10,
                       gasUsed: 250_000, effectiveGasPrice: 1, logs: logs, contractAddress: nil)
}

@Suite struct TaskContractTests {
    let contract = TaskContract(address: Address(hex: "0x07E149A0e372C2F54Df6358d021d700703D222D1")!)

    @Test func selectorsMatchTheABI() {
        let create = entry(taskABI, "function", "createTask")
        #expect(create.signature == TaskContract.createTaskSignature)
        #expect(selector(create) == TaskContract.createTaskSelector)
        #expect(TaskContract.createTaskSelector == [0x04, 0x3b, 0x43, 0x8f])

        let get = entry(taskABI, "function", "getTask")
        #expect(get.signature == TaskContract.getTaskSignature)
        #expect(selector(get) == TaskContract.getTaskSelector)
        #expect(TaskContract.getTaskSelector == [0x1d, 0x65, 0xe7, 0x7e])

        let cancel = entry(taskABI, "function", "cancelTask")
        #expect(cancel.signature == TaskContract.cancelTaskSignature)
        #expect(selector(cancel) == TaskContract.cancelTaskSelector)

        let include = entry(queueABI, "function", "include")
        #expect(include.signature == TaskQueueContract.includeSignature)
        #expect(selector(include) == TaskQueueContract.includeSelector)
        #expect(include.outputs.map(ABIEntry.canonical) == ["bool"])
    }

    @Test func eventTopicsMatchTheABI() {
        let expected: [(String, [UInt8])] = [
            ("TaskPending", TaskContract.taskPendingTopic), ("TaskStarted", TaskContract.taskStartedTopic),
            ("TaskSuccess", TaskContract.taskSuccessTopic), ("TaskAborted", TaskContract.taskAbortedTopic),
            ("TaskResultUploaded", TaskContract.taskResultUploadedTopic),
        ]
        for (name, constant) in expected {
            #expect(topic(entry(taskABI, "event", name)) == constant, "\(name)")
        }
        func indexed(_ name: String) -> [String] {
            entry(taskABI, "event", name).inputs.filter { $0["indexed"] as? Bool == true }.map { $0["name"] as! String }
        }
        // The layouts the decoding relies on.
        #expect(indexed("TaskPending") == ["creator"])
        #expect((entry(taskABI, "event", "TaskPending").inputs.first?["name"] as? String) == "taskId")
        #expect(indexed("TaskSuccess") == ["taskId", "resultNode"])
        #expect(indexed("TaskAborted") == ["taskId"])
        #expect(indexed("TaskResultUploaded") == ["taskId"])
    }

    @Test func taskInfoLayoutMatchesTheABI() {
        let outputs = entry(taskABI, "function", "getTask").outputs
        #expect(outputs.count == 1)
        let components = (outputs[0]["components"] as! [[String: Any]])
        #expect(components.map(ABIEntry.canonical) == [
            "uint256", "uint256", "address", "bytes32", "bytes32", "uint256", "bool", "address[]", "bytes32[]",
            "bytes32[]", "uint256[]", "bytes[]", "uint256[]", "address", "bool", "uint256", "uint256", "uint256",
        ])
        #expect(components.map { $0["name"] as! String } == [
            "id", "taskType", "creator", "taskHash", "dataHash", "vramLimit", "isSuccess", "selectedNodes",
            "commitments", "nonces", "commitmentSubmitRounds", "results", "resultDisclosedRounds", "resultNode",
            "aborted", "timeout", "balance", "totalBalance",
        ])
    }

    @Test func embeddedABIsMatchTheSharedCopies() throws {
        // The real era-D ABIs live in the shared folder beside the repository; missing is a failure.
        for (file, embedded) in [("Task.abi", ABIFixtures.task), ("TaskQueue.abi", ABIFixtures.taskQueue)] {
            let data = try Data(contentsOf: URL(fileURLWithPath: try SharedFolder.path("protocol/abi/" + file)))
            let shared = try JSONSerialization.jsonObject(with: data) as! NSArray
            let ours = try JSONSerialization.jsonObject(with: Data(embedded.utf8)) as! NSArray
            #expect(shared == ours, "\(file)")
        }
    }

    @Test func createTaskCalldata() throws {
        let hash = [UInt8](repeating: 0x11, count: 32)
        #expect(throws: ABIError.self) { try contract.createTaskCall(taskType: 1, taskHash: [1, 2], vramLimit: 8, cap: 3) }
        let data = try contract.createTaskCall(taskType: 1, taskHash: hash, vramLimit: 8, cap: 3)
        #expect(data.count == 4 + 5 * 32)
        #expect(Array(data[0..<4]) == [0x04, 0x3b, 0x43, 0x8f])
        #expect(Array(data[4..<36]) == word(1))
        #expect(Array(data[36..<68]) == hash)
        #expect(Array(data[68..<100]) == TaskContract.zero32)
        #expect(Array(data[100..<132]) == word(8))
        #expect(Array(data[132..<164]) == word(3))
        // Same bytes as the general ABI encoder produces.
        let viaABI = try? ABI.encodeCall(TaskContract.createTaskSignature,
                                         [.uint(1), .fixedBytes(hash), .fixedBytes(TaskContract.zero32), .uint(8), .uint(3)])
        #expect(viaABI == data)
    }

    @Test func singleArgumentCalls() {
        #expect(contract.getTaskCall(taskId: 0x0102) == [0x1d, 0x65, 0xe7, 0x7e] + word(0x0102))
        #expect(contract.cancelTaskCall(taskId: 9) == TaskContract.cancelTaskSelector + word(9))
        let queue = TaskQueueContract(address: address(7))
        #expect(queue.includeCall(taskId: UInt64.max) == TaskQueueContract.includeSelector + word(UInt64.max))
    }

    @Test func decodesAFullTaskInfo() throws {
        let info = TaskInfo(
            id: 42, taskType: 1, creator: address(0xC0), taskHash: [UInt8](repeating: 0x33, count: 32),
            dataHash: TaskContract.zero32, vramLimit: 8, isSuccess: true,
            selectedNodes: [address(1), address(2), address(3)],
            commitments: [[UInt8](repeating: 0xC1, count: 32), [UInt8](repeating: 0xC2, count: 32)],
            nonces: [[UInt8](repeating: 0x4E, count: 32)], commitmentSubmitRounds: [0, 1, 2],
            results: [Array("abc".utf8), [UInt8](repeating: 0xEE, count: 40), []], resultDisclosedRounds: [1],
            resultNode: address(2), aborted: false, timeout: 1_700_000_900,
            balance: BigUInt(4_100_000_000_000_000_000 as UInt64), totalBalance: BigUInt(12_300_000_000_000_000_000 as UInt64))
        let decoded = try TaskContract.decodeTaskInfo(encodeTaskInfo(info))
        #expect(decoded == info)
        #expect(decoded.exists)
        #expect(decoded.succeeded)
    }

    @Test func decodesTheAllZeroTaskOfAMissingTask() throws {
        let decoded = try TaskContract.decodeTaskInfo(encodeTaskInfo(TaskInfo()))
        #expect(decoded == TaskInfo())
        #expect(!decoded.exists)
        #expect(!decoded.succeeded)
    }

    @Test func refusesGarbage() {
        #expect(throws: (any Error).self) { try TaskContract.decodeTaskInfo([]) }
        #expect(throws: (any Error).self) { try TaskContract.decodeTaskInfo([UInt8](repeating: 0, count: 31)) }
        var truncated = encodeTaskInfo(TaskInfo(selectedNodes: [address(1)]))
        truncated.removeLast(32)
        #expect(throws: (any Error).self) { try TaskContract.decodeTaskInfo(truncated) }
    }

    @Test func successIsResultNodeAndNotAborted() {
        #expect(TaskInfo(id: 1, isSuccess: false, resultNode: address(5)).succeeded)
        #expect(!TaskInfo(id: 1, isSuccess: true, resultNode: .zero).succeeded)
        #expect(!TaskInfo(id: 1, isSuccess: true, resultNode: address(5), aborted: true).succeeded)
    }

    private func pendingLog(id: UInt64, creator: Address, contract: Address? = nil) -> Log {
        log(contract ?? self.contract.address, [TaskContract.taskPendingTopic, word(creator)],
            word(id) + word(0) + [UInt8](repeating: 0x33, count: 32) + TaskContract.zero32)
    }

    private func abortedLog(id: UInt64, reason: String) -> Log {
        let r = Array(reason.utf8)
        let data = word(32) + word(UInt64(r.count)) + r + [UInt8](repeating: 0, count: (32 - r.count % 32) % 32)
        return log(contract.address, [TaskContract.taskAbortedTopic, word(id)], data)
    }

    @Test func taskIdFromTheReceipt() {
        let me = address(0xAA)
        // A queued creation that evicted task 3 from a full queue, next to a look-alike log of another contract.
        let r = receipt([
            pendingLog(id: 99, creator: me, contract: address(0x77)),
            abortedLog(id: 3, reason: "Task fee is too low"),
            pendingLog(id: 12, creator: me),
        ])
        #expect(contract.createdTaskId(in: r) == 12)
        #expect(contract.createdTaskId(in: r, creator: me) == 12)
        #expect(contract.createdTaskId(in: receipt([])) == nil)
        #expect(contract.createdTaskId(in: receipt([abortedLog(id: 3, reason: "x")])) == nil)

        let started = log(contract.address, [TaskContract.taskStartedTopic, word(me), word(address(1))], word(12))
        let several = receipt([pendingLog(id: 20, creator: address(0xBB)), started, pendingLog(id: 21, creator: me)])
        #expect(contract.createdTaskId(in: several, creator: me) == 21)
        #expect(contract.createdTaskId(in: several) == 20)
        #expect(contract.createdTaskId(in: several, creator: address(0xCC)) == 20)
        var sentByMe = several
        sentByMe.from = me
        #expect(contract.createdTaskId(in: sentByMe) == 21)
    }

    @Test func outcomeFilterSelectsBothEventsOfOneTask() {
        let filter = contract.outcomeFilter(taskId: 42, fromBlock: 1000)
        #expect(filter.address == contract.address)
        #expect(filter.topics.count == 2)
        #expect(filter.topics[0] == [TaskContract.taskSuccessTopic, TaskContract.taskAbortedTopic])
        #expect(filter.topics[1] == [word(42)])
        if case .number(let n) = filter.fromBlock { #expect(n == 1000) } else { Issue.record("fromBlock \(filter.fromBlock)") }
        if case .latest = filter.toBlock {} else { Issue.record("toBlock \(filter.toBlock)") }
    }

    @Test func decodesOutcomes() {
        let success = log(contract.address, [TaskContract.taskSuccessTopic, word(42), word(address(9))],
                          word(32) + word(3) + [1, 2, 3] + [UInt8](repeating: 0, count: 29))
        #expect(TaskContract.decodeOutcome(success) == .succeeded(resultNode: address(9)))
        #expect(TaskContract.taskId(ofIndexedLog: success) == 42)

        let aborted = abortedLog(id: 42, reason: "Task error reported")
        #expect(TaskContract.decodeOutcome(aborted) == .aborted(reason: "Task error reported"))
        let long = String(repeating: "é", count: 40)
        #expect(TaskContract.decodeOutcome(abortedLog(id: 42, reason: long)) == .aborted(reason: long))

        #expect(TaskContract.decodeOutcome(pendingLog(id: 1, creator: address(1))) == nil)
        let uploaded = log(contract.address, [TaskContract.taskResultUploadedTopic, word(42)])
        #expect(TaskContract.decodeOutcome(uploaded) == nil)
    }

    @Test func decodesBool() throws {
        #expect(try TaskQueueContract.decodeBool(word(1)) == true)
        #expect(try TaskQueueContract.decodeBool(word(0)) == false)
        #expect(throws: (any Error).self) { try TaskQueueContract.decodeBool(word(2)) }
        #expect(throws: (any Error).self) { try TaskQueueContract.decodeBool([]) }
    }
}
