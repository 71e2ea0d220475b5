import BigInt
import Ethereum
import Foundation

/// Everything a worker process needs to know. Built from flags and environment by the CLI.
public struct WorkerConfig: Sendable {
    public var databaseURL: String?
    public var rpcURL: String
    public var relayURL: String
    /// When set, the node's chain id must equal it (checked at start).
    public var expectedChainId: UInt64?
    public var taskContract: Address
    public var taskQueueContract: Address
    public var key: PrivateKey
    /// A name for this process in leases and history (hostname:pid by default).
    public var workerName: String

    /// Stage executions running at once in this process (threads, each with its own connection).
    public var concurrency: Int = 4
    /// Jobs claimed per round trip; due polls among them go out as one JSON-RPC batch.
    public var claimBatch: Int = 8
    public var leaseSeconds: Double = 120
    /// How long an idle worker sleeps when no NOTIFY arrives.
    public var idleInterval: Double = 2

    /// First and longest interval between two getTask polls of one task.
    public var pollInterval: Double = 1
    public var pollIntervalMax: Double = 30
    /// Backoff for transient failures (network errors, 5xx): base × 2^attempt, capped.
    public var retryBase: Double = 1
    public var retryMax: Double = 60

    /// Fee per result (image, or the one GPT answer), in wei; a job's own fee overrides it.
    public var feePerResultWei: BigUInt = BigUInt(10).power(16)
    /// Fixed gas limit for createTask; nil estimates it (and refuses a create that would revert).
    public var gasLimit: UInt64?
    /// Floor under twice the estimate (the era-D bridge sent 5,000,000 every time).
    public var minimumGasLimit: UInt64 = 1_500_000
    /// Fixed gas price (or max fee for EIP-1559); nil asks the node.
    public var gasPriceWei: BigUInt?
    public var useEIP1559 = false
    /// A sent transaction with no receipt is sent again after this long, and replaced by one
    /// with a higher price (same nonce) after `replaceAfter`.
    public var rebroadcastAfter: Double = 10
    public var replaceAfter: Double = 60
    /// Price factor for a replacement (geth wants at least +10%).
    public var replacementPriceFactor: Double = 1.25

    /// Stage deadlines, measured from entering the stage.
    public var uploadDeadline: Double = 600
    public var fetchDeadline: Double = 1800
    /// Extra time after the on-chain deadline before we cancel the task ourselves.
    public var cancelGrace: Double = 30

    /// After SIGTERM/SIGINT, how long stages in flight may take before their leases are released.
    public var shutdownGrace: Double = 20
    /// Exit once no job is pending (demo and tests).
    public var exitWhenIdle = false

    public init(databaseURL: String?, rpcURL: String, relayURL: String, expectedChainId: UInt64?,
                taskContract: Address, taskQueueContract: Address, key: PrivateKey, workerName: String) {
        self.databaseURL = databaseURL
        self.rpcURL = rpcURL
        self.relayURL = relayURL
        self.expectedChainId = expectedChainId
        self.taskContract = taskContract
        self.taskQueueContract = taskQueueContract
        self.key = key
        self.workerName = workerName
    }

    public static func defaultWorkerName() -> String {
        "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier)"
    }

    func backoff(attempt: Int) -> Double {
        let exponential = retryBase * pow(2, Double(min(attempt, 20)))
        return min(exponential, retryMax) * Double.random(in: 0.8...1.2)
    }

    /// The next getTask poll: a tenth of the time the task has run so far, within the bounds.
    func nextPoll(waited: Double) -> Double {
        min(max(pollInterval, waited / 10), pollIntervalMax)
    }
}
