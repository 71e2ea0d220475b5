import BigInt
import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing
@testable import Monitoring

/// The dashboard's queries and pages against real PostgreSQL: the jobs list's filters and paging,
/// the search, the 24-hour chart's numbers, amounts in CNX, and every value escaped.
@Suite("Dashboard pages in-process")
struct DashboardPagesTests {
    let database: TestDatabase
    let db: PostgresConnection
    let pages = Pages(explorerTxURL: nil)

    init() throws {
        database = try TestDatabase.create(prefix: "dashboard")
        db = try database.connect()
        try Migrator.migrate(db)
    }

    private func submit(_ kind: String, key: String? = nil) throws -> Int64 {
        try JobStore.submit(db, JobSubmission(kind: kind, taskArgs: #"{"prompt":"x"}"#, idempotencyKey: key))
    }

    private func end(_ id: Int64, _ status: String, profile: String, minutesAgo: Int = 0) throws {
        try db.execute("""
            UPDATE crynux.jobs SET status = $2, network_profile = $3, finished_at = now() - make_interval(mins => $4),
                submitted_at = now() - make_interval(mins => $4 + 1), last_error = CASE WHEN $2 = 'failed' THEN 'it <b>broke</b>' END
            WHERE id = $1
            """, [id, status, profile, Int32(minutesAgo)])
    }

    @Test func theJobsListFiltersByStatusKindAndProfileAndPages() throws {
        var failedSD: [Int64] = []
        for i in 0..<60 {
            let id = try submit(i % 2 == 0 ? "sd" : "gpt")
            try end(id, i % 3 == 0 ? "failed" : "succeeded", profile: i % 4 == 0 ? "era-d" : "lithium")
            if i % 2 == 0 && i % 3 == 0 { failedSD.append(id) }
        }
        let filter = Dashboard.JobFilter(status: "failed", kind: "sd")
        let shown = try Dashboard.jobs(db, filter, limit: 51)
        #expect(shown.map(\.id) == failedSD.reversed())
        let eraD = try Dashboard.jobs(db, Dashboard.JobFilter(status: "failed", kind: "sd", profile: "era-d"), limit: 51)
        #expect(eraD.count == 5 && eraD.allSatisfy { $0.status == "failed" && $0.kind == "sd" })
        // Keyset paging: the second page starts below the first page's last id.
        let first = try Dashboard.jobs(db, Dashboard.JobFilter(), limit: 26)
        let page = pages.jobList(first, filter: Dashboard.JobFilter(status: "succeeded"), pageSize: 25)
        #expect(page.contains("href=\"/jobs?before=\(first[24].id)&amp;status=succeeded\""))
        let second = try Dashboard.jobs(db, Dashboard.JobFilter(before: first[24].id), limit: 26)
        #expect(second.first?.id == first[24].id - 1 && Set(first.prefix(25).map(\.id)).isDisjoint(with: second.map(\.id)))
        // The chosen filters stay chosen; the failure's reason is escaped, not markup.
        let html = pages.jobList(shown, filter: filter, pageSize: 50)
        #expect(html.contains("<option selected>failed</option>") && html.contains("<option selected>sd</option>"))
        #expect(!html.contains("<b>broke</b>"))
    }

    @Test func theSearchFindsAJobByIdTaskIdTransactionRelayTaskOrKey() throws {
        let byKey = try submit("sd", key: "order <7>")
        let byTask = try submit("sd")
        try db.execute("UPDATE crynux.jobs SET task_id = 987654 WHERE id = $1", [byTask])
        let byTx = try submit("gpt")
        let hash = "0x" + String(repeating: "ab", count: 32)
        try db.execute("""
            INSERT INTO crynux.job_transactions (tx_hash, job_id, purpose, wallet_address, nonce, gas_price_wei, gas_limit, value_wei, raw_tx)
            VALUES ($1, $2, 'create_task', $3, 0, 1, 21000, 0, '\\x00')
            """, [hash, byTx, "0x" + String(repeating: "11", count: 20)])
        #expect(try Dashboard.search(db, String(byKey)).map(\.id) == [byKey])
        #expect(try Dashboard.search(db, "987654").map(\.id) == [byTask])
        #expect(try Dashboard.search(db, hash.uppercased().replacingOccurrences(of: "0X", with: "0x")).map(\.id) == [byTx])
        #expect(try Dashboard.search(db, "order <7>").map(\.id) == [byKey])
        #expect(try Dashboard.search(db, "nothing").isEmpty && (try Dashboard.search(db, "   ")).isEmpty)
        let html = pages.searchResults(try Dashboard.search(db, "<script>"), query: "<script>")
        #expect(html.contains("no job matches &lt;script&gt;") && html.contains("value=\"&lt;script&gt;\"") && !html.contains("<script>"))
    }

    @Test func theChartCountsTheLastDayAndShowsCNX() throws {
        for minutes in [5, 5, 70] { try end(try submit("sd"), "succeeded", profile: "lithium", minutesAgo: minutes) }
        try end(try submit("sd"), "failed", profile: "lithium", minutesAgo: 5)
        try end(try submit("sd"), "succeeded", profile: "lithium", minutesAgo: 60 * 30)  // older than the chart
        let waiting = try (0..<3).map { _ in try submit("gpt") }
        // A Relay task of 2.5 CNX prepared now.
        try db.execute("""
            INSERT INTO crynux.relay_tasks (commitment, job_id, attempt, member, wallet_address, task_id, nonce, task_type, task_fee_wei,
                                            min_vram, task_version, task_size, model_ids)
            VALUES ($1, $2, 0, 0, $3, $1, $1, 0, 2500000000000000000, 8, '2.5.0', 1, '{}')
            """, ["0x" + String(repeating: "cd", count: 32), waiting[0], "0x" + String(repeating: "22", count: 20)])
        let buckets = try Dashboard.timeline(db)
        #expect(buckets.count >= 96 && buckets.count <= 98)
        #expect(buckets.reduce(0) { $0 + $1.succeeded } == 3 && buckets.reduce(0) { $0 + $1.failed } == 1)
        #expect(buckets.last?.pending == 3)
        #expect(buckets.compactMap { BigUInt($0.spentWei) }.reduce(0, +) == BigUInt(25) * BigUInt(10).power(17))
        let svg = pages.chart(buckets)
        #expect(svg.components(separatedBy: "<svg").count == 4)
        #expect(svg.contains("<rect class=succeeded") && svg.contains(": 2 succeeded</title>") && svg.contains(": 1 failed</title>"))
        #expect(svg.contains("2.5 CNX (2500000000000000000 wei)</title>") && svg.contains(": 3 pending</title>"))
        // A job's fee in CNX, the wei on hover.
        try db.execute("UPDATE crynux.jobs SET fee_wei = 8200000000000000000 WHERE id = $1", [waiting[1]])
        let job = try #require(try JobStore.job(db, id: waiting[1]))
        let page = pages.job(job, transactions: [], events: [], results: [])
        #expect(page.contains("<tr><th>fee</th><td><span class=amount title=\"8200000000000000000 wei\">8.2 CNX</span></td></tr>"), "\(page)")
    }
}
