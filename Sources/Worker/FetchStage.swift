import Crynux
import Foundation
import JobQueue

/// fetch: download every result from the Relay; the store keeps them and the job succeeds.
struct FetchStage {
    func decide(_ job: Job, _ context: StageContext) throws -> StageOutcome {
        let config = context.config
        guard let taskId = job.taskId else {
            return .fail(reason: "job is in fetch without a task id", retryFrom: .fetch)
        }
        if job.cancelRequested {
            return .cancel(note: "cancelled before the results of task \(taskId) were stored")
        }
        if context.seconds(since: job.stageEnteredAt) > config.fetchDeadline {
            return .fail(reason: "the results of task \(taskId) could not be downloaded within \(Int(config.fetchDeadline)) s (last error: \(job.lastError ?? "not uploaded yet"))",
                         retryFrom: .fetch)
        }
        let count = job.kind == TaskKind.gpt.rawValue ? 1 : max(Int(clamping: job.cap ?? 1), 1)
        var files: [ResultFile] = []
        for index in 0..<count {
            switch try context.network.downloadResult(taskId: taskId, index: index, signer: context.wallet.address) {
            case .data(let bytes, let contentType):
                files.append(ResultFile(index: index, contentType: contentType, data: bytes))
            case .notReady:
                // The result node uploads shortly after TaskSuccess; look again at the poll pace.
                return .wait(after: config.pollInterval)
            case .rejected(let message):
                return .fail(reason: "the relay refused result \(index) of task \(taskId): \(message)", retryFrom: .fetch)
            }
        }
        return .succeed(results: files, note: "stored \(files.count) result(s), \(files.reduce(0) { $0 + $1.data.count }) bytes")
    }
}
