import Foundation
import JobQueue
import Postgres

/// What the dashboard page shows, read in one visit to the database.
struct DashboardData: Sendable {
    let counts: [Dashboard.Count]
    let lastHour: [Dashboard.Count]
    let failures: [Dashboard.JobLine]
    let recent: [Dashboard.JobLine]
    let oldestDueAge: Double
    let readAt: Date

    /// `finished`: the all-time finished counts, which the caller may have from a recent sample
    /// (they read the whole finished-job index: 0.24 s at a million jobs).
    static func load(_ db: PostgresConnection, finished: (PostgresConnection) throws -> [Dashboard.Count]) throws -> DashboardData {
        DashboardData(counts: try Dashboard.pendingCounts(db) + finished(db),
                      lastHour: try Dashboard.finishedCounts(db, since: Date(timeIntervalSinceNow: -3600)),
                      failures: try Dashboard.recentFailures(db), recent: try Dashboard.recentJobs(db),
                      oldestDueAge: try Dashboard.oldestDue(db)?.seconds ?? 0, readAt: Date())
    }
}

/// Plain HTML, rendered on the server: no script, no build step, nothing fetched but the
/// result images. Every value from the database is escaped.
struct Pages: Sendable {
    let explorerTxURL: String?

    static let statuses = ["pending", "succeeded", "failed", "cancelled"]
    static let stages = JobStage.allCases.map(\.rawValue)

    func dashboard(_ data: DashboardData) -> String {
        var html = head("crynux-worker", refresh: 10)
        html += "<h1>crynux-worker</h1><p class=muted>read \(escape(time(data.readAt))); refreshes every 10 s</p>"

        // Counts per status and stage.
        html += "<h2>Jobs by status and stage</h2><table><tr><th>status</th>"
        for stage in Self.stages { html += "<th class=num>\(stage)</th>" }
        html += "<th class=num>total</th></tr>"
        for status in Self.statuses {
            let row = data.counts.filter { $0.status == status }
            html += "<tr><td class=\(status)>\(status)</td>"
            for stage in Self.stages { html += "<td class=num>\(row.first { $0.stage == stage }?.jobs ?? 0)</td>" }
            html += "<td class=num><b>\(row.reduce(0) { $0 + $1.jobs })</b></td></tr>"
        }
        html += "</table>"
        if data.oldestDueAge > 0 { html += "<p>oldest due job has waited \(Int(data.oldestDueAge)) s for a worker</p>" }

        // The last hour.
        let finished = { (status: String) in data.lastHour.filter { $0.status == status }.reduce(0) { $0 + $1.jobs } }
        let succeeded = finished("succeeded"), failed = finished("failed"), cancelled = finished("cancelled")
        let rate = succeeded + failed > 0 ? String(format: "%.1f %%", 100 * Double(failed) / Double(succeeded + failed)) : "–"
        html += """
            <h2>Last hour</h2><table><tr><th>finished</th><th>succeeded</th><th>failed</th><th>cancelled</th><th>per minute</th><th>failure rate</th></tr>
            <tr><td class=num>\(succeeded + failed + cancelled)</td><td class=num>\(succeeded)</td><td class=num>\(failed)</td>
            <td class=num>\(cancelled)</td><td class=num>\(String(format: "%.2f", Double(succeeded + failed + cancelled) / 60))</td>
            <td class=num>\(rate)</td></tr></table>
            """

        html += "<h2>Recent failures</h2>"
        if data.failures.isEmpty {
            html += "<p class=muted>none</p>"
        } else {
            html += "<table><tr><th>job</th><th>kind</th><th>failed in</th><th>when</th><th>reason</th></tr>"
            for job in data.failures {
                html += "<tr><td>\(jobLink(job.id))</td><td>\(escape(job.kind))</td><td>\(escape(job.stage))</td>"
                html += "<td>\(job.finishedAt.map { escape(time($0)) } ?? "")</td><td class=reason>\(escape(job.lastError ?? ""))</td></tr>"
            }
            html += "</table>"
        }

        html += "<h2>Recent jobs</h2><table><tr><th>job</th><th>kind</th><th>status</th><th>stage</th><th>task</th><th>submitted</th><th>results</th></tr>"
        for job in data.recent {
            html += "<tr><td>\(jobLink(job.id))</td><td>\(escape(job.kind))</td><td class=\(escape(job.status))>\(escape(job.status))</td>"
            html += "<td>\(escape(job.stage))</td><td>\(job.taskId.map(String.init) ?? "")</td><td>\(escape(time(job.submittedAt)))</td><td>"
            if job.results > 0, job.kind == "sd" {
                html += "<a href=\"/jobs/\(job.id)\"><img class=thumb alt=\"result 0 of job \(job.id)\" src=\"/jobs/\(job.id)/results/0\"></a>"
                if job.results > 1 { html += " +\(job.results - 1)" }
            } else if job.results > 0 {
                html += "<a href=\"/jobs/\(job.id)/results/0\">text</a>"
            }
            html += "</td></tr>"
        }
        html += "</table></body></html>"
        return html
    }

    func job(_ job: Job, transactions: [StoredTransaction], events: [JobEvent], results: [Dashboard.ResultInfo]) -> String {
        var html = head("job \(job.id) · crynux-worker", refresh: job.status == .pending ? 10 : nil)
        html += "<p><a href=\"/\">← all jobs</a></p><h1>Job \(job.id)</h1><table>"
        for (name, value) in job.describedFacts(formatDate: time) {
            let shown = (name == "tx hash" || name == "approval") ? txLink(value) : escape(value)
            html += "<tr><th>\(escape(name))</th><td>\(shown)</td></tr>"
        }
        html += "</table>"

        html += "<h2>Transactions</h2>"
        if transactions.isEmpty {
            html += "<p class=muted>none signed</p>"
        } else {
            html += "<table><tr><th>for</th><th>hash</th><th>nonce</th><th>value (wei)</th><th>price</th><th>gas</th><th>state</th></tr>"
            for (tx, role) in zip(transactions, StoredTransaction.roles(of: transactions)) {
                html += "<tr><td>\(escape(role))</td><td>\(txLink(tx.hash.hex))</td><td class=num>\(tx.nonce)</td><td class=num>\(tx.value)</td>"
                html += "<td>\(escape(tx.priceDescription))</td><td class=num>\(tx.gasLimit)</td><td>\(escape(tx.stateDescription))</td></tr>"
            }
            html += "</table>"
        }

        html += "<h2>Timeline</h2><table><tr><th>when</th><th>from</th><th>to</th><th>what</th><th>worker</th></tr>"
        for event in events {
            let from = event.fromStatus.map { "\($0)/\(event.fromStage ?? "")" } ?? "–"
            html += "<tr><td>\(escape(time(event.at)))</td><td>\(escape(from))</td><td>\(escape("\(event.toStatus)/\(event.toStage)"))</td>"
            html += "<td class=reason>\(escape(event.detail))</td><td class=muted>\(escape(event.worker ?? ""))</td></tr>"
        }
        html += "</table>"

        html += "<h2>Results</h2>"
        if results.isEmpty { html += "<p class=muted>none stored</p>" }
        for result in results {
            let url = "/jobs/\(job.id)/results/\(result.index)"
            if result.contentType.hasPrefix("image/") {
                html += "<figure><a href=\"\(url)\"><img class=result alt=\"result \(result.index)\" src=\"\(url)\"></a>"
                html += "<figcaption>result \(result.index): \(escape(result.contentType)), \(result.bytes) bytes</figcaption></figure>"
            } else {
                html += "<p><a href=\"\(url)\">result \(result.index)</a>: \(escape(result.contentType)), \(result.bytes) bytes</p>"
            }
        }
        return html + "</body></html>"
    }

    /// Only image and text types are served as themselves; anything else a row may say is served
    /// as bytes to download, so a stored value can never make the page run a script.
    static func safeContentType(_ stored: String) -> String {
        let type = stored.lowercased()
        if ["image/png", "image/jpeg", "image/webp", "image/gif"].contains(type) { return type }
        if type.hasPrefix("application/json") || type.hasPrefix("text/plain") { return "text/plain; charset=utf-8" }
        return "application/octet-stream"
    }

    private func head(_ title: String, refresh: Int?) -> String {
        """
        <!doctype html><html><head><meta charset="utf-8"><title>\(escape(title))</title>
        \(refresh.map { "<meta http-equiv=\"refresh\" content=\"\($0)\">" } ?? "")
        <style>
        body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
        table{border-collapse:collapse;margin:8px 0 16px}
        th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
        th{background:#f4f4f4}.num{text-align:right}.muted{color:#888}
        .succeeded{color:#17702a}.failed{color:#b00020}.cancelled{color:#8a6d00}.pending{color:#1a4f9c}
        .reason{max-width:640px;word-break:break-word}
        img.thumb{width:64px;height:64px;object-fit:cover}img.result{max-width:384px}
        code{font-size:12px}
        </style></head><body>
        """
    }

    private func jobLink(_ id: Int64) -> String { "<a href=\"/jobs/\(id)\">\(id)</a>" }

    private func txLink(_ hash: String) -> String {
        guard let template = explorerTxURL, hash.hasPrefix("0x"), hash.dropFirst(2).allSatisfy(\.isHexDigit) else {
            return "<code>\(escape(hash))</code>"
        }
        return "<a href=\"\(escape(template.replacingOccurrences(of: "{hash}", with: hash)))\"><code>\(hash)</code></a>"
    }

    private func time(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    private func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }
}
