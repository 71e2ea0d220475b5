import BigInt
import Ethereum
import Foundation

/// Moments of a job recorded with the database's clock when an outcome sets them.
public enum JobStamp: String, Sendable, CaseIterable {
    case txSigned = "tx_signed_at"
    case txMined = "tx_mined_at"
    case argsUploaded = "args_uploaded_at"
    case taskQueued = "task_queued_at"
    case taskFinished = "task_finished_at"
}

/// On-chain facts a stage learned. Only what is set is written; nothing is ever cleared here.
public struct JobFacts: Sendable, Equatable {
    public var taskType: UInt64?
    public var taskHash: [UInt8]?
    public var cap: UInt64?
    public var vramLimit: UInt64?
    public var feeWei: BigUInt?
    public var walletAddress: Address?
    public var chainId: UInt64?
    public var txHash: [UInt8]?
    public var txBlockNumber: UInt64?
    public var taskId: UInt64?
    public var taskDeadline: Date?
    public var resultNode: Address?
    public var abortReason: String?
    /// Why the worker now cancels the task on chain for its refund.
    public var refundReason: String?
    /// The network profile the job's transactions are signed for.
    public var networkProfile: String?
    /// Hydrogen: the CNX pulled for the task; the approval the job signed.
    public var tokenFeeWei: BigUInt?
    public var approvalTxHash: [UInt8]?
    /// Lithium: the job's current Relay task.
    public var relayCommitment: [UInt8]?
    /// Lithium: Relay tasks to store (before their create requests are sent), and what was
    /// learned of stored ones. Written in the outcome's transaction.
    public var relayTasksPrepared: [RelayTaskRecord] = []
    public var relayTaskChanges: [RelayTaskChange] = []
    public var stamps: Set<JobStamp> = []

    /// Whether anything besides the job's own row is to be written.
    public var touchesRelayTasks: Bool { !relayTasksPrepared.isEmpty || !relayTaskChanges.isEmpty }

    public init(taskType: UInt64? = nil, taskHash: [UInt8]? = nil, cap: UInt64? = nil, vramLimit: UInt64? = nil,
                feeWei: BigUInt? = nil, walletAddress: Address? = nil, chainId: UInt64? = nil, txHash: [UInt8]? = nil,
                txBlockNumber: UInt64? = nil, taskId: UInt64? = nil, taskDeadline: Date? = nil, resultNode: Address? = nil,
                abortReason: String? = nil, refundReason: String? = nil, networkProfile: String? = nil, tokenFeeWei: BigUInt? = nil,
                approvalTxHash: [UInt8]? = nil, relayCommitment: [UInt8]? = nil, stamps: Set<JobStamp> = []) {
        self.relayCommitment = relayCommitment
        self.networkProfile = networkProfile
        self.tokenFeeWei = tokenFeeWei
        self.approvalTxHash = approvalTxHash
        self.taskType = taskType
        self.taskHash = taskHash
        self.cap = cap
        self.vramLimit = vramLimit
        self.feeWei = feeWei
        self.walletAddress = walletAddress
        self.chainId = chainId
        self.txHash = txHash
        self.txBlockNumber = txBlockNumber
        self.taskId = taskId
        self.taskDeadline = taskDeadline
        self.resultNode = resultNode
        self.abortReason = abortReason
        self.refundReason = refundReason
        self.stamps = stamps
    }
}

/// Room a createTask is admitted against, read at `readBlock`: our createTasks on their way
/// (signed and unmined, or mined after that block) must number fewer than `room`, each of our
/// Stable Diffusion ones counted `sdWeight` times (Hydrogen, for a GPT task: an SD task's three
/// nodes may come from three GPU models, each then one node short of three).
public struct Admission: Sendable, Equatable {
    public let room: UInt64
    public let readBlock: UInt64
    public let sdWeight: Int64

    public init(room: UInt64, readBlock: UInt64, sdWeight: Int64 = 1) {
        self.room = room
        self.readBlock = readBlock
        self.sdWeight = sdWeight
    }
}

/// A transaction a stage wants signed. The store reserves the nonce (or reuses one for a
/// replacement), has it signed and stores the bytes in one database transaction, before any
/// byte of it is sent.
public struct TransactionDraft: Sendable, Equatable {
    public static func == (a: TransactionDraft, b: TransactionDraft) -> Bool {
        a.purpose == b.purpose && a.wallet == b.wallet && a.replacingNonce == b.replacingNonce && a.to == b.to && a.data == b.data
            && a.value == b.value && a.gasLimit == b.gasLimit && a.gasPrice == b.gasPrice && a.tip == b.tip
            && a.admission == b.admission
            && a.lastApprovalSeen == b.lastApprovalSeen
            && a.tokenStanding?.available == b.tokenStanding?.available && a.tokenStanding?.fee == b.tokenStanding?.fee
    }

    public var purpose: TransactionPurpose
    public var wallet: Address
    /// The nonce of the transaction this one replaces; nil takes the wallet's next nonce.
    public var replacingNonce: UInt64?
    public var to: Address
    public var data: [UInt8]
    public var value: BigUInt
    public var gasLimit: UInt64
    /// gasPrice, or maxFeePerGas with a tip.
    public var gasPrice: BigUInt
    /// maxPriorityFeePerGas for EIP-1559; nil signs a legacy transaction.
    public var tip: BigUInt?
    /// Admission control for a new createTask: it is signed only while fewer than `room`
    /// createTasks (of every wallet and worker) are on their way to the queue: signed and not yet
    /// mined, or mined in a block after the one the queue's size was read at. nil: no limit.
    public var admission: Admission?
    /// For an approval: the wallet's latest approval when the stage looked (nil: none). The store
    /// signs it only if none was signed since: one mined a moment ago may not show in the
    /// allowance the stage read.
    public var lastApprovalSeen: [UInt8]?
    /// Hydrogen: what the wallet holds and allows the Task contract (the smaller, read at `latest`)
    /// and one task's fee. The store signs only while the wallet's createTasks not yet mined, this
    /// one included, fit in it: several threads reading the same standing sign no more tasks than
    /// it pays for (each one over would revert and burn gas).
    public var tokenStanding: (available: BigUInt, fee: BigUInt)?

    public init(purpose: TransactionPurpose, wallet: Address, replacingNonce: UInt64? = nil, to: Address, data: [UInt8],
                value: BigUInt, gasLimit: UInt64, gasPrice: BigUInt, tip: BigUInt?, admission: Admission? = nil) {
        self.purpose = purpose
        self.wallet = wallet
        self.replacingNonce = replacingNonce
        self.to = to
        self.data = data
        self.value = value
        self.gasLimit = gasLimit
        self.gasPrice = gasPrice
        self.tip = tip
        self.admission = admission
    }
}

/// What a stage decided for one job. The store applies it under the job's lease, with its history
/// row, in one database transaction.
public enum StageOutcome: Sendable, Equatable {
    /// Move on to `stage`, due after `after` seconds.
    case advance(to: JobStage, after: Double = 0, facts: JobFacts = JobFacts(), note: String)
    /// Same stage, due again later. A failed try counts towards backoff and stage limits and
    /// records `error` as the job's last error; a plain "still waiting" ends a streak of failures.
    case wait(after: Double, facts: JobFacts = JobFacts(), note: String? = nil, failedTry: Bool = false, error: String? = nil)
    /// The job ends failed. `retryFrom` is where `crynux-worker retry` may restart it: `.create`
    /// only when no on-chain task of this job can still succeed.
    case fail(reason: String, retryFrom: JobStage, facts: JobFacts = JobFacts())
    /// The job ends cancelled, as an operator asked.
    case cancel(note: String, facts: JobFacts = JobFacts())
    /// The results are stored and the job ends succeeded.
    case succeed(results: [ResultFile], note: String)
    /// Store this signed transaction (keeping the lease), then run the stage again with it: the
    /// stage broadcasts only what is already durable.
    case sign(TransactionDraft, facts: JobFacts = JobFacts(), note: String)
    /// The task is dead without our doing (evicted from the full queue, or on Hydrogen its
    /// createTask found too few free nodes by its block): forget its on-chain facts and create it
    /// again. Its transactions and history stay. `waitingForNodes` keeps (or starts) the job's
    /// wait for free nodes (`task_queued_at`), which `--queue-timeout` bounds.
    case recreate(note: String, waitingForNodes: Bool = false)
    /// The job's createTask can never be mined (another transaction of the wallet used its nonce,
    /// after records were lost) and nothing was paid: the job is unsigned again, as before it
    /// signed, so that reconciliation can give it the task it may have paid for before.
    case unsign(note: String)
    /// Store these facts (keeping the lease), then run the stage again with them: what a
    /// network request depends on (a Relay task about to be created, a VRF proof) is durable
    /// before the request is sent.
    case prepare(facts: JobFacts, note: String)
}

extension StageOutcome {
    /// The facts the outcome writes, if it writes any.
    public var facts: JobFacts? {
        switch self {
        case .advance(_, _, let facts, _), .wait(_, let facts, _, _, _), .fail(_, _, let facts), .cancel(_, let facts),
             .prepare(let facts, _), .sign(_, let facts, _):
            return facts
        case .succeed, .recreate, .unsign:
            return nil
        }
    }
}

/// What a stage saw happen to the job's transactions, written together with its outcome (also
/// when the stage then failed with a network error).
public struct Observations: Sendable, Equatable {
    /// Transactions handed to the node (whatever it answered).
    public var sent: [[UInt8]] = []
    /// Receipts found: hash, block, success.
    public var mined: [(hash: [UInt8], block: UInt64, succeeded: Bool)] = []
    /// The wallet's pending nonce as the node reported it: the wallet row never hands out a lower one.
    public var walletNonce: (wallet: Address, chainId: UInt64, pending: UInt64)?
    /// Transactions the node refused for good, with its answer.
    public var refused: [(hash: [UInt8], reason: String)] = []
    /// The chain used a nonce of the wallet the database does not know (records were lost).
    public var lostRecords: (wallet: Address, chainId: UInt64, fromNonce: UInt64)?

    public init() {}

    public var isEmpty: Bool { sent.isEmpty && mined.isEmpty && walletNonce == nil && refused.isEmpty && lostRecords == nil }

    public static func == (a: Observations, b: Observations) -> Bool {
        a.sent == b.sent && a.mined.map(\.hash) == b.mined.map(\.hash) && a.mined.map(\.block) == b.mined.map(\.block)
            && a.mined.map(\.succeeded) == b.mined.map(\.succeeded) && a.walletNonce?.pending == b.walletNonce?.pending
            && a.walletNonce?.wallet == b.walletNonce?.wallet && a.refused.map(\.hash) == b.refused.map(\.hash)
    }
}

/// Admission control said no: creating now could evict one of our own queued tasks.
public struct AdmissionDenied: Error, Sendable {
    public init() {}
}

/// A wallet's lost records are being reconciled: no new nonce is handed out meanwhile.
public struct ReconciliationPending: Error, Sendable, CustomStringConvertible {
    public let wallet: String
    public let fromNonce: UInt64
    public init(wallet: String, fromNonce: UInt64) {
        self.wallet = wallet
        self.fromNonce = fromNonce
    }
    public var description: String {
        "waiting: the database lost records of wallet \(wallet) (nonces from \(fromNonce) on); nothing is signed until its lost tasks are adopted"
    }
}

/// Hydrogen: the wallet's createTasks on their way already take all it holds or allows.
public struct TokensCommitted: Error, Sendable, CustomStringConvertible {
    public let onTheWay: Int
    public init(onTheWay: Int) { self.onTheWay = onTheWay }
    public var description: String {
        "waiting: \(onTheWay) createTask(s) of the wallet not yet mined already take what it holds or allows the Task contract; nothing was signed"
    }
}

/// Another approval of the wallet is on its way: the job waits for it instead of signing one more.
public struct ApprovalInFlight: Error, Sendable {
    public init() {}
}

/// The job's lease was lost while a stage ran: another worker owns it now; our outcome is dropped.
public struct LeaseLost: Error, Sendable {
    public init() {}
}
