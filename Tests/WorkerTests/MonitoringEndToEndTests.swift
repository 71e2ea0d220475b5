import BigInt
import Ethereum
import Foundation
import HTTP
import JobQueue
import StrictJSON
import TestSupport
import Testing

/// The monitoring port against the local network: /metrics after a run, /healthz, the dashboard
/// in headless Chromium, JSON logs, and the wallet watch with a wallet that has no funds yet.
@Suite("Operating the worker (end to end)", .serialized)
struct MonitoringEndToEndTests {
    static let http = HTTPClient(options: HTTPOptions(connectTimeout: 5, totalTimeout: 30))

    @Test func aRunShowsInMetricsHealthzLogsAndTheDashboard() throws {
        let harness = try PipelineHarness(devnet: try Devnet.shared())
        let db = try harness.db()
        let prompt = "monitoring lighthouse \(UInt32.random(in: 0...UInt32.max))"
        var sd: [Int64] = []
        for i in 0..<3 { sd.append(try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1 + i % 2, prompt: prompt)))) }
        let gpt = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("monitoring")))
        let invalid = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: #"{"version":"2.0.0","task_config":{"num_images":0}}"#))

        let worker = try harness.startWorker(name: "monitored", extra: ["--metrics-port", "0", "--metrics-sample-interval", "0.5",
                                                                        "--log-format", "json", "--wallet-check-interval", "1"])
        defer { if worker.process.isRunning { worker.signal(SIGKILL) } }
        let base = try Self.monitorURL(worker)
        let finished = try harness.waitUntil(timeout: 240) {
            try db.query("SELECT count(*) FROM crynux.jobs WHERE status = 'pending'")[0].get(0, as: Int64.self) == 0
        }
        #expect(finished, "\(worker.output.suffix(3000))")
        let jobs = try harness.jobs()
        #expect(jobs.filter { $0.status == .succeeded }.map(\.id).sorted() == (sd + [gpt]).sorted(), "\(jobs.map { ($0.id, $0.lastError) })")
        #expect(try JobStore.job(db, id: invalid)?.status == .failed)

        // /metrics: the named series, with values this run must have produced. The database
        // gauges are sampled every half second: wait for the finished jobs to show.
        var metrics = Metrics(text: "")
        let sampled = harness.waitUntil(timeout: 30) {
            metrics = Metrics(text: (try? Self.get(base + "metrics").text) ?? "")
            return metrics.value("crynux_jobs", ["status": "succeeded", "stage": "fetch"]) == 4
        }
        #expect(sampled, "\(metrics.text)")
        #expect(metrics.value("crynux_jobs", ["status": "failed", "stage": "create"]) == 1)
        #expect(metrics.value("crynux_job_outcomes_total", ["outcome": "succeeded", "kind": "sd"]) == 3)
        #expect(metrics.value("crynux_job_outcomes_total", ["outcome": "succeeded", "kind": "gpt"]) == 1)
        #expect(metrics.value("crynux_job_outcomes_total", ["outcome": "failed", "kind": "sd"]) == 1)
        for stage in ["create", "upload", "poll", "fetch"] {
            #expect((metrics.value("crynux_stage_duration_seconds_count", ["stage": stage]) ?? 0) >= 4, "\(stage)")
        }
        #expect((metrics.value("crynux_stage_duration_seconds_sum", ["stage": "poll"]) ?? 0) > 0)
        // Four createTasks at least (sent once each, maybe again), their receipts, getTask polls.
        #expect((metrics.value("crynux_rpc_requests_total", ["method": "eth_sendRawTransaction"]) ?? 0) >= 4)
        #expect((metrics.value("crynux_rpc_requests_total", ["method": "eth_call"]) ?? 0) >= 4)
        #expect((metrics.value("crynux_relay_requests_total", ["endpoint": "upload"]) ?? 0) >= 4)
        #expect((metrics.value("crynux_relay_requests_total", ["endpoint": "download"]) ?? 0) >= 5)  // 1+2+1 images and a text
        #expect((metrics.value("crynux_claims_total", [:]) ?? 0) >= 4)
        #expect((metrics.value("crynux_claim_batch_size_count", [:]) ?? 0) >= 4)
        // Five results of 1,000 wei each (the harness's fee) were paid for.
        let fees = try #require(metrics.value("crynux_task_fees_cnx_total", ["profile": "era-d"]))
        #expect(abs(fees - 5_000e-18) < 1e-20, "\(fees)")
        let wallet = harness.key.address.checksummed
        #expect((metrics.value("crynux_wallet_balance_cnx", ["wallet": wallet, "asset": "native"]) ?? 0) > 1_000)
        #expect(metrics.value("crynux_wallet_low_funds", ["wallet": wallet]) == 0)
        #expect(metrics.value("crynux_wallet_unmined_nonces", ["wallet": wallet]) != nil)
        #expect(metrics.value("crynux_oldest_due_job_age_seconds", [:]) == 0)
        #expect(metrics.value("crynux_leases_lost_total", [:]) == nil || metrics.value("crynux_leases_lost_total", [:]) == 0)

        // /healthz: the database answers and the node serves the expected chain.
        let health = try Self.get(base + "healthz")
        #expect(health.status == 200, "\(health.text)")
        let answer = try JSON.parse(bytes: health.body)
        #expect(answer["database"]?.stringValue == "ok" && answer["chain"]?.stringValue == "ok" && answer["status"]?.stringValue == "ok",
                "\(health.text)")

        // The dashboard: the jobs, the failure with its reason, a job's timeline and its image.
        let page = try Self.get(base).text
        for id in sd + [gpt, invalid] { #expect(page.contains("href=\"/jobs/\(id)\""), "job \(id) missing") }
        #expect(page.contains("invalid task arguments"))
        #expect(page.contains("src=\"/jobs/\(sd[0])/results/0\""))
        let jobPage = try Self.get(base + "jobs/\(sd[1])").text
        let job = try #require(try JobStore.job(db, id: sd[1]))
        let txHash = try #require(job.txHash?.hex), taskId = try #require(job.taskId)
        #expect(jobPage.contains("Timeline") && jobPage.contains(txHash) && jobPage.contains("\(taskId)"))
        #expect(jobPage.contains("src=\"/jobs/\(sd[1])/results/1\""))
        let image = try Self.get(base + "jobs/\(sd[1])/results/1")
        let stored = try #require(try JobStore.results(db, jobIds: [sd[1]]).first { $0.file.index == 1 })
        #expect(image.status == 200 && image.body == stored.file.data && image.header("Content-Type") == "image/png")
        #expect(try Self.get(base + "jobs/999999").status == 404)

        // The chart of the last day, the filtered list and the search, as Chromium renders them.
        #expect(page.contains("<svg") && page.contains("succeeded</title>") && page.contains("failed</title>"), "\(page)")
        let chartDOM = try Self.dom(base)
        #expect(chartDOM.components(separatedBy: "<svg").count == 4 && chartDOM.contains("<rect class=\"succeeded\""), "\(chartDOM.prefix(3000))")
        let failedDOM = try Self.dom(base + "jobs?status=failed&kind=sd")
        #expect(failedDOM.contains("href=\"/jobs/\(invalid)\"") && !failedDOM.contains("href=\"/jobs/\(sd[0])\""), "\(failedDOM.prefix(3000))")
        #expect(failedDOM.contains("<option selected=\"\">failed</option>"))
        let found = try Self.get(base + "search?q=\(txHash)").text
        #expect(found.contains("href=\"/jobs/\(sd[1])\"") && !found.contains("href=\"/jobs/\(sd[0])\""), "\(found)")
        #expect(try Self.get(base + "search?q=\(taskId)").text.contains("href=\"/jobs/\(sd[1])\""))

        // Headless Chromium loads the page and its images: the screenshot shows jobs and images.
        let before = Metrics(text: try Self.get(base + "metrics").text).value("crynux_monitor_requests_total", ["route": "/jobs/:id/results/:index"]) ?? 0
        let screenshot = try Self.screenshot(base, name: "dashboard")
        let png = try #require(FileManager.default.contents(atPath: screenshot))
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 20_000, "\(png.count) bytes")
        let after = Metrics(text: try Self.get(base + "metrics").text).value("crynux_monitor_requests_total", ["route": "/jobs/:id/results/:index"]) ?? 0
        #expect(after >= before + 3, "Chromium fetched \(after - before) result image(s)")

        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: 30) == 0)

        // JSON logs: one object per line, with job and task ids as numbers; never the key, and
        // never the task arguments at info level.
        let lines = worker.output.split(separator: "\n")
        #expect(lines.count > 20)
        var sawJobFields = false
        for line in lines {
            guard let object = try? JSON.parse(String(line)) else {
                Issue.record("not a JSON line: \(line)")
                continue
            }
            #expect(object["time"]?.stringValue != nil && object["level"]?.stringValue != nil && object["message"]?.stringValue != nil)
            if case .number? = object["job"], case .number? = object["task"], object["stage"]?.stringValue != nil { sawJobFields = true }
        }
        #expect(sawJobFields)
        #expect(!worker.output.contains(harness.key.hexForTests.dropFirst(2)) && !worker.output.contains(prompt))
    }

    @Test func aWalletWithoutFundsMakesJobsWaitAndResumeOnceFunded() throws {
        let devnet = try Devnet.shared()
        let harness = try PipelineHarness(devnet: devnet)
        let poor = PrivateKey.random()
        let db = try harness.db()
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1, prompt: "funds")))
        let worker = try harness.startWorker(name: "poor", keys: [poor],
                                             extra: ["--metrics-port", "0", "--wallet-check-interval", "1", "--funds-retry", "1",
                                                     "--low-funds-jobs", "5"])
        defer { if worker.process.isRunning { worker.signal(SIGKILL) } }
        let base = try Self.monitorURL(worker)
        let wallet = poor.address.checksummed

        let waiting = try harness.waitUntil(timeout: 60) {
            try JobStore.job(db, id: id)?.lastError?.hasPrefix("waiting for funds: the wallet \(wallet) holds 0 CNX") == true
        }
        #expect(waiting, "\(worker.output.suffix(3000))")
        #expect(worker.waitForOutput(containing: "wallet \(wallet) is low on funds", timeout: 30), "\(worker.output.suffix(2000))")
        #expect(Metrics(text: try Self.get(base + "metrics").text).value("crynux_wallet_low_funds", ["wallet": wallet]) == 1)
        // It waits: no nonce used, no transaction stored, not a failed try.
        let job = try #require(try JobStore.job(db, id: id))
        #expect(job.status == .pending && job.stage == .create && job.txNonce == nil && job.stageAttempts == 0)
        #expect(try harness.chainNonce(of: poor.address) == 0)
        #expect(try db.query("SELECT count(*) FROM crynux.job_transactions")[0].get(0, as: Int64.self) == 0)

        try devnet.fund(wallet)
        let done = try harness.waitUntil(timeout: 120) { try JobStore.job(db, id: id)?.status == .succeeded }
        #expect(done, "\(worker.output.suffix(3000))")
        #expect(worker.waitForOutput(containing: "wallet \(wallet) holds enough for 5 jobs again", timeout: 30))
        #expect(Metrics(text: try Self.get(base + "metrics").text).value("crynux_wallet_low_funds", ["wallet": wallet]) == 0)
        #expect((Metrics(text: try Self.get(base + "metrics").text).value("crynux_funds_waits_total", [:]) ?? 0) >= 1)
        // One history row for the wait, however many looks it took.
        #expect(try JobStore.events(db, jobId: id).filter { $0.detail.hasPrefix("waiting for funds") }.count == 1)
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: 30) == 0)
    }

    // MARK: helpers

    /// The monitoring URL the worker logged (it was given port 0).
    static func monitorURL(_ worker: WorkerProcess) throws -> String {
        guard worker.waitForOutput(containing: "monitoring on http://", timeout: 60) else {
            throw TestSetupError("the worker never opened its monitoring port:\n\(worker.output.suffix(2000))")
        }
        let output = worker.output
        let start = try #require(output.range(of: "monitoring on ")).upperBound
        let url = output[start...].prefix { !$0.isWhitespace && $0 != "\"" }
        return String(url)
    }

    static func get(_ url: String) throws -> HTTPResponse { try http.get(url) }

    /// The DOM headless Chromium builds from `url`.
    static func dom(_ url: String) throws -> String {
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("chromium-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: profile) }
        let (status, output) = try Devnet.runProcess(try chromium(), [
            "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(profile)", "--dump-dom", url,
        ])
        guard status == 0, output.contains("</html>") else { throw TestSetupError("chromium exited \(status):\n\(output.suffix(2000))") }
        return output
    }

    static func chromium() throws -> String {
        guard let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: FileManager.default.isExecutableFile) else {
            throw TestSetupError("headless Chromium is not installed: apt-get install chromium (scripts/test does)")
        }
        return chromium
    }

    /// A screenshot of `url` by Debian's headless Chromium; fails loudly when it is not installed.
    static func screenshot(_ url: String, name: String) throws -> String {
        let chromium = try chromium()
        let folder = ProcessInfo.processInfo.environment["CRYNUX_SCREENSHOT_DIR"] ?? FileManager.default.temporaryDirectory.path
        let path = (folder as NSString).appendingPathComponent("\(name)-\(UInt32.random(in: 0...UInt32.max)).png")
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("chromium-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: profile) }
        let (status, output) = try Devnet.runProcess(chromium, [
            "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=\(profile)",
            "--window-size=1280,1400", "--screenshot=\(path)", url,
        ])
        guard status == 0, FileManager.default.fileExists(atPath: path) else {
            throw TestSetupError("chromium exited \(status) without a screenshot:\n\(output.suffix(2000))")
        }
        return path
    }
}

extension HTTPResponse {
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// Prometheus text format, read back: the value of a series with the given labels (others may
/// be present too).
struct Metrics {
    let text: String

    func value(_ name: String, _ labels: [String: String]) -> Double? {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let series: Substring, rest: Substring
            if let brace = line.firstIndex(of: "{"), let close = line.firstIndex(of: "}") {
                guard line[..<brace] == name else { continue }
                series = line[line.index(after: brace)..<close]
                rest = line[line.index(after: close)...]
            } else {
                guard let space = line.firstIndex(of: " "), line[..<space] == name else { continue }
                series = ""
                rest = line[space...]
            }
            let found = Dictionary(series.split(separator: ",").compactMap { pair -> (String, String)? in
                guard let eq = pair.firstIndex(of: "=") else { return nil }
                return (String(pair[..<eq]), String(pair[pair.index(after: eq)...]).trimmingCharacters(in: CharacterSet(charactersIn: "\"")))
            }, uniquingKeysWith: { $1 })
            guard labels.allSatisfy({ found[$0.key] == $0.value }) else { continue }
            return Double(rest.trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}
