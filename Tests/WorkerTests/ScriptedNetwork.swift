import BigInt
import Crynux
import Ethereum
import Foundation
import Synchronization

/// A network whose every answer the test sets: the stage machine runs in-process against it and
/// real PostgreSQL. Unset answers are the happy ones. Every call is counted by name.
final class ScriptedNetwork: TaskNetwork, @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible { let description: String }

    var profile: NetworkProfile { read { $0.profile } }
    var deletesTaskWhenResultsUploaded: Bool { read { $0.deletesOnUpload } }
    let chainId: UInt64 = 10_000
    var sdSchema: SDSchema = .eraDDefault
    let taskAddress = Address(bytes: [UInt8](repeating: 0x11, count: 20))

    private let lock = NSLock()
    private var state = State()

    struct State {
        var profile: NetworkProfile = .eraD
        /// Era D deletes a succeeded task when its results are reported uploaded.
        var deletesOnUpload = false
        /// Hydrogen: the wallet's CNX, allowance and gas; the fee a mined createTask pulled.
        var token = TokenStanding(balance: 0, allowance: 0)
        var tokenFee: BigUInt = 30
        /// The wallet's native balance (era D: fee and gas; Hydrogen: gas): plenty unless set.
        var nativeBalance = BigUInt(10).power(30)
        var estimate: GasEstimate = .gas(200_000)
        var gasPrice: BigUInt = 1_000_000_000
        var tip: BigUInt = 1_000
        var queue = QueueState(size: 0, limit: 50)
        /// Hydrogen: the tasks the free nodes could start, read at `freeNodesBlock`; nil: no Node
        /// contract configured (nothing admitted against them).
        var freeNodeTasks: UInt64?
        var freeNodesBlock: UInt64 = 0
        var pendingNonce: UInt64 = 0
        var minedNonce: UInt64 = 0
        /// Which transaction used a nonce, as the chain shows it.
        var nonceUsers: [UInt64: [UInt8]] = [:]
        /// TaskPending logs of a wallet, by the first nonce asked for.
        var createdTasks: [CreatedTask] = []
        var signers: [Address] = []
        /// Answers to sends, used in order; then `.accepted`.
        var sendVerdicts: [SendVerdict] = []
        var sentRaw: [[UInt8]] = []
        var receipts: [[UInt8]: TransactionReceipt] = [:]
        var tasksOfReceipts: [[UInt8]: UInt64] = [:]
        var revertReason = "Invalid task type"
        var tasks: [UInt64: TaskState] = [:]
        var outcomes: [UInt64: TaskOutcome] = [:]
        var queued: Set<UInt64> = []
        var uploads: [UploadOutcome] = []
        var uploaded: [(UInt64, String)] = []
        /// Results per task; a missing task answers "not uploaded".
        var results: [UInt64: [DownloadOutcome]] = [:]
        /// Method names whose next call throws a transport failure.
        var failing: [String: Int] = [:]
        var calls: [String: Int] = [:]
        /// Runs inside `send`, before the verdict: lets a test look at the database at that moment.
        var onSend: (@Sendable ([UInt8]) -> Void)?
        /// Runs inside any call: lets a test take the lease away mid-stage.
        var onCall: (@Sendable (String) -> Void)?
    }

    func script(_ change: (inout State) -> Void) { lock.withLock { change(&state) } }
    func read<T>(_ body: (State) -> T) -> T { lock.withLock { body(state) } }
    func calls(_ name: String) -> Int { read { $0.calls[name] ?? 0 } }
    var sent: [[UInt8]] { read { $0.sentRaw } }

    private func enter(_ name: String) throws {
        let hook: (@Sendable (String) -> Void)? = try lock.withLock {
            state.calls[name, default: 0] += 1
            if let left = state.failing[name], left > 0 {
                state.failing[name] = left - 1
                throw Failure(description: "scripted failure of \(name)")
            }
            return state.onCall
        }
        hook?(name)
    }

    /// Mines the transaction whose hash is `hash`: a receipt, and the task it created.
    func mine(_ hash: [UInt8], block: UInt64 = 7, succeeded: Bool = true, taskId: UInt64? = nil, gasUsed: UInt64 = 90_000) {
        script {
            $0.receipts[hash] = TransactionReceipt(transactionHash: hash, status: succeeded, blockNumber: block, gasUsed: gasUsed)
            if let taskId { $0.tasksOfReceipts[hash] = taskId }
        }
    }

    // MARK: TaskNetwork

    func createTaskCall(_ request: TaskRequest) throws -> ContractCall {
        ContractCall(to: taskAddress, data: try TaskContract(address: taskAddress).createTaskCall(
            taskType: request.taskType, taskHash: request.taskHash, vramLimit: request.vramLimit, cap: request.cap),
            value: profile == .hydrogen ? 0 : request.fee)
    }

    func cancelTaskCall(taskId: UInt64) -> ContractCall {
        ContractCall(to: taskAddress, data: TaskContract(address: taskAddress).cancelTaskCall(taskId: taskId))
    }

    func createConditions(for call: ContractCall, from: Address, withTip: Bool) throws -> CreateConditions {
        try enter("createConditions")
        return read {
            CreateConditions(estimate: $0.estimate, gasPrice: $0.gasPrice, tip: withTip ? $0.tip : nil,
                             token: $0.profile == .hydrogen ? $0.token : nil,
                             nativeBalance: $0.nativeBalance)
        }
    }

    func nodeChainId() throws -> UInt64 {
        try enter("nodeChainId")
        return chainId
    }

    func funds(of wallet: Address) throws -> WalletFunds {
        try enter("funds")
        return read {
            WalletFunds(native: $0.nativeBalance,
                        token: $0.profile == .hydrogen ? $0.token.balance : nil, gasPrice: $0.gasPrice,
                        unminedNonces: $0.pendingNonce > $0.minedNonce ? $0.pendingNonce - $0.minedNonce : 0)
        }
    }

    static let tokenAddress = Address(bytes: [UInt8](repeating: 0x22, count: 20))

    func approveCall(amount: BigUInt) -> ContractCall? {
        guard profile == .hydrogen else { return nil }
        return ContractCall(to: Self.tokenAddress, data: ABI.selector("approve(address,uint256)") + [UInt8](repeating: 0, count: 12)
                                + taskAddress.bytes + ABI.uintWord(amount))
    }

    func tokenFeePaid(in receipt: TransactionReceipt, by wallet: Address) -> BigUInt? {
        read { $0.profile == .hydrogen ? $0.tokenFee : nil }
    }

    func lacksFreeNodes(revertReason reason: String) -> Bool {
        profile == .hydrogen && reason.hasPrefix("No ")
    }

    func queueState() throws -> QueueState {
        try enter("queueState")
        return read { $0.queue }
    }

    func admissionState(for request: TaskRequest) throws -> QueueState {
        guard profile == .hydrogen else { return try queueState() }
        try enter("admissionState")
        let weight: Int64 = request.taskType == TaskKind.gpt.taskType ? 3 : 1
        return read { s in
            s.freeNodeTasks.map { QueueState(size: 0, limit: $0, readBlock: s.freeNodesBlock, sdWeight: weight) } ?? QueueState(size: 0, limit: .max)
        }
    }

    func minedNonce(of wallet: Address) throws -> UInt64 {
        try enter("minedNonce")
        return read { $0.minedNonce }
    }

    func transactionThatUsed(nonce: UInt64, of wallet: Address) throws -> [UInt8]? {
        try enter("transactionThatUsed")
        return read { $0.nonceUsers[nonce] }
    }

    func tasksCreated(by creator: Address, fromNonce nonce: UInt64) throws -> [CreatedTask] {
        try enter("tasksCreated")
        return read { $0.createdTasks }
    }

    func estimateGas(_ call: ContractCall, from: Address) throws -> GasEstimate {
        try enter("estimateGas")
        return read { $0.estimate }
    }

    func gasPrice() throws -> BigUInt {
        try enter("gasPrice")
        return read { $0.gasPrice }
    }

    func maxPriorityFeePerGas() throws -> BigUInt {
        try enter("maxPriorityFeePerGas")
        return read { $0.tip }
    }

    func pendingNonce(of wallet: Address) throws -> UInt64 {
        try enter("pendingNonce")
        return read { $0.pendingNonce }
    }

    func send(raw: [UInt8]) throws -> SendVerdict {
        try enter("send")
        let hook = read { $0.onSend }
        hook?(raw)
        return lock.withLock {
            state.sentRaw.append(raw)
            return state.sendVerdicts.isEmpty ? .accepted : state.sendVerdicts.removeFirst()
        }
    }

    func receipt(of hash: [UInt8]) throws -> TransactionReceipt? {
        try enter("receipt")
        return read { $0.receipts[hash] }
    }

    func createdTaskId(in receipt: TransactionReceipt) -> UInt64? {
        read { $0.tasksOfReceipts[receipt.transactionHash] }
    }

    func revertReason(of call: ContractCall, from: Address, gas: UInt64, block: UInt64) -> String {
        read { $0.revertReason }
    }

    func readTasks(_ taskIds: [UInt64]) throws -> [Result<TaskState, any Error>] {
        try enter("readTasks")
        return read { state in
            taskIds.map { id in
                if let left = state.failing["getTask \(id)"], left > 0 { return .failure(Failure(description: "getTask \(id) failed")) }
                return .success(state.tasks[id] ?? TaskState(phase: .running))
            }
        }
    }

    func finishedOutcome(taskId: UInt64, fromBlock: UInt64) throws -> TaskOutcome? {
        try enter("finishedOutcome")
        return read { $0.outcomes[taskId] }
    }

    func isQueued(taskId: UInt64) throws -> Bool {
        try enter("isQueued")
        return read { $0.queued.contains(taskId) }
    }

    func uploadTaskArguments(taskId: UInt64, arguments: String, signer: Address) throws -> UploadOutcome {
        try enter("upload")
        return lock.withLock {
            state.uploaded.append((taskId, arguments))
            state.signers.append(signer)
            return state.uploads.isEmpty ? .uploaded : state.uploads.removeFirst()
        }
    }

    func downloadResult(taskId: UInt64, index: Int, signer: Address) throws -> DownloadOutcome {
        try enter("download")
        script { $0.signers.append(signer) }
        return read { state in
            guard let files = state.results[taskId], index < files.count else { return .notReady("Task results not uploaded") }
            return files[index]
        }
    }
}
