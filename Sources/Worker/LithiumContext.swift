import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue

/// What one run of a Lithium stage may use besides the job: the wallet's Relay, the clock, and
/// the job's stored Relay tasks (read-only; changes go out with the outcome).
final class LithiumContext {
    let relay: any LithiumRelay
    let config: WorkerConfig
    let wallet: Wallet
    let now: Date
    /// The job's Relay tasks, oldest attempt first, each attempt's task before its group members.
    let tasks: [RelayTaskRecord]

    init(relay: any LithiumRelay, config: WorkerConfig, wallet: Wallet, now: Date = Date(), tasks: [RelayTaskRecord]) {
        self.relay = relay
        self.config = config
        self.wallet = wallet
        self.now = now
        self.tasks = tasks
    }

    /// The job's task of its latest attempt (member 0).
    var current: RelayTaskRecord? { tasks.last(where: { $0.member == 0 }) }

    /// The current attempt's validation group: its task and the members prepared so far.
    var group: [RelayTaskRecord] {
        guard let current else { return [] }
        return tasks.filter { $0.attempt == current.attempt }
    }

    func retryLater(_ job: Job, after error: any Error) -> StageOutcome {
        let message = "\(error)"
        return .wait(after: config.backoff(attempt: job.stageAttempts), note: "retrying after error: \(message)", failedTry: true,
                     error: message)
    }

    func seconds(since date: Date?) -> Double {
        date.map { now.timeIntervalSince($0) } ?? .infinity
    }
}

/// The identity of a job's Relay tasks. task_id and nonce are derived from the wallet key (so
/// nobody else can predict them) and the job's identity (its id, when it was submitted, which
/// attempt, which group member, the arguments' hash): a job whose rows went back in time — a
/// restored dump, a failover to a lagging replica — derives the same commitment again, and the
/// Relay's "Task already uploaded" stops a second payment. Submission time is in it so that two
/// databases whose jobs share ids never derive each other's tasks.
enum LithiumIdentity {
    static func taskId(key: PrivateKey, job: Job, attempt: Int, arguments: String) -> [UInt8] {
        key.derive(label("task id", job: job, attempt: attempt, member: 0, arguments: arguments))
    }

    static func nonce(key: PrivateKey, job: Job, attempt: Int, member: Int, arguments: String) -> [UInt8] {
        key.derive(label("nonce", job: job, attempt: attempt, member: member, arguments: arguments))
    }

    private static func label(_ what: String, job: Job, attempt: Int, member: Int, arguments: String) -> [UInt8] {
        let submitted = Int64((job.submittedAt.timeIntervalSince1970 * 1_000_000).rounded())
        return Array("lithium \(what)".utf8) + bigEndian(UInt64(bitPattern: job.id)) + bigEndian(UInt64(bitPattern: submitted))
            + bigEndian(UInt64(attempt)) + bigEndian(UInt64(member)) + keccak256(Array(arguments.utf8))
    }

    private static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64($0))) }
    }
}

extension RelayTaskRecord {
    var status: LithiumStatus? { relayStatus.flatMap(LithiumStatus.init(rawValue:)) }
    var abort: LithiumAbortReason? { abortReason.flatMap(LithiumAbortReason.init(rawValue:)) }

    /// The create request this row stands for, with the job's exact arguments.
    func request(arguments: String) -> LithiumTaskRequest {
        LithiumTaskRequest(commitment: commitment, taskArgs: arguments, taskType: LithiumTaskType(rawValue: taskType) ?? .sd, nonce: nonce,
                           modelIds: modelIds, minVram: minVram, requiredGPU: requiredGPU, requiredGPUVram: requiredGPUVram,
                           taskVersion: taskVersion, taskSize: taskSize, taskFee: taskFee)
    }

    /// The change that records a task as the Relay described it.
    func change(from task: LithiumTask) -> RelayTaskChange {
        var change = RelayTaskChange(commitment: commitment)
        change.created = true
        change.sequence = task.sequence
        change.samplingSeed = task.samplingSeed.isEmpty ? nil : task.samplingSeed
        change.relayStatus = task.status.rawValue
        change.abortReason = task.abortReason.rawValue
        change.selectedNode = task.selectedNode
        change.relayTimeout = task.timeout > 0 ? task.timeout : nil
        change.scoreReadyAt = task.scoreReadyTime
        change.ended = task.status.isTerminal
        if createdAt == nil { change.charged = taskFee }
        if endedAt == nil, task.status == .endGroupRefund || (task.status == .endAborted && task.abortReason.refunded) {
            change.refunded = taskFee
        }
        return change
    }
}

extension LithiumTask {
    /// The abort reason a failed job records: the Relay's reason of an EndAborted task, else the
    /// ending itself (EndInvalidated, EndGroupRefund).
    var outcomeName: String { status == .endAborted ? abortReason.name : status.name }

    /// "EndAborted (Timeout), refunded" and the like, for notes and failure reasons.
    var ending: String {
        guard status == .endAborted else { return status.name }
        return "\(status.name) (\(abortReason.name)), \(abortReason.refunded ? "fee refunded" : "fee paid to the node, no refund")"
    }
}
