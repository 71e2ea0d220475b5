import BigInt
import Crynux
import Ethereum
import Foundation
import Postgres

/// How much a Hydrogen wallet lets the Task contract pull when its allowance is short of a task's fee.
public enum ApprovalPolicy: Sendable, Equatable {
    /// The wallet's whole CNX balance at that moment (what the network's own bridge did).
    case balance
    /// 2^256 − 1: never approve again (OpenZeppelin then stops lowering it).
    case unlimited
    /// A fixed amount, at least one task's fee.
    case amount(BigUInt)
    /// Never approve: the operator manages the allowance; a short one fails the job, nothing spent.
    case none
}

/// Everything a worker process needs to know. Built from flags and environment by the CLI.
public struct WorkerConfig: Sendable {
    public var databaseURL: String?
    public var rpcURL: String
    public var relayURL: String
    /// When set, the node's chain id must equal it (checked at start).
    public var expectedChainId: UInt64?
    /// Which network generation to speak (era D by default).
    public var profile: NetworkProfile = .eraD
    public var taskContract: Address
    /// Era D's TaskQueue; Hydrogen has none.
    public var taskQueueContract: Address?
    /// Hydrogen's CNX token, which the Task contract pulls the fee from.
    public var tokenContract: Address?
    /// Hydrogen: where Node.sol's views are read to admit createTasks against the free nodes.
    public var nodeContract: Address?
    /// The wallets this worker pays with. A job stays with the wallet that signed its first
    /// transaction; a new job goes to one of them by its id.
    public var keys: [PrivateKey]
    /// A name for this process in leases and history (hostname:pid by default).
    public var workerName: String

    /// Stage executions running at once in this process (threads, each with its own connection).
    public var concurrency: Int = 4
    /// Jobs of the single-job stages (create, upload, fetch) claimed per free thread per round trip.
    public var claimBatch: Int = 8
    /// Due polls claimed on top, at most, in the same round trip: they go out as one JSON-RPC
    /// batch (geth takes up to 1,000 calls in one) and are written back in one statement.
    public var pollBatch: Int = 500
    public var leaseSeconds: Double = 120
    /// How long an idle worker sleeps when no NOTIFY arrives.
    public var idleInterval: Double = 2

    /// First and longest interval between two getTask polls of one task.
    public var pollInterval: Double = 1
    public var pollIntervalMax: Double = 30
    /// Era D: how long after TaskSuccess the worker waits for the task's deletion (its results
    /// reported uploaded) before it asks the Relay for them anyway.
    public var resultsUploadWait: Double = 60
    /// Backoff for transient failures (network errors, 5xx): base × 2^attempt, capped.
    public var retryBase: Double = 1
    public var retryMax: Double = 60

    /// Fee per result (image, or the one GPT answer), in wei; a job's own fee overrides it. 4.1 CNX,
    /// what the network's own bridge paid per image (crynux-bridge config `task_fee`, 4,100,000,000
    /// GWei): the queue starts the best-paid task first and evicts the cheapest without refund, so
    /// a low fee is paid for nothing in a busy network.
    public var feePerResultWei: BigUInt = BigUInt(41) * BigUInt(10).power(17)
    /// Hydrogen: the CNX a task is expected to cost (the contract's `taskFeePerNode` × 3, which it
    /// does not publish: 10 CNX per node at deployment). The wallet must hold and allow this much
    /// before a createTask is signed; what the contract really pulled is recorded per job.
    public var tokenTaskFeeWei: BigUInt = BigUInt(30) * BigUInt(10).power(18)
    /// Lithium: the fee of a task, in wei of CNX from the Relay Account: per image for SD, per
    /// answer for GPT. The network's bridge pays 1 CNX per SD image (2 for SDXL) and 5 per LLM
    /// task; the Relay starts the best-paid work (fee per estimated second) first, so the default
    /// is the bridge's SDXL price for every SD image. A job's own fee_wei overrides it.
    public var lithiumSDFeePerImageWei: BigUInt = BigUInt(2) * BigUInt(10).power(18)
    public var lithiumGPTFeeWei: BigUInt = BigUInt(5) * BigUInt(10).power(18)
    /// Lithium: the Relay's app_validation_timeout_seconds (600 on the live network). A validation
    /// group that is not complete this long minus `lithiumValidationMargin` after the job's task
    /// became ready is validated with what it has, its queued members cancelled.
    public var lithiumValidationTimeout: Double = 600
    public var lithiumValidationMargin: Double = 120
    /// Lithium: requests per second to the Relay per wallet (0: no limit).
    public var relayRequestRate: Double = 0
    /// Hydrogen: how much an approval allows when the allowance is short.
    public var approval: ApprovalPolicy = .balance
    /// Fixed gas limit for createTask; nil estimates it (and refuses a create that would revert).
    public var gasLimit: UInt64?
    /// Floor under twice the estimate (the era-D bridge sent 5,000,000 every time).
    public var minimumGasLimit: UInt64 = 1_500_000
    /// Gas a queued task's start may add to a transaction that frees nodes (cancelTask): the
    /// contract starts the best queued task inside it, and node selection costs more the more
    /// nodes are free. Unused gas is not charged.
    public var taskStartGas: UInt64 = 1_000_000
    /// The stable-diffusion-task schema the network's Relay enforces (a setting of the network).
    public var sdSchema: SDSchema = .eraDDefault
    /// Widest block range one `eth_getLogs` may span; nil: the whole range, split when the node
    /// names its limit (Ethermint: 10,000 by default).
    public var logsBlockRange: UInt64?
    /// Fixed gas price (or max fee for EIP-1559); nil asks the node.
    public var gasPriceWei: BigUInt?
    public var useEIP1559 = false
    /// A sent transaction with no receipt is sent again after this long, and replaced by one
    /// with a higher price (same nonce) after `replaceAfter`.
    public var rebroadcastAfter: Double = 10
    public var replaceAfter: Double = 60
    /// A replacement pays 25% more than the transaction it replaces (nodes want at least +10%),
    /// up to a ceiling: `maxGasPriceWei`, else `gasPriceCeilingFactor` × the first price, and
    /// never more gas (price × limit) than `maxGasShareOfFee` of the task's fee when that is set.
    public var maxGasPriceWei: BigUInt?
    public var gasPriceCeilingFactor: UInt = 3
    public var maxGasShareOfFee: Double?
    /// Budgets this worker sets in `crynux.budgets` at start (every worker enforces every budget there).
    public var budgets: [BudgetSpec] = []
    /// The most a job may pay for its task (era D: the createTask's value; Hydrogen: the CNX fee;
    /// Lithium: the Relay task's fee): a job that asks more fails, nothing paid.
    public var maxFeePerJobWei: BigUInt?
    /// A createTask not mined this long after the job entered create has its nonce filled (a
    /// zero-value transfer to the wallet itself) and the job fails without a task.
    public var createDeadline: Double = 900

    /// Admission control: while creating could evict one of our own queued tasks, a job waits
    /// this long in PostgreSQL before it looks again.
    public var admissionRetry: Double = 3
    /// Seconds between two looks of a job that waits for its wallet to be funded.
    public var fundsRetry: Double = 15
    /// Seconds between two balance checks of the wallet watch.
    public var walletCheckInterval: Double = 60
    /// The wallet watch warns when a wallet holds less than this many jobs' fees and gas.
    public var lowFundsJobs = 10
    /// A task evicted from the full queue anyway (others paid more) is created again this many times.
    public var maxRecreations = 3
    /// A task queued on chain longer than this is cancelled for its full refund (nil: the
    /// network's task timeout, 900 s on era D).
    public var queueTimeout: Double = 900
    /// How often the wallet keeper looks for transactions no stage follows any more.
    public var keeperInterval: Double = 10
    /// Retention inside `run`: succeeded (failed or cancelled) jobs finished longer ago than this
    /// many seconds are deleted every `pruneInterval`; nil keeps them.
    public var pruneSucceededAfter: Double?
    public var pruneFailedAfter: Double?
    public var pruneInterval: Double = 600

    /// Stage deadlines, measured from entering the stage.
    public var uploadDeadline: Double = 600
    public var fetchDeadline: Double = 1800
    /// Extra time after the on-chain deadline before we cancel the task ourselves.
    public var cancelGrace: Double = 30

    /// PEM file of the certificate authorities to trust for the node and the Relay (a private CA).
    public var caFile: String?
    /// How long `run` waits for PostgreSQL at start; nil: until it answers.
    public var startupTimeout: Double?
    /// After SIGTERM/SIGINT, how long stages in flight may take before their leases are released.
    public var shutdownGrace: Double = 20
    /// Exit once no job is pending (demo and tests).
    public var exitWhenIdle = false

    public init(databaseURL: String?, rpcURL: String, relayURL: String, expectedChainId: UInt64?,
                taskContract: Address, taskQueueContract: Address?, keys: [PrivateKey], workerName: String) {
        self.databaseURL = databaseURL
        self.rpcURL = rpcURL
        self.relayURL = relayURL
        self.expectedChainId = expectedChainId
        self.taskContract = taskContract
        self.taskQueueContract = taskQueueContract
        self.keys = keys
        self.workerName = workerName
    }

    /// Session limits of the worker's own connections: no statement or lock wait holds a thread
    /// (or the wallet row, and with it every signature) for long.
    static let databaseSettings = ["statement_timeout": "60s", "lock_timeout": "10s", "idle_in_transaction_session_timeout": "60s"]

    public func connectDatabase() throws -> PostgresConnection {
        try PostgresConnection(url: databaseURL, settings: Self.databaseSettings)
    }

    public static func defaultWorkerName() -> String {
        "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier)"
    }

    func backoff(attempt: Int) -> Double {
        let exponential = retryBase * pow(2, Double(min(attempt, 20)))
        return min(exponential, retryMax) * Double.random(in: 0.8...1.2)
    }

    /// Every number in one place, checked before anything runs: a duration that is not a finite
    /// number of seconds up to ten years (`inf`, `nan`, 1e300) would trap where it becomes a
    /// timer or an integer; counts must be positive. Throws naming the setting.
    public func validated() throws -> WorkerConfig {
        let tenYears = 10 * 365 * 86_400.0
        let durations: [(String, Double?, Double)] = [
            ("lease-seconds", leaseSeconds, 1), ("idle-interval", idleInterval, 0.01), ("poll-interval", pollInterval, 0.01),
            ("poll-interval-max", pollIntervalMax, 0.01), ("results-upload-wait", resultsUploadWait, 0), ("retry-base", retryBase, 0),
            ("retry-max", retryMax, 0), ("validation-timeout", lithiumValidationTimeout, 0.01), ("validation-margin", lithiumValidationMargin, 0),
            ("relay-request-rate", relayRequestRate, 0), ("rebroadcast-after", rebroadcastAfter, 0), ("replace-after", replaceAfter, 0),
            ("max-gas-share-of-fee", maxGasShareOfFee, 0), ("create-deadline", createDeadline, 1), ("admission-retry", admissionRetry, 0.01),
            ("funds-retry", fundsRetry, 0.01), ("wallet-check-interval", walletCheckInterval, 0.01), ("queue-timeout", queueTimeout, 0.01),
            ("keeper-interval", keeperInterval, 0.01), ("prune-succeeded-older-than", pruneSucceededAfter, 0),
            ("prune-failed-older-than", pruneFailedAfter, 0), ("prune-interval", pruneInterval, 0.01), ("upload-deadline", uploadDeadline, 0),
            ("fetch-deadline", fetchDeadline, 0), ("cancel-grace", cancelGrace, 0), ("startup-timeout", startupTimeout, 0),
            ("shutdown-grace", shutdownGrace, 0),
        ]
        for (flag, value, minimum) in durations {
            guard let value else { continue }
            guard value.isFinite, value >= minimum, value <= tenYears else {
                throw WorkerError("--\(flag) must be a number from \(minimum) to \(Int(tenYears)) (got \(value))")
            }
        }
        let counts: [(String, Int, Int)] = [("concurrency", concurrency, 1), ("claim-batch", claimBatch, 1), ("poll-batch", pollBatch, 1),
                                            ("low-funds-jobs", lowFundsJobs, 1), ("max-recreations", maxRecreations, 0)]
        for (flag, value, minimum) in counts where value < minimum || value > 1_000_000 {
            throw WorkerError("--\(flag) must be a whole number from \(minimum) to 1000000 (got \(value))")
        }
        guard pollIntervalMax >= pollInterval else { throw WorkerError("--poll-interval-max must be at least --poll-interval") }
        return self
    }

    /// The highest price a replacement may pay, given the first price, the gas limit and the fee.
    func gasPriceCeiling(firstPrice: BigUInt, gasLimit: UInt64, fee: BigUInt) -> BigUInt {
        var ceiling = maxGasPriceWei ?? firstPrice * BigUInt(gasPriceCeilingFactor)
        // A share of no fee (a task whose fee is not known here) would forbid every bump.
        if let share = maxGasShareOfFee, gasLimit > 0, fee > 0 {
            let basisPoints = BigUInt(max(0, min(share, 1)) * 10_000)
            ceiling = min(ceiling, fee * basisPoints / 10_000 / BigUInt(gasLimit))
        }
        return max(ceiling, firstPrice)
    }

    /// The next getTask poll: a tenth of the time the task has run so far, within the bounds.
    func nextPoll(waited: Double) -> Double {
        min(max(pollInterval, waited / 10), pollIntervalMax)
    }
}

/// `--budget`: `50cnx/hour`, `0.5cnx/10m`, `1000wei/30s`, or with `total:` in front a budget of all
/// wallets together; without it, one budget per wallet of the worker.
public struct BudgetSpec: Sendable, Equatable {
    public let total: Bool
    public let window: Int
    public let limit: BigUInt

    public init(total: Bool, window: Int, limit: BigUInt) {
        self.total = total
        self.window = window
        self.limit = limit
    }

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    public static func parse(_ text: String) throws -> BudgetSpec {
        let invalid = Invalid(description: "--budget \"\(text)\": expected AMOUNT/WINDOW, e.g. 50cnx/hour, 0.5cnx/10m, 500cnx/day, total:2000cnx/day (AMOUNT in cnx or wei, WINDOW second, minute, hour, day or a number with s, m, h, d)")
        var body = Substring(text.lowercased())
        let total = body.hasPrefix("total:")
        if total { body = body.dropFirst("total:".count) }
        let parts = body.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let limit = amount(parts[0]), limit > 0, let window = window(parts[1]) else { throw invalid }
        return BudgetSpec(total: total, window: window, limit: limit)
    }

    /// `50cnx`, `0.25cnx` (18 decimals, exact), `123wei`.
    static func amount(_ text: Substring) -> BigUInt? {
        if text.hasSuffix("wei") { return BigUInt(String(text.dropLast(3))) }
        guard text.hasSuffix("cnx") else { return nil }
        let number = text.dropLast(3)
        let pieces = number.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(pieces.count), pieces.allSatisfy({ $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              !pieces[0].isEmpty, pieces.count == 1 || (1...18).contains(pieces[1].count),
              let whole = BigUInt(String(pieces[0])) else { return nil }
        let fraction = pieces.count == 2 ? String(pieces[1]) + String(repeating: "0", count: 18 - pieces[1].count) : "0"
        guard let part = BigUInt(fraction) else { return nil }
        return whole * BigUInt(10).power(18) + part
    }

    /// Seconds, 1 s to 366 days.
    static func window(_ text: Substring) -> Int? {
        let named: [Substring: Int] = ["second": 1, "minute": 60, "hour": 3600, "day": 86_400]
        if let seconds = named[text] { return seconds }
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        guard let unit = text.last.flatMap({ units[$0] }), let count = Int(text.dropLast()), count > 0,
              count <= 31_622_400 / unit else { return nil }
        return count * unit
    }
}
