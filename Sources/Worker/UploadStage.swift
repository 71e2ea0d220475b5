import Crynux
import Foundation
import JobQueue

/// upload: send the exact argument string to the Relay, signed by the wallet that created the task.
struct UploadStage {
    func decide(_ job: Job, _ context: StageContext) throws -> StageOutcome {
        let config = context.config
        guard let taskId = job.taskId else {
            return .fail(reason: "job is in upload without a task id", retryFrom: .upload)
        }
        if job.cancelRequested {
            return .cancel(note: "cancelled before the arguments were uploaded")
        }
        if context.seconds(since: job.stageEnteredAt) > config.uploadDeadline {
            return .fail(reason: "the relay did not accept the task arguments within \(Int(config.uploadDeadline)) s (last error: \(job.lastError ?? "none"))",
                         retryFrom: .upload)
        }
        let uploaded = JobFacts(stamps: [.argsUploaded])
        switch try context.network.uploadTaskArguments(taskId: taskId, arguments: job.taskArgs) {
        case .uploaded:
            return .advance(to: .poll, after: config.pollInterval, facts: uploaded, note: "arguments uploaded to the relay")
        case .alreadyUploaded:
            return .advance(to: .poll, after: config.pollInterval, facts: uploaded, note: "arguments were already on the relay")
        case .notYetOnChain:
            // The relay has not synced the block yet; it usually does within a second.
            return .wait(after: min(config.pollInterval, 1))
        case .rejected(let message):
            return .fail(reason: "the relay refused the task arguments: \(message)", retryFrom: .upload)
        }
    }
}
