import Foundation
import Logging
import StrictJSON

/// How log lines look: `text` for people (time, worker, level, message, fields), `json` for log
/// shippers (one object per line).
public enum LogFormat: String, CaseIterable, Sendable {
    case text, json
}

/// The worker's log: swift-log's `Logger` with one handler that writes a line per event to
/// standard error. Fields name what the event is about (job, stage, task, tx, wallet), so a
/// log shipper can index them. Never given secrets, nor task arguments above debug level.
public struct WorkerLog: Sendable {
    public let name: String
    public private(set) var logger: Logger

    public init(name: String, format: LogFormat = .text, level: Logger.Level = .info) {
        self.name = name
        logger = Logger(label: "crynux-worker") { _ in LineLogHandler(worker: name, format: format, logLevel: level) }
    }

    /// `quiet`: errors only (the flag of the same name).
    public init(name: String, quiet: Bool) {
        self.init(name: name, level: quiet ? .error : .info)
    }

    /// The levels `--log-level` takes: debug adds the details of each request; info (the
    /// default) is one line per stage change; warning and error only what needs a person.
    public static let levelNames = ["debug", "info", "warning", "error"]

    /// A log at a level named as `--log-level` takes it; nil for an unknown name.
    public init?(name: String, format: LogFormat, levelName: String) {
        guard Self.levelNames.contains(levelName), let level = Logger.Level(rawValue: levelName) else { return nil }
        self.init(name: name, format: format, level: level)
    }

    /// What an event is about; nil fields are left out.
    public struct Fields: Sendable {
        public var job: Int64?
        public var stage: String?
        public var task: UInt64?
        public var tx: String?
        public var wallet: String?

        public init(job: Int64? = nil, stage: String? = nil, task: UInt64? = nil, tx: String? = nil, wallet: String? = nil) {
            self.job = job
            self.stage = stage
            self.task = task
            self.tx = tx
            self.wallet = wallet
        }

        var metadata: Logger.Metadata {
            var m: Logger.Metadata = [:]
            if let job { m["job"] = "\(job)" }
            if let stage { m["stage"] = .string(stage) }
            if let task { m["task"] = "\(task)" }
            if let tx { m["tx"] = .string(tx) }
            if let wallet { m["wallet"] = .string(wallet) }
            return m
        }
    }

    public func debug(_ message: @autoclosure () -> String, _ fields: Fields = Fields()) {
        logger.debug("\(message())", metadata: fields.metadata)
    }

    public func info(_ message: @autoclosure () -> String, _ fields: Fields = Fields()) {
        logger.info("\(message())", metadata: fields.metadata)
    }

    public func warning(_ message: @autoclosure () -> String, _ fields: Fields = Fields()) {
        logger.warning("\(message())", metadata: fields.metadata)
    }

    public func error(_ message: @autoclosure () -> String, _ fields: Fields = Fields()) {
        logger.error("\(message())", metadata: fields.metadata)
    }
}

/// Writes each event as one line to standard error, in one `write` (lines of concurrent threads
/// never interleave).
struct LineLogHandler: LogHandler {
    let worker: String
    let format: LogFormat
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    init(worker: String, format: LogFormat, logLevel: Logger.Level) {
        self.worker = worker
        self.format = format
        self.logLevel = logLevel
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        let line = format == .json ? jsonLine(event, fields) : textLine(event, fields)
        line.utf8CString.withUnsafeBufferPointer { buffer in
            var offset = 0
            let count = buffer.count - 1  // without the terminating NUL
            while offset < count {
                let written = Foundation.write(STDERR_FILENO, buffer.baseAddress! + offset, count - offset)
                if written <= 0 { break }
                offset += written
            }
        }
    }

    /// `05:16:43.123 worker-1 job 7 create -> upload: … [job=7 stage=create tx=0x…]`; levels other
    /// than info are named before the message.
    private func textLine(_ event: LogEvent, _ fields: Logger.Metadata) -> String {
        var line = "\(Self.time(withDate: false)) \(worker) "
        if event.level != .info { line += event.level.rawValue.uppercased() + " " }
        line += event.message.description
        if !fields.isEmpty {
            line += " [" + fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "]"
        }
        return line + "\n"
    }

    /// `{"time":"…Z","level":"info","worker":"…","message":"…","job":7,…}`, written by the code
    /// base's one JSON writer.
    private func jsonLine(_ event: LogEvent, _ fields: Logger.Metadata) -> String {
        var object = JSONObject()
        object.set("time", .string(Self.time(withDate: true)))
        object.set("level", .string(event.level.rawValue))
        object.set("worker", .string(worker))
        object.set("message", .string(event.message.description))
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            let text = "\(value)"
            // Ids are numbers in JSON; everything else a string.
            if key == "job" || key == "task", let id = Int(text) {
                object.set(key, .number(JSONNumber(id)))
            } else {
                object.set(key, .string(text))
            }
        }
        return String(decoding: JSON.object(object).serialized(), as: UTF8.self) + "\n"
    }

    private static func time(withDate: Bool) -> String {
        let now = Date().timeIntervalSince1970
        let seconds = Int(now)
        let millis = min(Int((now - Double(seconds)) * 1000), 999)
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        let clock = String(format: "%02d:%02d:%02d.%03d", parts.tm_hour, parts.tm_min, parts.tm_sec, millis)
        guard withDate else { return clock }
        return String(format: "%04d-%02d-%02dT", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday) + clock + "Z"
    }
}
