import BigInt
import Ethereum
import Foundation
import HTTP
import Testing

@testable import Crynux

/// The local network started by `scripts/devnet up` (scripts/test starts one and sets
/// CRYNUX_DEVNET_FILE). These tests fail, never skip, when it is missing.
struct LocalNetwork {
    let rpcURL: String
    let relayURL: String
    let adminURL: String
    let chainId: UInt64
    let taskContract: Address
    let taskQueueContract: Address

    static func load() throws -> LocalNetwork {
        let env = ProcessInfo.processInfo.environment
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let candidates = [
            env["CRYNUX_DEVNET_FILE"],
            env["DEVNET_DIR"].map { $0 + "/devnet.json" },
            repository.appendingPathComponent(".devnet/devnet.json").path,
        ].compactMap { $0 }.filter { !$0.isEmpty }
        guard let file = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw SetupError("no local network description (looked at \(candidates.joined(separator: ", "))): "
                + "start one with `scripts/devnet up`, or run the tests with scripts/test")
        }
        guard let data = FileManager.default.contents(atPath: file),
              let json = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let rpc = json["rpc_url"] as? String, let relay = json["relay_url"] as? String,
              let admin = json["admin_url"] as? String, let chainId = (json["chain_id"] as? NSNumber)?.uint64Value,
              let task = (json["task_contract"] as? String).flatMap(Address.init(hex:)),
              let queue = (json["task_queue_contract"] as? String).flatMap(Address.init(hex:)) else {
            throw SetupError("\(file) is not a devnet description")
        }
        return LocalNetwork(rpcURL: rpc, relayURL: relay, adminURL: admin, chainId: chainId, taskContract: task,
                            taskQueueContract: queue)
    }

    struct SetupError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}

/// A fresh funded account on the local network, creating tasks as the worker does.
private final class Creator {
    let network: LocalNetwork
    let http = HTTPClient(options: HTTPOptions(connectTimeout: 5, totalTimeout: 30))
    let rpc: EthereumClient
    let key = PrivateKey.random()
    let task: TaskContract
    let queue: TaskQueueContract
    let relay: RelayClient

    init() throws {
        network = try LocalNetwork.load()
        rpc = EthereumClient(url: network.rpcURL, http: http)
        task = TaskContract(address: network.taskContract)
        queue = TaskQueueContract(address: network.taskQueueContract)
        relay = RelayClient(baseURL: network.relayURL, key: key, http: http)
        // A key of its own: no nonce races with other tests sharing the network.
        let body = Array(#"{"address":"\#(key.address.checksummed)","wei":"1000000000000000000000"}"#.utf8)
        let response = try http.post(network.adminURL + "/admin/fund", json: body)
        guard response.status == 200 else {
            throw LocalNetwork.SetupError("funding failed: HTTP \(response.status) \(String(decoding: response.body, as: UTF8.self))")
        }
    }

    func create(_ validated: ValidatedTask) throws -> (taskId: UInt64, receipt: TransactionReceipt) {
        let data = try task.createTaskCall(taskType: validated.taskType, taskHash: validated.taskHash,
                                       vramLimit: validated.vramLimit, cap: validated.cap)
        let fee = BigUInt(1_000_000_000) * BigUInt(validated.cap)
        let gas = try rpc.estimateGas(CallRequest(from: key.address, to: task.address, data: data, value: fee))
        let tx = LegacyTransaction(nonce: try rpc.getTransactionCount(key.address, block: .pending),
                                   gasPrice: try rpc.gasPrice(), gasLimit: gas + gas / 4, to: task.address, value: fee,
                                   data: data, chainId: network.chainId)
        let signed = try tx.signed(with: key)
        _ = try rpc.sendRawTransaction(signed.raw)
        let receipt = try waitFor("the receipt of \(signed.hash.hex)") { try rpc.getTransactionReceipt(signed.hash) }
        #expect(receipt.status)
        guard let id = task.createdTaskId(in: receipt) else {
            throw LocalNetwork.SetupError("no TaskPending log in \(receipt)")
        }
        return (id, receipt)
    }

    func upload(_ taskId: UInt64, _ arguments: String) throws -> UploadOutcome {
        try waitFor("the relay to see task \(taskId)") {
            let outcome = try relay.uploadTaskArguments(taskId: taskId, arguments: arguments)
            return outcome == .notYetOnChain ? nil : outcome
        }
    }

    func download(_ taskId: UInt64, _ index: Int, kind: TaskKind) throws -> DownloadOutcome {
        try waitFor("result \(index) of task \(taskId)", timeout: 60) {
            let outcome = try relay.downloadResult(taskId: taskId, index: index, kind: kind)
            if case .notReady = outcome { return nil }
            return outcome
        }
    }

    func outcome(_ taskId: UInt64, from block: UInt64) throws -> TaskOutcome {
        try waitFor("the outcome of task \(taskId)", timeout: 60) {
            try rpc.getLogs(task.outcomeFilter(taskId: taskId, fromBlock: block)).compactMap(TaskContract.decodeOutcome).first
        }
    }

    func taskInfo(_ taskId: UInt64) throws -> TaskInfo {
        try TaskContract.decodeTaskInfo(try rpc.call(CallRequest(to: task.address, data: task.getTaskCall(taskId: taskId))))
    }

    func isQueued(_ taskId: UInt64) throws -> Bool {
        try TaskQueueContract.decodeBool(try rpc.call(CallRequest(to: queue.address, data: queue.includeCall(taskId: taskId))))
    }

    func uploadedDigests(_ taskId: UInt64) throws -> [String] {
        let response = try http.get(network.adminURL + "/admin/results/\(taskId)")
        let json = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        return (json?["files"] as? [[String: Any]] ?? []).compactMap { $0["sha256"] as? String }
    }

}

/// Polls until `poll` answers, for at most `timeout` seconds.
func waitFor<T>(_ what: String, timeout: Double = 30, _ poll: () throws -> T?) throws -> T {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if let value = try poll() { return value }
        Thread.sleep(forTimeInterval: 0.2)
    }
    throw LocalNetwork.SetupError("timed out after \(Int(timeout)) s waiting for \(what)")
}

/// SHA-256 through coreutils, to compare with the digests the devnet reports.
func sha256(_ bytes: [UInt8]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    let input = Pipe(), output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    try process.run()
    input.fileHandleForWriting.write(Data(bytes))
    try input.fileHandleForWriting.close()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return String(text.prefix(64))
}

@Suite(.serialized) struct DevnetIntegrationTests {
    @Test func stableDiffusionTaskEndToEnd() throws {
        let c = try Creator()
        #expect(try c.rpc.chainId() == c.network.chainId)
        let offset = try c.relay.serverTime() - Int64(Date().timeIntervalSince1970)
        #expect(abs(offset) <= 2)

        let args = #"{"base_model":"crynux-ai/sdxl-turbo","prompt":"a <red> fox & a \"blue\" bird — 狐 🦊 \u2028","task_config":{"num_images":2,"seed":7,"steps":4,"cfg":1}}"#
        let validated = try TaskArguments.validate(kind: .sd, arguments: args, sdSchema: .eraDDefault)
        #expect(validated.cap == 2 && validated.vramLimit == 14)

        // Signed by the right key, but for a task the chain does not have.
        #expect(try c.relay.uploadTaskArguments(taskId: 1 << 40, arguments: args) == .notYetOnChain)

        let (taskId, receipt) = try c.create(validated)
        let info = try c.taskInfo(taskId)
        if info.exists {
            #expect(info.id == BigUInt(taskId))
            #expect(info.creator == c.key.address)
            #expect(info.taskHash == validated.taskHash)
            #expect(info.vramLimit == 14)
        } else {
            #expect(try c.isQueued(taskId))
        }

        // Arguments that do not hash to the on-chain taskHash are refused.
        let other = args.replacingOccurrences(of: "\"seed\":7", with: "\"seed\":8")
        #expect(try c.upload(taskId, other) == .rejected("task_hash: Task hash mismatch"))
        #expect(try c.upload(taskId, args) == .uploaded)
        #expect(try c.relay.uploadTaskArguments(taskId: taskId, arguments: args) == .alreadyUploaded)

        guard case .succeeded(let resultNode) = try c.outcome(taskId, from: receipt.blockNumber) else {
            Issue.record("task \(taskId) did not succeed"); return
        }
        #expect(resultNode != .zero)

        var digests: [String] = []
        for index in 0..<validated.resultCount {
            guard case .data(let bytes, let type) = try c.download(taskId, index, kind: .sd) else {
                Issue.record("result \(index) not downloadable"); return
            }
            #expect(type == "image/png")
            #expect(bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]))
            digests.append(try sha256(bytes))
        }
        #expect(digests == (try c.uploadedDigests(taskId)))
        #expect(try c.relay.downloadResult(taskId: taskId, index: 2) == .rejected("image_num: File not found"))
        #expect(try !c.isQueued(taskId))
    }

    @Test func gptTaskEndToEnd() throws {
        let c = try Creator()
        let args = #"{"model":"Qwen/Qwen2.5-7B-Instruct","messages":[{"role":"system","content":"Be <brief> & kind"},{"role":"user","content":"Привет 👋"}],"generation_config":{"max_new_tokens":64,"do_sample":true,"temperature":0.7},"seed":42,"dtype":"bfloat16"}"#
        let validated = try TaskArguments.validate(kind: .gpt, arguments: args, sdSchema: .eraDDefault)
        let (taskId, receipt) = try c.create(validated)
        #expect(try c.upload(taskId, args) == .uploaded)
        guard case .succeeded = try c.outcome(taskId, from: receipt.blockNumber) else {
            Issue.record("task \(taskId) did not succeed"); return
        }
        guard case .data(let bytes, let type) = try c.download(taskId, 0, kind: .gpt) else {
            Issue.record("result not downloadable"); return
        }
        // Without a kind the Relay's file name decides.
        #expect(try c.relay.downloadResult(taskId: taskId, index: 0) == .data(bytes, contentType: "application/json"))
        #expect(type == "application/json")
        #expect(try JSONSerialization.jsonObject(with: Data(bytes)) is [String: Any])
        #expect([try sha256(bytes)] == (try c.uploadedDigests(taskId)))
    }

    @Test func abortedTaskReportsTheReason() throws {
        let c = try Creator()
        // The simulated nodes abort tasks whose arguments carry this marker.
        let args = #"{"base_model":"crynux-ai/stable-diffusion-v1-5","prompt":"devnet:abort","task_config":{"num_images":1}}"#
        let validated = try TaskArguments.validate(kind: .sd, arguments: args, sdSchema: .eraDDefault)
        let (taskId, receipt) = try c.create(validated)
        #expect(try c.upload(taskId, args) == .uploaded)
        #expect(try c.outcome(taskId, from: receipt.blockNumber) == .aborted(reason: "Task error reported"))
        #expect(try c.relay.uploadTaskArguments(taskId: taskId, arguments: args) == .alreadyUploaded)
    }
}
