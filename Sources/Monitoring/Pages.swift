import BigInt
import Foundation
import JobQueue
import Postgres
import Worker

/// What the dashboard page shows, read in one visit to the database.
struct DashboardData: Sendable {
    let counts: [Dashboard.Count]
    let lastHour: [Dashboard.Count]
    let failures: [Dashboard.JobLine]
    let recent: [Dashboard.JobLine]
    let oldestDueAge: Double
    let timeline: [Dashboard.Bucket]
    let budgets: [BudgetUse]
    let readAt: Date

    /// `finished`: the all-time finished counts, which the caller may have from a recent sample
    /// (they read the whole finished-job index: 0.24 s at a million jobs).
    static func load(_ db: PostgresConnection, finished: (PostgresConnection) throws -> [Dashboard.Count]) throws -> DashboardData {
        DashboardData(counts: try Dashboard.pendingCounts(db) + finished(db),
                      lastHour: try Dashboard.finishedCounts(db, since: Date(timeIntervalSinceNow: -3600)),
                      failures: try Dashboard.recentFailures(db), recent: try Dashboard.recentJobs(db),
                      oldestDueAge: try Dashboard.oldestDue(db)?.seconds ?? 0, timeline: try Dashboard.timeline(db),
                      budgets: try JobStore.budgetUse(db), readAt: Date())
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
        html += searchForm("")
        html += "<h2>Last 24 hours</h2>" + chart(data.timeline)
        if !data.budgets.isEmpty {
            html += "<h2>Budgets</h2><table><tr><th>budget</th><th class=num>committed</th><th class=num>limit</th><th>use</th></tr>"
            for use in data.budgets {
                let percent = min(Int((use.share * 100).rounded()), 999)
                html += "<tr><td>\(escape(use.budget.label))</td><td class=num>\(amount(use.used))</td><td class=num>\(amount(use.budget.limit))</td>"
                html += "<td><span class=bar><span class=\(percent >= 80 ? "fill hot" : "fill") style=\"width:\(min(percent, 100))%\"></span></span> \(percent) %</td></tr>"
            }
            html += "</table>"
        }

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

        html += "<h2>Recent jobs</h2><p><a href=\"/jobs\">all jobs, by status, kind and profile →</a></p>"
        html += jobTable(data.recent)
        html += "</body></html>"
        return html
    }

    /// The jobs list: filtered by status, kind and profile, newest first, 50 a page.
    func jobList(_ jobs: [Dashboard.JobLine], filter: Dashboard.JobFilter, pageSize: Int) -> String {
        var html = head("jobs · crynux-worker", refresh: nil)
        html += "<p><a href=\"/\">← dashboard</a></p><h1>Jobs</h1>" + searchForm("")
        html += "<form method=get action=\"/jobs\" class=filters>"
        html += select("status", Self.statuses, filter.status) + select("kind", Self.kinds, filter.kind) + select("profile", Self.profiles, filter.profile)
        html += "<button type=submit>show</button></form>"
        if jobs.isEmpty { html += "<p class=muted>no such jobs</p>" } else { html += jobTable(Array(jobs.prefix(pageSize))) }
        if jobs.count > pageSize, let last = jobs.prefix(pageSize).last {
            var query = [("before", String(last.id))]
            for (name, value) in [("status", filter.status), ("kind", filter.kind), ("profile", filter.profile)] {
                if let value { query.append((name, value)) }
            }
            html += "<p><a rel=next href=\"/jobs?\(escape(query.map { "\($0.0)=\(Self.queryValue($0.1))" }.joined(separator: "&")))\">older jobs →</a></p>"
        }
        return html + "</body></html>"
    }

    /// Jobs a search found.
    func searchResults(_ jobs: [Dashboard.JobLine], query: String) -> String {
        var html = head("search · crynux-worker", refresh: nil)
        html += "<p><a href=\"/\">← dashboard</a></p><h1>Search</h1>" + searchForm(query)
        html += jobs.isEmpty ? "<p class=muted>no job matches \(escape(query))</p>" : jobTable(jobs)
        return html + "</body></html>"
    }

    static let kinds = ["sd", "gpt"]
    static let profiles = ["lithium", "era-d", "hydrogen"]

    private func searchForm(_ query: String) -> String {
        "<form method=get action=\"/search\" class=search><input type=search name=q value=\"\(escape(query))\" size=70 "
            + "placeholder=\"job id, task id, transaction hash, Relay task, idempotency key\" aria-label=search><button type=submit>find</button></form>"
    }

    private func select(_ name: String, _ choices: [String], _ chosen: String?) -> String {
        var html = "<label>\(name) <select name=\(name)><option value=\"\">any</option>"
        for choice in choices { html += "<option\(choice == chosen ? " selected" : "")>\(escape(choice))</option>" }
        return html + "</select></label> "
    }

    static func queryValue(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_.~"))) ?? ""
    }

    private func jobTable(_ jobs: [Dashboard.JobLine]) -> String {
        var html = "<table><tr><th>job</th><th>kind</th><th>status</th><th>stage</th><th>task</th><th>submitted</th><th>results</th></tr>"
        for job in jobs {
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
        return html + "</table>"
    }

    /// Three small charts of the last hours, drawn on the server as SVG (no script): jobs
    /// finished per minute by outcome, CNX committed to be spent, and jobs pending. Every bar
    /// names its values on hover.
    func chart(_ buckets: [Dashboard.Bucket]) -> String {
        guard let first = buckets.first, let last = buckets.last else { return "<p class=muted>no data</p>" }
        let width = 960.0, height = 90.0, left = 84.0, n = Double(buckets.count)
        let step = (width - left) / n
        let minutes = buckets.count > 1 ? buckets[1].start.timeIntervalSince(first.start) / 60 : 15
        func x(_ i: Int) -> Double { left + Double(i) * step }
        func clock(_ date: Date) -> String {
            let formatter = DateFormatter()
            formatter.dateFormat = "HH:mm"
            formatter.timeZone = TimeZone(identifier: "UTC")
            return formatter.string(from: date)
        }
        func panel(_ title: String, max top: Double, unit: String, _ body: String) -> String {
            var svg = "<figure class=chart><figcaption>\(escape(title))</figcaption>"
            svg += "<svg role=img aria-label=\"\(escape(title))\" width=\"\(Int(width))\" height=\"\(Int(height + 18))\" viewBox=\"0 0 \(Int(width)) \(Int(height + 18))\">"
            svg += "<line x1=\"\(left)\" y1=\"\(height)\" x2=\"\(width)\" y2=\"\(height)\" class=axis />"
            svg += "<text x=\"\(left - 4)\" y=\"10\" text-anchor=end class=tick>\(escape(Self.short(top))) \(escape(unit))</text>"
            svg += "<text x=\"\(left - 4)\" y=\"\(height)\" text-anchor=end class=tick>0</text>"
            for (i, bucket) in buckets.enumerated() where i % 16 == 0 && i + 8 < buckets.count {
                svg += "<text x=\"\(x(i))\" y=\"\(height + 14)\" class=tick>\(clock(bucket.start))</text>"
            }
            svg += "<text x=\"\(width)\" y=\"\(height + 14)\" text-anchor=end class=tick>now</text>"
            return svg + body + "</svg></figure>"
        }
        func y(_ value: Double, _ top: Double) -> Double { top > 0 ? value / top * (height - 4) : 0 }

        // Finished per minute, stacked by outcome.
        let perMinute = buckets.map { Double($0.succeeded + $0.failed + $0.cancelled) / minutes }
        let topRate = max(perMinute.max() ?? 0, 1e-9)
        var bars = ""
        for (i, b) in buckets.enumerated() where b.succeeded + b.failed + b.cancelled > 0 {
            var base = height
            for (count, name) in [(b.succeeded, "succeeded"), (b.failed, "failed"), (b.cancelled, "cancelled")] where count > 0 {
                let h = y(Double(count) / minutes, topRate)
                bars += "<rect class=\(name) x=\"\(x(i))\" y=\"\(base - h)\" width=\"\(max(step - 1, 1))\" height=\"\(h)\">"
                bars += "<title>\(clock(b.start)): \(count) \(name)</title></rect>"
                base -= h
            }
        }
        var html = panel("Jobs finished per minute (succeeded, failed, cancelled)", max: topRate, unit: "/min", bars)

        // Committed to be spent.
        let spent = buckets.map { BigUInt($0.spentWei) ?? 0 }
        let topSpent = max(spent.map(WorkerMetrics.cnx).max() ?? 0, 1e-18)
        var spend = ""
        for (i, wei) in spent.enumerated() where wei > 0 {
            let h = y(WorkerMetrics.cnx(wei), topSpent)
            spend += "<rect class=spend x=\"\(x(i))\" y=\"\(height - h)\" width=\"\(max(step - 1, 1))\" height=\"\(h)\">"
            spend += "<title>\(clock(buckets[i].start)): \(escape(cnx(wei))) (\(wei) wei)</title></rect>"
        }
        html += panel("CNX committed to be spent", max: topSpent, unit: "CNX", spend)

        // Pending at the end of each bucket.
        let topPending = max(Double(buckets.map(\.pending).max() ?? 0), 1)
        let points = buckets.enumerated().map { "\(x($0.offset) + step / 2),\(height - y(Double($0.element.pending), topPending))" }
        var depth = "<polyline class=depth fill=none points=\"\(points.joined(separator: " "))\" />"
        for (i, b) in buckets.enumerated() {
            depth += "<rect class=hover x=\"\(x(i))\" y=\"0\" width=\"\(step)\" height=\"\(height)\"><title>\(clock(b.start)): \(b.pending) pending</title></rect>"
        }
        html += panel("Jobs pending (queue depth)", max: topPending, unit: "jobs", depth)
        return html + "<p class=muted>\(clock(first.start))–\(clock(last.start.addingTimeInterval(minutes * 60))) UTC, \(Int(minutes)) min buckets</p>"
    }

    /// 1234 → "1.2k", 0.5 → "0.5".
    static func short(_ value: Double) -> String {
        if value >= 1000 { return String(format: "%.1fk", value / 1000) }
        if value >= 10 { return String(format: "%.0f", value) }
        return String(format: "%.2g", value)
    }

    /// An amount in CNX, the exact wei on hover.
    private func amount(_ wei: BigUInt) -> String {
        "<span class=amount title=\"\(wei) wei\">\(escape(cnx(wei)))</span>"
    }

    func job(_ job: Job, transactions: [StoredTransaction], events: [JobEvent], results: [Dashboard.ResultInfo]) -> String {
        var html = head("job \(job.id) · crynux-worker", refresh: job.status == .pending ? 10 : nil)
        html += "<p><a href=\"/\">← all jobs</a></p><h1>Job \(job.id)</h1><table>"
        for (name, value) in job.describedFacts(formatDate: time) {
            var label = name, shown = (name == "tx hash" || name == "approval") ? txLink(value) : escape(value)
            if name.hasSuffix(" (wei)"), let wei = BigUInt(value) {
                label = String(name.dropLast(" (wei)".count))
                shown = amount(wei)
            }
            html += "<tr><th>\(escape(label))</th><td>\(shown)</td></tr>"
        }
        html += "</table>"

        html += "<h2>Transactions</h2>"
        if transactions.isEmpty {
            html += "<p class=muted>none signed</p>"
        } else {
            html += "<table><tr><th>for</th><th>hash</th><th>nonce</th><th>value</th><th>price</th><th>gas</th><th>state</th></tr>"
            for (tx, role) in zip(transactions, StoredTransaction.roles(of: transactions)) {
                html += "<tr><td>\(escape(role))</td><td>\(txLink(tx.hash.hex))</td><td class=num>\(tx.nonce)</td><td class=num>\(amount(tx.value))</td>"
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
        form{margin:8px 0}form.filters label{margin-right:12px}
        .chart{margin:0 0 8px}.chart figcaption{color:#555;font-size:13px}
        svg .axis{stroke:#999}svg .tick{font-size:10px;fill:#666}svg .depth{stroke:#1a4f9c;stroke-width:1.5}svg .hover{fill:transparent}
        rect.succeeded{fill:#2e9e48}rect.failed{fill:#d0323f}rect.cancelled{fill:#d4a21c}rect.spend{fill:#7a4fc0}
        .bar{display:inline-block;width:120px;height:10px;background:#eee;vertical-align:middle}
        .bar .fill{display:block;height:10px;background:#2e9e48}.bar .hot{background:#d0323f}
        .amount{border-bottom:1px dotted #999}
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
