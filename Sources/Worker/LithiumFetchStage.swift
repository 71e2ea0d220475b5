import Crynux
import Foundation
import JobQueue

/// Lithium fetch, after EndSuccess or EndGroupSuccess (the poll stage never sends a job here after
/// an abort): every result file of the task the Relay succeeded, stored with the job; it succeeds.
/// A cancel that came after the task left the queue cannot get its fee back: the results it paid
/// for are stored all the same.
struct LithiumFetchStage {
    func decide(_ job: Job, _ context: LithiumContext) throws -> StageOutcome {
        guard let commitment = job.relayCommitment, let kind = TaskKind(rawValue: job.kind) else {
            return .fail(reason: "job is in fetch without a Relay task", retryFrom: .poll)
        }
        if context.seconds(since: job.stageEnteredAt) > context.config.fetchDeadline {
            return .fail(reason: "the results of Relay task \(commitment.hex) could not be downloaded within \(Int(context.config.fetchDeadline)) s (last error: \(job.lastError ?? "not uploaded yet"))",
                         retryFrom: .fetch)
        }
        let count = kind == .gpt ? 1 : max(Int(clamping: job.cap ?? 1), 1)
        var files: [ResultFile] = []
        for index in 0..<count {
            switch try context.relay.result(commitment, index: index, kind: kind) {
            case .data(let bytes, let contentType):
                files.append(ResultFile(index: index, contentType: contentType, data: bytes))
            case .notReady(let words):
                return .wait(after: context.config.pollInterval, failedTry: true, error: words)
            case .rejected(let words):
                return .fail(reason: "the Relay refused result \(index) of Relay task \(commitment.hex): \(words)", retryFrom: .fetch)
            }
        }
        let size = files.reduce(0) { $0 + $1.data.count }
        return .succeed(results: files, note: "stored \(files.count) result(s), \(size) bytes"
                            + (job.cancelRequested ? " (the cancel came after the task left the queue: it ran and was paid)" : ""))
    }
}
