import BigInt
import Ethereum
import Foundation
import TestSupport
import Testing

@testable import Crynux

/// The real era-B ABIs the devnet is checked against (scripts/devnetlib/abi/hydrogen); missing is a failure.
private func hydrogenABI(_ file: String) throws -> [ABIEntry] {
    let path = Devnet.repositoryRoot.appendingPathComponent("scripts/devnetlib/abi/hydrogen/" + file).path
    guard let data = FileManager.default.contents(atPath: path) else { throw TestSetupError("\(path) is missing") }
    return ABIEntry.load(String(decoding: data, as: UTF8.self))
}

private func indexed(_ e: ABIEntry) -> [String] {
    e.inputs.filter { $0["indexed"] as? Bool == true }.map { $0["name"] as! String }
}

private func abiString(_ s: String) -> [UInt8] {
    let b = Array(s.utf8)
    return word(UInt64(b.count)) + b + [UInt8](repeating: 0, count: (32 - b.count % 32) % 32)
}

private func amount(_ cnx: UInt64) -> BigUInt { BigUInt(cnx) * BigUInt(10).power(18) }
private func amountWord(_ v: BigUInt) -> [UInt8] {
    let b = Array(v.serialize())
    return [UInt8](repeating: 0, count: 32 - b.count) + b
}

@Suite struct HydrogenContractTests {
    let task = HydrogenTaskContract(address: Address(hex: "0xB152b2B16cC57f3C9B50Fda972142ab67C67476f")!)
    let token = CNXToken(address: Address(hex: "0xFBC499446193031943EF86edD2312b69D0Cd1724")!)
    let me = address(0xAA)

    var network: HydrogenNetwork {
        // Nothing here sends a request: the URL is never dialled.
        HydrogenNetwork(rpc: EthereumClient(url: "http://127.0.0.1:9"), relays: [:], task: task, token: token, chainId: 42)
    }

    @Test func selectorsMatchTheABI() throws {
        let taskABI = try hydrogenABI("Task.abi"), tokenABI = try hydrogenABI("CrynuxToken.abi")
        let create = entry(taskABI, "function", "createTask")
        #expect(create.signature == HydrogenTaskContract.createTaskSignature)
        #expect(selector(create) == HydrogenTaskContract.createTaskSelector)
        #expect(HydrogenTaskContract.createTaskSelector == [0x6a, 0xb7, 0x02, 0xed])
        #expect(selector(entry(taskABI, "function", "getTask")) == TaskContract.getTaskSelector)
        #expect(selector(entry(taskABI, "function", "cancelTask")) == TaskContract.cancelTaskSelector)
        #expect(selector(entry(tokenABI, "function", "approve")) == CNXToken.approveSelector)
        #expect(selector(entry(tokenABI, "function", "balanceOf")) == CNXToken.balanceOfSelector)
        #expect(selector(entry(tokenABI, "function", "allowance")) == CNXToken.allowanceSelector)
        #expect(entry(tokenABI, "function", "approve").signature == "approve(address,uint256)")
        #expect(entry(tokenABI, "function", "allowance").signature == "allowance(address,address)")
    }

    @Test func eventTopicsMatchTheABI() throws {
        let taskABI = try hydrogenABI("Task.abi"), tokenABI = try hydrogenABI("CrynuxToken.abi")
        #expect(topic(entry(taskABI, "event", "TaskCreated")) == HydrogenTaskContract.taskCreatedTopic)
        #expect(topic(entry(taskABI, "event", "TaskSuccess")) == HydrogenTaskContract.taskSuccessTopic)
        #expect(topic(entry(taskABI, "event", "TaskAborted")) == HydrogenTaskContract.taskAbortedTopic)
        #expect(topic(entry(tokenABI, "event", "Transfer")) == CNXToken.transferTopic)
        // The layouts the decoding relies on: the task id is never indexed.
        #expect(indexed(entry(taskABI, "event", "TaskCreated")) == ["creator", "selectedNode"])
        #expect(entry(taskABI, "event", "TaskCreated").inputs.map { $0["name"] as! String }
            == ["taskId", "taskType", "creator", "selectedNode", "taskHash", "dataHash", "round"])
        #expect(indexed(entry(taskABI, "event", "TaskSuccess")) == ["resultNode"])
        #expect(indexed(entry(taskABI, "event", "TaskAborted")) == [])
        #expect(entry(taskABI, "event", "TaskAborted").signature == "TaskAborted(uint256,string)")
        #expect(indexed(entry(tokenABI, "event", "Transfer")) == ["from", "to"])
    }

    @Test func taskInfoLayoutMatchesTheABI() throws {
        let outputs = entry(try hydrogenABI("Task.abi"), "function", "getTask").outputs
        let components = try #require(outputs.first?["components"] as? [[String: Any]])
        #expect(components.map(ABIEntry.canonical) == [
            "uint256", "uint256", "address", "bytes32", "bytes32", "uint256", "bool", "address[]", "bytes32[]",
            "bytes32[]", "bytes[]", "uint256[]", "address", "bool", "uint256", "uint256",
        ])
        #expect(components.map { $0["name"] as! String } == [
            "id", "taskType", "creator", "taskHash", "dataHash", "vramLimit", "isSuccess", "selectedNodes",
            "commitments", "nonces", "results", "resultDisclosedRounds", "resultNode", "aborted", "timeout", "balance",
        ])
    }

    @Test func decodesTheSixteenFieldTask() throws {
        let info = TaskInfo(
            id: 7, taskType: 0, creator: me, taskHash: [UInt8](repeating: 0x33, count: 32), dataHash: TaskContract.zero32,
            vramLimit: 8, isSuccess: true, selectedNodes: [address(1), address(2), address(3)],
            commitments: [[UInt8](repeating: 0xC1, count: 32), [UInt8](repeating: 0xC2, count: 32), TaskContract.zero32],
            nonces: [[UInt8](repeating: 0x4E, count: 32)], results: [Array("abc".utf8), [UInt8](repeating: 0xEE, count: 40), []],
            resultDisclosedRounds: [1, 0], resultNode: address(2), aborted: false, timeout: 1_700_000_900, balance: amount(10))
        let data = encodeTaskInfo(info, layout: .eraB)
        #expect(data.count % 32 == 0)
        let decoded = try HydrogenTaskContract.decodeTaskInfo(data)
        #expect(decoded == info)
        #expect(TaskState(decoded) == TaskState(phase: .succeeded(resultNode: address(2)), deadline: 1_700_000_900))
        // Era D's decoder refuses it, and the other way round.
        #expect(throws: (any Error).self) { try TaskContract.decodeTaskInfo(data) }
        #expect(throws: (any Error).self) { try HydrogenTaskContract.decodeTaskInfo(encodeTaskInfo(info)) }

        // Still readable after success and paid out, aborted, running, deleted.
        var aborted = info
        aborted.aborted = true
        #expect(TaskState(try HydrogenTaskContract.decodeTaskInfo(encodeTaskInfo(aborted, layout: .eraB))).phase == .aborted)
        var running = info
        running.resultNode = .zero
        #expect(TaskState(try HydrogenTaskContract.decodeTaskInfo(encodeTaskInfo(running, layout: .eraB))).phase == .running)
        #expect(TaskState(try HydrogenTaskContract.decodeTaskInfo(encodeTaskInfo(TaskInfo(), layout: .eraB))) == TaskState(phase: .absent))
    }

    @Test func calldata() throws {
        let hash = [UInt8](repeating: 0x11, count: 32)
        let create = try task.createTaskCall(taskType: 1, taskHash: hash, vramLimit: 24)
        #expect(create == [0x6a, 0xb7, 0x02, 0xed] + word(1) + hash + TaskContract.zero32 + word(24))
        #expect(throws: ABIError.self) { try task.createTaskCall(taskType: 1, taskHash: [1], vramLimit: 0) }
        #expect(task.cancelTaskCall(taskId: 9) == [0x7e, 0xec, 0x20, 0xa8] + word(9))
        #expect(token.approveCall(spender: task.address, amount: amount(30))
            == [0x09, 0x5e, 0xa7, 0xb3] + word(task.address) + amountWord(amount(30)))
        #expect(token.balanceOfCall(owner: me) == [0x70, 0xa0, 0x82, 0x31] + word(me))
        #expect(token.allowanceCall(owner: me, spender: task.address) == [0xdd, 0x62, 0xed, 0x3e] + word(me) + word(task.address))
        #expect(try CNXToken.decodeAmount(amountWord(amount(10_000))) == amount(10_000))
        #expect(throws: ContractDecodingError.self) { try CNXToken.decodeAmount([]) }
    }

    @Test func networkCallsCarryNoValue() throws {
        let request = TaskRequest(taskType: 0, taskHash: [UInt8](repeating: 0x11, count: 32), vramLimit: 8, cap: 4, fee: 1_000_000)
        let call = try network.createTaskCall(request)
        #expect(call == ContractCall(to: task.address, data: try task.createTaskCall(taskType: 0, taskHash: request.taskHash,
                                                                                               vramLimit: 8)))
        #expect(call.value == 0)
        #expect(network.approveCall(amount: 5)
            == ContractCall(to: token.address, data: token.approveCall(spender: task.address, amount: 5)))
        #expect(network.cancelTaskCall(taskId: 3) == ContractCall(to: task.address, data: task.cancelTaskCall(taskId: 3)))
        #expect(network.profile == .hydrogen)
        #expect(network.sdSchema == .v68b52d2)
        let queue = try network.queueState()
        #expect(queue.size == 0 && queue.limit == .max && queue.cheapestPrice == nil)
        #expect(try !network.isQueued(taskId: 3))
    }

    private func createdLog(id: UInt64, node: UInt8, round: UInt64, contract: Address? = nil) -> Log {
        log(contract ?? task.address, [HydrogenTaskContract.taskCreatedTopic, word(me), word(address(node))],
            word(id) + word(0) + [UInt8](repeating: 0x33, count: 32) + TaskContract.zero32 + word(round))
    }

    private func transferLog(from: Address, to: Address, _ value: BigUInt, contract: Address? = nil) -> Log {
        log(contract ?? token.address, [CNXToken.transferTopic, word(from), word(to)], amountWord(value))
    }

    private var approvalLog: Log {
        log(token.address, [TaskContract.word(hex: "8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"),
                            word(me), word(task.address)], amountWord(amount(70)))
    }

    @Test func createdTaskIdIsTheFirstTaskCreatedOfTheTaskContract() {
        let created = (0..<3).map { createdLog(id: 12, node: UInt8(1 + $0), round: UInt64($0)) }
        let limited = receipt([approvalLog, transferLog(from: me, to: task.address, amount(30))] + created)
        #expect(task.createdTaskId(in: limited) == 12)
        // An unlimited allowance emits no Approval; a look-alike of another contract comes first.
        let unlimited = receipt([createdLog(id: 99, node: 1, round: 0, contract: address(0x77)),
                                 transferLog(from: me, to: task.address, amount(30))] + created)
        #expect(network.createdTaskId(in: unlimited) == 12)
        #expect(task.createdTaskId(in: receipt([approvalLog])) == nil)
        let decoded = HydrogenTaskContract.decodeCreated(created[1])
        #expect(decoded?.taskId == 12 && decoded?.taskHash == [UInt8](repeating: 0x33, count: 32))
        #expect(HydrogenTaskContract.decodeCreated(approvalLog) == nil)
        let filter = task.createdFilter(creator: me, fromBlock: 5)
        #expect(filter.address == task.address && filter.topics == [[HydrogenTaskContract.taskCreatedTopic], [word(me)]])
    }

    @Test func tokenFeeIsTheTransferFromTheWalletToTheTask() {
        let paid = receipt([approvalLog, transferLog(from: me, to: task.address, amount(30)), createdLog(id: 1, node: 1, round: 0)])
        #expect(network.tokenFeePaid(in: paid, by: me) == amount(30))
        #expect(network.tokenFeePaid(in: paid, by: address(0xBB)) == nil)
        // A cancel's refund goes the other way; a look-alike token is not CNX.
        #expect(network.tokenFeePaid(in: receipt([transferLog(from: task.address, to: me, amount(30))]), by: me) == nil)
        #expect(network.tokenFeePaid(in: receipt([transferLog(from: me, to: task.address, 5, contract: address(0x55))]), by: me) == nil)
        #expect(network.tokenFeePaid(in: receipt([]), by: me) == nil)
    }

    @Test func outcomesOfOneTask() {
        let success = log(task.address, [HydrogenTaskContract.taskSuccessTopic, word(address(9))],
                          word(42) + word(64) + word(3) + [1, 2, 3] + [UInt8](repeating: 0, count: 29))
        #expect(HydrogenTaskContract.decodeOutcome(success, taskId: 42) == .succeeded(resultNode: address(9)))
        #expect(HydrogenTaskContract.decodeOutcome(success, taskId: 43) == nil)

        let aborted = log(task.address, [HydrogenTaskContract.taskAbortedTopic], word(42) + word(64) + abiString("Task Cancelled"))
        #expect(HydrogenTaskContract.decodeOutcome(aborted, taskId: 42) == .aborted(reason: "Task Cancelled"))
        #expect(HydrogenTaskContract.decodeOutcome(aborted, taskId: 7) == nil)
        let long = String(repeating: "é", count: 40)
        let longAbort = log(task.address, [HydrogenTaskContract.taskAbortedTopic], word(42) + word(64) + abiString(long))
        #expect(HydrogenTaskContract.decodeOutcome(longAbort, taskId: 42) == .aborted(reason: long))
        #expect(HydrogenTaskContract.decodeOutcome(createdLog(id: 42, node: 1, round: 0), taskId: 42) == nil)

        let filter = task.outcomeFilter(fromBlock: 100)
        #expect(filter.topics == [[HydrogenTaskContract.taskSuccessTopic, HydrogenTaskContract.taskAbortedTopic]])
        if case .number(let n) = filter.fromBlock { #expect(n == 100) } else { Issue.record("fromBlock \(filter.fromBlock)") }
    }

    @Test func lacksFreeNodesOnlyForNodeShortage() {
        for reason in ["No available nodes", "No kind of gpu vram meets condition", "No available nodes of such vram",
                       "No kind of gpu id meets condition", "No available nodes of such gpu id"] {
            #expect(network.lacksFreeNodes(revertReason: reason), "\(reason)")
            #expect(network.lacksFreeNodes(revertReason: "execution reverted: " + reason), "\(reason)")
            #expect(network.lacksFreeNodes(revertReason: "rpc error: code = Unknown desc = execution reverted: " + reason))
        }
        for reason in ["Not enough allowance for task", "Not enough tokens for task", "Invalid task type", "ERC20: insufficient allowance",
                       "execution reverted", "", "No available nodes!", "no available nodes"] {
            #expect(!network.lacksFreeNodes(revertReason: reason), "\(reason)")
        }
    }
}
