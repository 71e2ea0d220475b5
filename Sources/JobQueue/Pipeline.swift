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
    /// Validate, sign and send createTask; wait for the receipt and read the task id. Lithium: the
    /// signed create request to the Relay (there is no upload stage).
    case create
    /// Send the exact argument string to the Relay.
    case upload
    /// Ask the contract (Lithium: the Relay) how the task is doing.
    case poll
    /// Lithium: prove with the VRF that the task was sampled fairly and have it validated (alone,
    /// or with two more tasks when the VRF selects it).
    case validate
    /// Download the results and store them; the job succeeds.
    case fetch

    /// Higher is claimed first within a priority.
    public var claimRank: Int { Self.allCases.firstIndex(of: self)! }

    /// The stages a job of a chain profile (era D, Hydrogen) walks through, and a Lithium job's:
    /// there the create request carries the arguments (no upload), and a validate stage follows poll.
    public static let chainStages: [JobStage] = [.create, .upload, .poll, .fetch]
    public static let lithiumStages: [JobStage] = [.create, .poll, .validate, .fetch]

    /// The stage after this one on a chain profile.
    public var next: JobStage? {
        guard let index = Self.chainStages.firstIndex(of: self), index + 1 < Self.chainStages.count else { return nil }
        return Self.chainStages[index + 1]
    }

    /// Every stage after create works on an on-chain task: a job may only enter it with a task id
    /// (Lithium: with a Relay task, `relay_commitment`).
    public var needsTaskId: Bool { self != .create }
}
