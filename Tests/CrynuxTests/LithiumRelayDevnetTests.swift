import BigInt
import Ethereum
import Foundation
import HTTP
import StrictJSON
import TestSupport
import Testing

@testable import Crynux

/// `LithiumRelayClient` against the local Lithium network (scripts/devnet up --profile lithium):
/// crynux-relay@24ffc26's routes with Relay Accounts, simulated nodes and VRF validation. Every test
/// uses a fresh wallet funded through the admin API and fresh commitments, so they run side by side.
@Suite struct LithiumRelayDevnetTests {
    let devnet: Devnet
    static let http = HTTPClient(options: HTTPOptions(connectTimeout: 5, totalTimeout: 30))
    static let cnx = BigUInt(10).power(18)
    static let sdArgs = #"{"version":"2.0.0","base_model":{"name":"crynux-ai/sdxl-turbo"},"prompt":"a lithium fox","#
        + #""negative_prompt":"","task_config":{"num_images":2,"seed":7,"steps":1,"cfg":0}}"#

    init() throws {
        devnet = try Devnet.sharedLithium()
    }

    /// A fresh wallet whose Relay Account holds `balance` (nil: no account at all).
    private func wallet(balance: BigUInt?) throws -> (PrivateKey, LithiumRelayClient) {
        let key = PrivateKey.random()
        if let balance {
            try devnet.admin("POST", "/admin/lithium/accounts/\(key.address.checksummed)", ["balance": String(balance)])
        }
        return (key, LithiumRelayClient(baseURL: devnet.relayURL, key: key, http: Self.http, timeout: 20))
    }

    private struct Fresh {
        let taskId: [UInt8]
        let request: LithiumTaskRequest
    }

    private func fresh(args: String = sdArgs, fee: BigUInt = 3 * cnx, minVram: UInt64 = 8, version: String = "3.1.0",
                       size: UInt64 = 2) -> Fresh {
        let taskId = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let request = LithiumTaskRequest(
            commitment: LithiumTaskRequest.commitment(taskId: taskId, nonce: nonce), taskArgs: args, taskType: .sd, nonce: nonce,
            modelIds: ["base:crynux-ai/sdxl-turbo"], minVram: minVram, taskVersion: version, taskSize: size, taskFee: fee)
        return Fresh(taskId: taskId, request: request)
    }

    private func created(_ client: LithiumRelayClient, _ request: LithiumTaskRequest) throws -> LithiumTask {
        let outcome = try client.create(request)
        guard case .created(let task) = outcome else { throw TestSetupError("create answered \(outcome)") }
        return task
    }

    private func found(_ client: LithiumRelayClient, _ commitment: [UInt8]) throws -> LithiumTask {
        let lookup = try client.task(commitment)
        guard case .found(let task) = lookup else { throw TestSetupError("lookup answered \(lookup)") }
        return task
    }

    /// Polls the task until `accept` holds, for at most `timeout` seconds.
    private func waitForTask(_ client: LithiumRelayClient, _ commitment: [UInt8], _ what: String, timeout: Double = 30,
                             _ accept: (LithiumTask) -> Bool) throws -> LithiumTask {
        try waitFor(what, timeout: timeout) { () throws -> LithiumTask? in
            let task = try found(client, commitment)
            return accept(task) ? task : nil
        }
    }

    static func selectsForValidation(_ beta: [UInt8]) -> Bool { BigUInt(Data(beta)) % 100 == 0 }

    // MARK: create

    @Test func createParsesTheAnswerAndChargesTheFee() throws {
        // Another suite turns this network's knobs for everyone only while no test here runs.
        try SharedNetworkKnobs.shared { () throws in
            let (key, client) = try wallet(balance: 100 * Self.cnx)
            #expect(try client.balance() == 100 * Self.cnx)
            let f = fresh(fee: 3 * Self.cnx + 17)
            let before = Date().addingTimeInterval(-5)
            let task = try created(client, f.request)
            #expect(task.sequence > 0)
            #expect(task.commitment == f.request.commitment)
            #expect(task.creator == key.address)
            #expect(task.samplingSeed.count == 32 && task.samplingSeed != [UInt8](repeating: 0, count: 32))
            #expect(task.status == .queued || task.status == .started)
            #expect(task.abortReason == LithiumAbortReason.none)
            #expect(task.taskFee == 3 * Self.cnx + 17)
            #expect(task.taskSize == 2)
            #expect(task.selectedNode == nil)
            let createTime = try #require(task.createTime)
            #expect(createTime > before && createTime < Date().addingTimeInterval(5))
            #expect(try client.balance() == 97 * Self.cnx - 17)

            // The lookup agrees with the create answer.
            let looked = try found(client, f.request.commitment)
            #expect(looked.sequence == task.sequence && looked.samplingSeed == task.samplingSeed && looked.taskFee == task.taskFee)

            // The same commitment again: nothing created, nothing charged.
            #expect(try client.create(f.request) == .alreadyUploaded)
            #expect(try client.balance() == 97 * Self.cnx - 17)
        }
    }

    @Test func createWithoutBalanceIsInsufficient() throws {
        // Another suite turns this network's knobs for everyone only while no test here runs.
        try SharedNetworkKnobs.shared { () throws in
            let (_, unfunded) = try wallet(balance: nil)
            #expect(try unfunded.balance() == 0)
            let f = fresh()
            #expect(try unfunded.create(f.request) == .insufficientBalance)
            #expect(try unfunded.task(f.request.commitment) == .notFound)

            let (_, poor) = try wallet(balance: 3 * Self.cnx - 1)
            #expect(try poor.create(fresh(fee: 3 * Self.cnx).request) == .insufficientBalance)
            #expect(try poor.balance() == 3 * Self.cnx - 1)
        }
    }

    @Test func createRefusesBadVersionAndArguments() throws {
        // Another suite turns this network's knobs for everyone only while no test here runs.
        try SharedNetworkKnobs.shared { () throws in
            let (_, client) = try wallet(balance: 100 * Self.cnx)
            #expect(try client.create(fresh(version: "3.1").request) == .rejected("task_version: Invalid task version"))
            guard case .rejected(let message) = try client.create(fresh(args: #"{"prompt":5}"#).request) else {
                Issue.record("schema-invalid task_args were not rejected")
                return
            }
            #expect(message.hasPrefix("task_args: "))
            #expect(try client.balance() == 100 * Self.cnx)
        }
    }

    /// Task arguments that need escaping in the form and in Go's JSON (`<`, `&`, `+`, `=`, quotes,
    /// non-ASCII, U+2028) still sign correctly.
    @Test func createSignsArgumentsNeedingEscapes() throws {
        // Another suite turns this network's knobs for everyone only while no test here runs.
        try SharedNetworkKnobs.shared { () throws in
            let (_, client) = try wallet(balance: 100 * Self.cnx)
            let args = #"{"version":"2.0.0","base_model":{"name":"crynux-ai/sdxl-turbo"},"prompt":"a <fox> & \"hare\" + 1=2 ü \#u{2028} 日本","#
                + #""negative_prompt":"","task_config":{"num_images":1,"seed":7,"steps":1,"cfg":0}}"#
            let task = try created(client, fresh(args: args, size: 1).request)
            #expect(task.taskSize == 1)
        }
    }

    // MARK: lookups

    @Test func lookupsOfUnknownAndForeignTasks() throws {
        // Another suite turns this network's knobs for everyone only while no test here runs.
        try SharedNetworkKnobs.shared { () throws in
            let (_, client) = try wallet(balance: 100 * Self.cnx)
            let (_, other) = try wallet(balance: 100 * Self.cnx)
            let unknown = fresh().request.commitment
            #expect(try client.task(unknown) == .notFound)
            #expect(try client.selectedNode(unknown) == .notFound)
            #expect(try client.cancel(unknown) == .notFound)

            let f = fresh()
            _ = try created(client, f.request)
            #expect(try other.task(f.request.commitment) == .rejected("signature: Signer not allowed"))
            #expect(try other.cancel(f.request.commitment) == .rejected("signature: Signer not allowed"))
            #expect(try other.result(f.request.commitment, index: 0, kind: .sd) == .rejected("signature: Signer not allowed"))
        }
    }

    // MARK: the whole life

    @Test func runValidateAndDownload() throws {
        // Another suite turns this network's knobs for everyone only while no test here runs.
        try SharedNetworkKnobs.shared { () throws in
            let (key, client) = try wallet(balance: 100 * Self.cnx)
            // 1 task in 100 is selected for validation (then a single validation is refused): draw another.
            var picked: (Fresh, LithiumTask, [UInt8])?
            for _ in 0..<5 {
                let f = fresh()
                let task = try created(client, f.request)
                let (proof, beta) = try ECVRF.prove(key: key, alpha: task.samplingSeed)
                if !Self.selectsForValidation(beta) {
                    picked = (f, task, proof)
                    break
                }
                _ = try waitForTask(client, f.request.commitment, "a score") { $0.status.awaitsValidation }
                #expect(try client.validate(commitments: [f.request.commitment], taskId: f.taskId, proof: proof, publicKey: key.publicKey)
                    == .refused("task is selected for validation"))
            }
            let (f, _, proof) = try #require(picked)
            let c = f.request.commitment

            let node = try waitFor("a node for the task") { () throws -> LithiumSelectedNode? in
                if case .found(let node) = try client.selectedNode(c) { return node }
                return nil
            }
            #expect(node.gpuVram >= 8 && !node.gpuName.isEmpty)
            #expect(try client.result(c, index: 0, kind: .sd) == .notReady("task_id: Task results not uploaded"))

            let ready = try waitForTask(client, c, "ScoreReady") { $0.status == .scoreReady }
            #expect(ready.selectedNode == node.address)
            #expect(ready.timeout >= 60 && ready.startTime != nil && ready.scoreReadyTime != nil)
            #expect(ready.score.hasPrefix("0x") && ready.score.count == 2 + 2 * 16)

            // Refusals first: another task id, a proof for another seed.
            let wrongId = (0..<32).map { _ in UInt8.random(in: 0...255) }
            #expect(try client.validate(commitments: [c], taskId: wrongId, proof: proof, publicKey: key.publicKey) == .refused("task id incorrect"))
            let (otherProof, _) = try ECVRF.prove(key: key, alpha: [UInt8](repeating: 1, count: 32))
            // go-ecvrf says "invalid proof" (vrf.go Verify); the devnet says "invalid vrf proof".
            let refusal = try client.validate(commitments: [c], taskId: f.taskId, proof: otherProof, publicKey: key.publicKey)
            #expect(refusal == .refused("invalid proof") || refusal == .refused("invalid vrf proof"))
            #expect(try client.validate(commitments: [c, c], taskId: f.taskId, proof: proof, publicKey: key.publicKey)
                == .refused("task_id_commitments: TaskIDCommitments length incorrect"))

            #expect(try client.validate(commitments: [c], taskId: f.taskId, proof: proof, publicKey: key.publicKey) == .validated)
            let done = try waitForTask(client, c, "EndSuccess") { $0.status.isTerminal }
            #expect(done.status == .endSuccess)
            #expect(done.validatedTime != nil && done.resultUploadedTime != nil)
            // Validating again: the task has left ScoreReady.
            #expect(try client.validate(commitments: [c], taskId: f.taskId, proof: proof, publicKey: key.publicKey) == .refused("illegal task state"))

            for index in 0..<2 {
                guard case .data(let bytes, let type) = try client.result(c, index: index, kind: .sd) else {
                    Issue.record("result \(index) not downloadable")
                    continue
                }
                #expect(type == "image/png")
                #expect(bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) && bytes.count > 100)
            }
            #expect(try client.result(c, index: 2, kind: .sd) == .rejected("index: File not found"))
            // The fee went to the node; nothing came back.
            #expect(try client.balance() == 97 * Self.cnx)
            #expect(try client.cancel(c) == .tooLate)
        }
    }

    // MARK: cancel

    @Test func cancelAQueuedTaskRefundsIt() throws {
        // Another suite turns this network's knobs for everyone only while no test here runs.
        try SharedNetworkKnobs.shared { () throws in
            let (key, client) = try wallet(balance: 10 * Self.cnx)
            // No node has 80 GB: the task stays queued.
            let f = fresh(fee: 4 * Self.cnx, minVram: 80)
            let task = try created(client, f.request)
            #expect(task.status == .queued)
            #expect(try client.balance() == 6 * Self.cnx)
            #expect(try client.selectedNode(f.request.commitment) == .notStarted)
            let (proof, _) = try ECVRF.prove(key: key, alpha: task.samplingSeed)
            #expect(try client.validate(commitments: [f.request.commitment], taskId: f.taskId, proof: proof, publicKey: key.publicKey)
                == .refused("illegal task state"))

            #expect(try client.cancel(f.request.commitment) == .cancelled)
            let ended = try found(client, f.request.commitment)
            #expect(ended.status == .endAborted && ended.abortReason == .creatorCancelled)
            #expect(try client.balance() == 10 * Self.cnx)
            #expect(try client.cancel(f.request.commitment) == .tooLate)
            #expect(try client.result(f.request.commitment, index: 0, kind: .sd) == .notReady("task_id: Task results not uploaded"))
        }
    }

    // MARK: deposit

    /// The real way money reaches a Relay Account: a CNX transfer to the deposit address.
    @Test func depositByCNXTransferFundsTasks() throws {
        // Another suite turns this network's knobs for everyone only while no test here runs.
        try SharedNetworkKnobs.shared { () throws in
            let (key, client) = try wallet(balance: nil)
            let deposit = try #require(devnet.depositAddress.flatMap { Address(hex: $0) })
            let token = try #require(devnet.tokenContract.flatMap { Address(hex: $0) })
            try devnet.fund(key.address.checksummed, wei: "1000000000000000000")
            try devnet.admin("POST", "/admin/cnx", ["address": key.address.checksummed, "balance": String(10 * Self.cnx)])
            let rpc = EthereumClient(url: devnet.rpcURL, http: Self.http)
            let transfer = try ABI.encodeCall("transfer(address,uint256)", [.address(deposit), .uint(5 * Self.cnx)])
            let tx = LegacyTransaction(nonce: try rpc.getTransactionCount(key.address), gasPrice: try rpc.gasPrice(), gasLimit: 100_000,
                                       to: token, data: transfer, chainId: devnet.chainId)
            let hash = try rpc.sendRawTransaction(try tx.signed(with: key).raw)
            let receipt = try waitFor("the transfer's receipt") { try rpc.getTransactionReceipt(hash) }
            #expect(receipt.status)

            #expect(try waitFor("the deposit credited") { () throws -> BigUInt? in
                let balance = try client.balance()
                return balance > 0 ? balance : nil
            } == 5 * Self.cnx)
            _ = try created(client, fresh(fee: 3 * Self.cnx).request)
            #expect(try client.balance() == 2 * Self.cnx)
        }
    }

    // MARK: clock and rate limit

    @Test func spacedRequestsAndLocalClock() throws {
        // Another suite turns this network's knobs for everyone only while no test here runs.
        try SharedNetworkKnobs.shared { () throws in
            let key = PrivateKey.random()
            // Two wallets' clients sharing one pacer (as a worker's do) take turns in one rate.
            let pacer = RequestPacer(requestsPerSecond: 1 / 0.3)
            let spaced = LithiumRelayClient(baseURL: devnet.relayURL + "/", key: key, http: Self.http, localClock: true, pacer: pacer)
            let other = LithiumRelayClient(baseURL: devnet.relayURL, key: PrivateKey.random(), http: Self.http, localClock: true, pacer: pacer)
            let start = Date()
            for i in 0..<4 { #expect(try (i % 2 == 0 ? spaced : other).balance() == 0) }
            #expect(Date().timeIntervalSince(start) >= 0.85)
            #expect(spaced.clockOffset == 0)

            // A Relay nobody listens on: a transport error.
            let dead = LithiumRelayClient(baseURL: "http://127.0.0.1:9", key: key, http: Self.http, timeout: 2)
            #expect(throws: RelayError.self) { _ = try dead.balance() }
            do {
                _ = try dead.task(fresh().request.commitment)
                Issue.record("no error from a dead Relay")
            } catch {
                #expect((error as? RelayError)?.isTransport == true)
            }
        }
    }
}
