import BigInt
import Ethereum
import Foundation
import TestSupport
import Testing

@testable import Crynux

/// `HydrogenNetwork` against a local Hydrogen (era B) network of its own: CNX approval, createTask,
/// the Relay without `/v1/now`, outcomes read from logs that do not index the task id.
@Suite(.serialized)
final class HydrogenDevnetTests {
    let devnet: Devnet
    let key: PrivateKey
    let network: HydrogenNetwork

    init() throws {
        devnet = try Devnet.startPrivate(["--profile", "hydrogen"])
        guard devnet.profile == "hydrogen", let tokenHex = devnet.tokenContract, let token = Address(hex: tokenHex),
              let task = Address(hex: devnet.taskContract), let account = devnet.accounts.first else {
            throw TestSetupError("\(devnet.file) does not describe a Hydrogen network with a token and an account")
        }
        key = try PrivateKey(hex: account.privateKey)
        network = try HydrogenNetwork.connect(rpcURL: devnet.rpcURL, relayURL: devnet.relayURL, taskContract: task,
                                              tokenContract: token, nodeContract: devnet.nodeContract.flatMap { Address(hex: $0) }, keys: [key])
        network.admissionReadingAge = 0  // the test reads the free nodes again right after changing them
    }

    deinit { devnet.stop() }

    static let sdArgs =
        #"{"base_model":"runwayml/stable-diffusion-v1-5","prompt":"a hydrogen fox","task_config":{"num_images":1,"seed":3}}"#
    static let fee = BigUInt(30) * BigUInt(10).power(18)

    private func request(_ kind: TaskKind, _ arguments: String) throws -> TaskRequest {
        let v = try TaskArguments.validate(kind: kind, arguments: arguments, sdSchema: network.sdSchema)
        return TaskRequest(taskType: v.taskType, taskHash: v.taskHash, vramLimit: v.vramLimit, cap: v.cap, fee: 123)
    }

    /// Signs and sends `call` with its estimate plus a quarter, and waits for it to be mined.
    private func mine(_ call: ContractCall) throws -> TransactionReceipt {
        guard case .gas(let gas) = try network.estimateGas(call, from: key.address) else {
            throw TestSetupError("\(call) does not estimate")
        }
        let tx = LegacyTransaction(nonce: try network.pendingNonce(of: key.address), gasPrice: try network.gasPrice(),
                                   gasLimit: gas + gas / 4, to: call.to, value: call.value, data: call.data, chainId: network.chainId)
        let signed = try tx.signed(with: key)
        #expect(try network.send(raw: signed.raw) == .accepted)
        let receipt = try waitFor("the receipt of \(signed.hash.hex)") { try network.receipt(of: signed.hash) }
        #expect(receipt.status)
        return receipt
    }

    private func phase(_ taskId: UInt64) throws -> TaskState.Phase {
        try network.readTasks([taskId])[0].get().phase
    }

    @Test func approveCreateUploadSucceedAndDownload() throws {
        #expect(network.chainId == 42)
        let create = try network.createTaskCall(try request(.sd, Self.sdArgs))
        #expect(create.value == 0)

        // Funded with CNX but nothing allowed: the estimate names what is missing.
        let before = try network.createConditions(for: create, from: key.address, withTip: true)
        #expect(before.estimate == .reverts("Not enough allowance for task"))
        #expect(before.token == TokenStanding(balance: BigUInt(10_000) * BigUInt(10).power(18), allowance: 0))
        #expect(before.nativeBalance == (try network.rpc.getBalance(key.address)))
        #expect(before.gasPrice > 0 && before.tip != nil)

        let approval = try mine(try #require(network.approveCall(amount: Self.fee)))
        #expect(network.tokenFeePaid(in: approval, by: key.address) == nil)
        let ready = try network.createConditions(for: create, from: key.address, withTip: false)
        guard case .gas(let gas) = ready.estimate else { Issue.record("estimate \(ready.estimate)"); return }
        #expect(gas > 21_000)
        #expect(ready.token?.allowance == Self.fee)

        let receipt = try mine(create)
        let taskId = try #require(network.createdTaskId(in: receipt))
        #expect(network.tokenFeePaid(in: receipt, by: key.address) == Self.fee)
        #expect(try network.transactionThatUsed(nonce: 1, of: key.address) == receipt.transactionHash)
        let after = try network.createConditions(for: create, from: key.address, withTip: false)
        #expect(after.token?.allowance == 0)
        #expect(after.token?.balance == BigUInt(9_970) * BigUInt(10).power(18))

        let running = try network.readTasks([taskId])[0].get()
        #expect(running.phase == .running)
        #expect(running.deadline > UInt64(Date().timeIntervalSince1970))
        #expect(try network.finishedOutcome(taskId: taskId, fromBlock: receipt.blockNumber) == nil)

        // Signed with the local clock: this Relay has no /v1/now.
        let upload = try waitFor("the relay to see task \(taskId)") {
            let outcome = try network.uploadTaskArguments(taskId: taskId, arguments: Self.sdArgs, signer: key.address)
            return outcome == .notYetOnChain ? nil : outcome
        }
        #expect(upload == .uploaded)

        let resultNode = try waitFor("task \(taskId) to succeed", timeout: 60) { () -> Address? in
            if case .succeeded(let node) = try phase(taskId) { return node }
            return nil
        }
        #expect(try network.finishedOutcome(taskId: taskId, fromBlock: receipt.blockNumber) == .succeeded(resultNode: resultNode))

        let image = try waitFor("the result of task \(taskId)", timeout: 60) { () -> [UInt8]? in
            if case .data(let bytes, _) = try network.downloadResult(taskId: taskId, index: 0, signer: key.address) { return bytes }
            return nil
        }
        #expect(image.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        #expect(try devnet.uploadedDigests(taskId: taskId) == [0: try sha256(image)])

        // Three TaskCreated logs (one per node), one task; its fee from the receipt's CNX transfer.
        let time = try #require(try network.rpc.blockTimestamp(receipt.blockNumber))
        let expected = CreatedTask(taskId: taskId, taskHash: try request(.sd, Self.sdArgs).taskHash, txHash: receipt.transactionHash,
                                   block: receipt.blockNumber, time: time, fee: Self.fee)
        #expect(try network.tasksCreated(by: key.address, fromNonce: 0) == [expected])
        #expect(try network.tasksCreated(by: key.address, fromNonce: 2).isEmpty)
    }

    @Test func theNodeViewsCountTheFreeNodesAndWithoutAnyTheEstimateReverts() throws {
        #expect(network.node != nil)
        _ = try mine(try #require(network.approveCall(amount: 2 * Self.fee)))
        let gptArgs = #"{"model":"Qwen/Qwen2.5-7B-Instruct","messages":[{"role":"user","content":"hi"}],"#
            + #""generation_config":{"max_new_tokens":8},"seed":1,"dtype":"bfloat16"}"#
        let sd = try request(.sd, Self.sdArgs)
        let anyVram = TaskRequest(taskType: sd.taskType, taskHash: sd.taskHash, vramLimit: 0, cap: 1, fee: 0)
        let gpt = try request(.gpt, gptArgs)
        let bigVram = TaskRequest(taskType: sd.taskType, taskHash: sd.taskHash, vramLimit: 40, cap: 1, fee: 0)
        // Seven 24 GB nodes of one model: what each kind of task could start, as createTask would
        // pick its nodes; then four, with three taken by a task (its arguments never uploaded).
        try devnet.configure(["nodes": 7, "node_vram_gb": 24, "node_gpu_kinds": 1])
        let block = try network.rpc.blockNumber()
        #expect(try [sd, anyVram, gpt, bigVram].map { try network.admissionState(for: $0).limit } == [2, 2, 2, 0])
        #expect(try network.admissionState(for: sd).readBlock >= block)
        _ = try mine(try network.createTaskCall(sd))
        #expect(try [sd, anyVram, gpt].map { try network.admissionState(for: $0).limit } == [1, 1, 1])
        try devnet.configure(["nodes": 0])
        let cases: [(TaskRequest, String)] = [
            (sd, "No kind of gpu vram meets condition"), (anyVram, "No available nodes"),
            (try request(.gpt, gptArgs), "No kind of gpu id meets condition"),
        ]
        for (request, expected) in cases {
            let call = try network.createTaskCall(request)
            let conditions = try network.createConditions(for: call, from: key.address, withTip: false)
            #expect(conditions.estimate == .reverts(expected))
            guard case .reverts(let reason) = conditions.estimate else { continue }
            #expect(network.lacksFreeNodes(revertReason: reason), "\(reason)")
        }
        // Without an allowance the contract stops before picking nodes: that revert is no shortage.
        _ = try mine(try #require(network.approveCall(amount: 0)))
        let refused = try network.createConditions(for: try network.createTaskCall(sd), from: key.address, withTip: false)
        #expect(refused.estimate == .reverts("Not enough allowance for task"))
        #expect(!network.lacksFreeNodes(revertReason: "Not enough allowance for task"))
    }
}
