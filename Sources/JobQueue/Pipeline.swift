/// Where a job is in its life.
public enum JobStatus: String, Sendable, CaseIterable {
    case pending, succeeded, failed, cancelled
}

/// The pipeline. The order of the cases is the order a job walks through, and everything else is
/// derived from it: the claim rank (work closest to done is claimed first), the stage a job moves
/// on to, and what a stage needs to know before a job may (re)enter it. The SQL CHECKs and the
/// `stage_rank` column of `sql/` are compared with this list by a test, so they cannot drift.
/// Which code decides each stage is the table in `Worker/Pipeline.swift`.
public enum JobStage: String, Sendable, CaseIterable {
    /// Validate, sign and send createTask; wait for the receipt and read the task id.
    case create
    /// Send the exact argument string to the Relay.
    case upload
    /// Ask the contract how the task is doing.
    case poll
    /// Download the results and store them; the job succeeds.
    case fetch

    /// Higher is claimed first within a priority.
    public var claimRank: Int { Self.allCases.firstIndex(of: self)! }

    public var next: JobStage? {
        let all = Self.allCases
        let index = all.firstIndex(of: self)! + 1
        return index < all.count ? all[index] : nil
    }

    /// Every stage after create works on an on-chain task: a job may only enter it with a task id.
    public var needsTaskId: Bool { self != .create }
}
