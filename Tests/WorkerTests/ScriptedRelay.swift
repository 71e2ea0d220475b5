import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport
@testable import Worker

/// A Lithium Relay held in memory, whose every answer the test can steer: the Lithium stages run
/// in-process against it and real PostgreSQL. It keeps the rules that make money move (a charge
/// per created task, a refund per refunded end, the VRF proof checked, a single validation of a
/// selected task refused), so a test sees what a job paid. The end-to-end tests against the
/// local Lithium network check the wire.
final class ScriptedRelay: LithiumRelay, @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible { let description: String }

    let wallet: Address
    private let lock = NSLock()
    private var state = State()

    struct State {
        var tasks: [[UInt8]: LithiumTask] = [:]
        var requests: [[UInt8]: LithiumTaskRequest] = [:]
        var balance = BigUInt(1000) * BigUInt(10).power(18)
        var sequence: UInt64 = 0
        /// Create requests that reached the Relay (including those it refused).
        var createsSent = 0
        var validations: [[[UInt8]]] = []
        var cancels: [[UInt8]] = []
        /// The next create is taken (and charged) but its answer is lost.
        var loseNextCreateAnswer = false
        /// The next validation is taken but its answer is lost.
        var loseNextValidateAnswer = false
        /// Every create answers this instead (e.g. `.rejected`).
        var createVerdict: LithiumCreateOutcome?
        /// Sampling seeds the Relay draws, in order (random once used up).
        var seeds: [[UInt8]] = []
        /// Tasks the Relay has forgotten.
        var forgotten: Set<[UInt8]> = []
        var node = LithiumSelectedNode(address: Address(bytes: [UInt8](repeating: 0x44, count: 20)), gpuName: "NVIDIA GeForce RTX 4090",
                                       gpuVram: 24)
        var calls: [String: Int] = [:]
    }

    init(wallet: Address) { self.wallet = wallet }

    func read<T>(_ body: (State) -> T) -> T { lock.withLock { body(state) } }
    func script(_ body: (inout State) -> Void) { lock.withLock { body(&state) } }

    private func counted<T>(_ name: String, _ body: (inout State) throws(RelayError) -> T) throws(RelayError) -> T {
        lock.lock()
        defer { lock.unlock() }
        state.calls[name, default: 0] += 1
        return try body(&state)
    }

    var funds: BigUInt { read { $0.balance } }
    func calls(_ name: String) -> Int { read { $0.calls[name] ?? 0 } }
    func task(hex commitment: [UInt8]) -> LithiumTask? { read { $0.tasks[commitment] } }
    var taskCount: Int { read { $0.tasks.count } }

    /// Moves a task on, as its node and the Relay would; an abort or group refund refunds its fee
    /// unless the reason says otherwise.
    func set(_ commitment: [UInt8], _ status: LithiumStatus, abort: LithiumAbortReason = .none) {
        script { state in
            guard var task = state.tasks[commitment] else { return }
            task.status = status
            task.abortReason = abort
            let now = Date()
            switch status {
            case .started: task.startTime = now; task.selectedNode = state.node.address; task.timeout = 300
            case .scoreReady, .errorReported: task.scoreReadyTime = now; task.selectedNode = task.selectedNode ?? state.node.address
            case .validated, .groupValidated: task.validatedTime = now
            case .endAborted where abort.refunded, .endGroupRefund: state.balance += task.taskFee
            default: break
            }
            state.tasks[commitment] = task
        }
    }

    func setAll(_ status: LithiumStatus) {
        for commitment in read({ Array($0.tasks.keys) }) { set(commitment, status) }
    }

    // MARK: LithiumRelay

    func create(_ request: LithiumTaskRequest) throws(RelayError) -> LithiumCreateOutcome {
        try counted("create") { state throws(RelayError) in
            state.createsSent += 1
            if let verdict = state.createVerdict { return verdict }
            if state.tasks[request.commitment] != nil { return .alreadyUploaded }
            guard state.balance >= request.taskFee else { return .insufficientBalance }
            state.balance -= request.taskFee
            state.sequence += 1
            let seed = state.seeds.isEmpty ? (0..<32).map { _ in UInt8.random(in: 0...255) } : state.seeds.removeFirst()
            let task = LithiumTask(sequence: state.sequence, commitment: request.commitment, creator: wallet, samplingSeed: seed,
                                   status: .queued, taskFee: request.taskFee, taskSize: request.taskSize, createTime: Date())
            state.tasks[request.commitment] = task
            state.requests[request.commitment] = request
            if state.loseNextCreateAnswer {
                state.loseNextCreateAnswer = false
                throw RelayError("timed out", isTransport: true)
            }
            return .created(task)
        }
    }

    func task(_ commitment: [UInt8]) throws(RelayError) -> LithiumLookup {
        try counted("task") { state in
            guard !state.forgotten.contains(commitment), let task = state.tasks[commitment] else { return .notFound }
            return .found(task)
        }
    }

    func selectedNode(_ commitment: [UInt8]) throws(RelayError) -> LithiumSelectedNodeLookup {
        try counted("selectedNode") { state in
            guard let task = state.tasks[commitment] else { return .notFound }
            return task.selectedNode == nil ? .notStarted : .found(state.node)
        }
    }

    func validate(commitments: [[UInt8]], taskId: [UInt8], proof: [UInt8], publicKey: [UInt8]) throws(RelayError) -> LithiumValidateOutcome {
        try counted("validate") { state throws(RelayError) in
            let tasks = commitments.compactMap { state.tasks[$0] }
            guard tasks.count == commitments.count, let first = tasks.first else { return .refused("Task not found") }
            guard tasks.allSatisfy({ $0.status.awaitsValidation || $0.status == .endAborted }) else { return .refused("illegal task state") }
            for (commitment, task) in zip(commitments, tasks) {
                guard let request = state.requests[commitment],
                      LithiumTaskRequest.commitment(taskId: taskId, nonce: request.nonce) == task.commitment else {
                    return .refused("task id mismatch")
                }
            }
            guard let beta = ECVRF.verify(publicKey: publicKey, alpha: first.samplingSeed, proof: proof) else { return .refused("invalid vrf proof") }
            let selected = ECVRF.selects(beta: beta)
            if commitments.count == 1, selected { return .refused("task is selected for validation") }
            if commitments.count == 3, !selected { return .refused("task is not selected for validation") }
            guard commitments.count == 1 || commitments.count == 3 else { return .refused("wrong number of tasks") }
            state.validations.append(commitments)
            let now = Date()
            for commitment in commitments where state.tasks[commitment]?.status.awaitsValidation == true {
                state.tasks[commitment]?.status = commitments.count == 1 ? .validated : .groupValidated
                state.tasks[commitment]?.validatedTime = now
            }
            if state.loseNextValidateAnswer {
                state.loseNextValidateAnswer = false
                throw RelayError("timed out", isTransport: true)
            }
            return .validated
        }
    }

    func cancel(_ commitment: [UInt8]) throws(RelayError) -> LithiumCancelOutcome {
        try counted("cancel") { state in
            guard let task = state.tasks[commitment] else { return .notFound }
            state.cancels.append(commitment)
            guard task.status == .queued else { return .tooLate }
            state.tasks[commitment]?.status = .endAborted
            state.tasks[commitment]?.abortReason = .creatorCancelled
            state.balance += task.taskFee
            return .cancelled
        }
    }

    func result(_ commitment: [UInt8], index: Int, kind: TaskKind) throws(RelayError) -> DownloadOutcome {
        try counted("result") { state in
            guard let task = state.tasks[commitment] else { return .rejected("Task not found") }
            guard task.status.hasResults else { return .notReady("Task results not uploaded") }
            guard UInt64(index) < task.taskSize else { return .rejected("Index out of range") }
            let body = Array("result \(index) of \(commitment.hex)".utf8)
            return .data(body, contentType: kind == .gpt ? "application/json" : "image/png")
        }
    }

    func balance() throws(RelayError) -> BigUInt { try counted("balance") { $0.balance } }
}

/// The Lithium stage machine in-process: real PostgreSQL, a scripted Relay, one wallet.
struct LithiumHarness {
    let database: TestDatabase
    let db: PostgresConnection
    let wallet: Wallet
    let relay: ScriptedRelay
    let config: WorkerConfig
    let pipeline: Pipeline
    static let worker = "lithium-stage-test"

    init(key: PrivateKey = .random(), configure: (inout WorkerConfig) -> Void = { _ in }) throws {
        database = try TestDatabase.create(prefix: "lithium")
        db = try database.connect()
        try Migrator.migrate(db)
        var config = WorkerConfig(databaseURL: database.url, rpcURL: "", relayURL: "http://127.0.0.1:9", expectedChainId: nil,
                                  taskContract: Address(bytes: [UInt8](repeating: 0, count: 20)), taskQueueContract: nil, keys: [key],
                                  workerName: Self.worker)
        config.profile = .lithium
        config.sdSchema = .lithiumDefault
        config.retryBase = 0.01
        config.retryMax = 0.05
        configure(&config)
        self.config = config
        wallet = Wallet(key: key, chainId: 0)
        relay = ScriptedRelay(wallet: key.address)
        pipeline = Pipeline(relays: [key.address: relay], wallets: [wallet], config: config, worker: Self.worker,
                            log: WorkerLog(name: Self.worker, quiet: true))
    }

    @discardableResult
    func submit(kind: String = "sd", _ args: String = PipelineHarness.sdArgs(images: 2), feeWei: String? = nil) throws -> Int64 {
        try JobStore.submit(db, JobSubmission(kind: kind, taskArgs: args, feeWei: feeWei))
    }

    /// Makes the pending jobs due now and runs one claim of them through the pipeline.
    @discardableResult
    func runOnce(_ id: Int64) throws -> Job {
        try db.execute("UPDATE crynux.jobs SET run_at = now() WHERE status = 'pending'")
        let jobs = try JobStore.claim(db, worker: Self.worker, wallets: [wallet.address], profile: "lithium", limit: 16, leaseSeconds: 60)
        pipeline.run(db, jobs, stopping: { false })
        return try job(id)
    }

    func job(_ id: Int64) throws -> Job {
        guard let job = try JobStore.job(db, id: id) else { throw TestSetupError("no job \(id)") }
        return job
    }

    func tasks(_ id: Int64) throws -> [RelayTaskRecord] { try JobStore.relayTasks(db, jobId: id) }

    func details(_ id: Int64) throws -> [String] { try JobStore.events(db, jobId: id).map(\.detail) }

    /// The job's history for a failure message (never throws: it is read inside #expect).
    func story(_ id: Int64) -> String { (try? details(id).joined(separator: " | ")) ?? "(history unreadable)" }

    /// Sampling seeds whose VRF output under this wallet's key selects (or does not select) the
    /// task for a validation group: 1 % of seeds do, so a search finds one in about 100 proofs.
    func seed(selecting: Bool) throws -> [UInt8] {
        var seed = [UInt8](repeating: 0, count: 32)
        for counter in UInt32(0)... {
            seed[28...31] = ArraySlice([UInt8(counter >> 24), UInt8(truncatingIfNeeded: counter >> 16), UInt8(truncatingIfNeeded: counter >> 8),
                                        UInt8(truncatingIfNeeded: counter)])
            let (_, beta) = try ECVRF.prove(key: wallet.key, alpha: seed)
            if ECVRF.selects(beta: beta) == selecting { return seed }
        }
        throw TestSetupError("no seed found")
    }
}
