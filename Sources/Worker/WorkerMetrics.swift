import BigInt
import Foundation
import JobQueue
import Metrics

/// The worker's Prometheus series, named in one place. swift-metrics records them; without a
/// bootstrapped backend (the in-process tests) every call is a no-op.
///
/// Counters and histograms count what this process did since it started (Prometheus sums them
/// over processes); the gauges under "database" are the whole queue's, as the database tells.
public enum WorkerMetrics {
    // Stages and outcomes
    static func stageFinished(_ stage: JobStage, after seconds: Double) {
        Timer(label: "crynux_stage_duration_seconds", dimensions: [("stage", stage.rawValue)])
            .recordNanoseconds(Int64(max(seconds, 0) * 1e9))
    }

    static func outcome(_ outcome: String, kind: String) {
        Counter(label: "crynux_job_outcomes_total", dimensions: [("outcome", outcome), ("kind", kind)]).increment()
    }

    static func feeSpent(_ wei: BigUInt, profile: String) {
        FloatingPointCounter(label: "crynux_task_fees_cnx_total", dimensions: [("profile", profile)]).increment(by: cnx(wei))
    }

    static func feeRefunded(_ wei: BigUInt, profile: String) {
        FloatingPointCounter(label: "crynux_task_fees_refunded_cnx_total", dimensions: [("profile", profile)]).increment(by: cnx(wei))
    }

    // Claims and leases
    static func claimed(batch: Int, expiredLeases: Int) {
        Recorder(label: "crynux_claim_batch_size", aggregate: true).record(batch)
        Counter(label: "crynux_claims_total").increment()
        if expiredLeases > 0 { Counter(label: "crynux_lease_rescues_total").increment(by: expiredLeases) }
    }

    static func leasesLost(_ count: Int) {
        Counter(label: "crynux_leases_lost_total").increment(by: count)
    }

    // Database-wide gauges, sampled by the monitor.
    public static func jobs(_ counts: [(status: String, stage: String, jobs: Int64)], clearing previous: inout Set<[String]>) {
        var seen: Set<[String]> = []
        for count in counts {
            seen.insert([count.status, count.stage])
            Gauge(label: "crynux_jobs", dimensions: [("status", count.status), ("stage", count.stage)]).record(count.jobs)
        }
        // A combination that emptied shows 0, not its last value.
        for gone in previous.subtracting(seen) {
            Gauge(label: "crynux_jobs", dimensions: [("status", gone[0]), ("stage", gone[1])]).record(0)
        }
        previous = seen
    }

    public static func oldestDueJobAge(_ seconds: Double) {
        Gauge(label: "crynux_oldest_due_job_age_seconds").record(max(seconds, 0))
    }

    // Wallets
    static func wallet(_ address: String, native: BigUInt, token: BigUInt?, unminedNonces: Int64, low: Bool) {
        Gauge(label: "crynux_wallet_balance_cnx", dimensions: [("wallet", address), ("asset", "native")]).record(cnx(native))
        if let token {
            Gauge(label: "crynux_wallet_balance_cnx", dimensions: [("wallet", address), ("asset", "token")]).record(cnx(token))
        }
        Gauge(label: "crynux_wallet_unmined_nonces", dimensions: [("wallet", address)]).record(unminedNonces)
        Gauge(label: "crynux_wallet_low_funds", dimensions: [("wallet", address)]).record(low ? 1 : 0)
    }

    /// Lithium: the wallet's Relay Account, which pays the fees (no gas, no unmined nonces).
    static func relayAccount(_ address: String, balance: BigUInt, low: Bool) {
        Gauge(label: "crynux_wallet_balance_cnx", dimensions: [("wallet", address), ("asset", "relay_account")]).record(cnx(balance))
        Gauge(label: "crynux_wallet_low_funds", dimensions: [("wallet", address)]).record(low ? 1 : 0)
    }

    static func waitingForFunds() {
        Counter(label: "crynux_funds_waits_total").increment()
    }

    /// Wei as whole CNX (18 decimals), as a Double: exact enough for a dashboard.
    public static func cnx(_ wei: BigUInt) -> Double {
        let unit = BigUInt(10).power(18)
        return Double(wei / unit) + Double(wei % unit) / 1e18
    }
}

/// Every budget's use as metrics, and a warning when one passes 80 % of its limit (once, until it
/// falls below again).
struct BudgetWatch {
    private var warned: Set<String> = []
    private var known: Set<String> = []

    mutating func look(_ uses: [BudgetUse], log: WorkerLog) {
        var seen: Set<String> = []
        for use in uses {
            let label = use.budget.label
            seen.insert(label)
            Gauge(label: "crynux_budget_used_cnx", dimensions: [("budget", label)]).record(WorkerMetrics.cnx(use.used))
            Gauge(label: "crynux_budget_limit_cnx", dimensions: [("budget", label)]).record(WorkerMetrics.cnx(use.budget.limit))
            if use.share >= 0.8 {
                if warned.insert(label).inserted {
                    log.warning("\(use.budget) is \(Int(use.share * 100)) % used (\(cnx(use.used)) committed): jobs will wait once it is full")
                }
            } else {
                warned.remove(label)
            }
        }
        // A budget removed from the table: its series say so instead of freezing at their last value.
        for gone in known.subtracting(seen) {
            Gauge(label: "crynux_budget_used_cnx", dimensions: [("budget", gone)]).record(0)
            Gauge(label: "crynux_budget_limit_cnx", dimensions: [("budget", gone)]).record(0)
        }
        known = seen
    }
}
