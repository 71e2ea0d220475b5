import Foundation

/// Plain line logging to standard error: time, worker, message. Never given secrets.
public struct WorkerLog: Sendable {
    public let name: String
    public var quiet = false

    public init(name: String, quiet: Bool = false) {
        self.name = name
        self.quiet = quiet
    }

    public func info(_ message: @autoclosure () -> String) {
        guard !quiet else { return }
        write("\(timestamp()) \(name) \(message())\n")
    }

    public func error(_ message: @autoclosure () -> String) {
        write("\(timestamp()) \(name) ERROR \(message())\n")
    }

    private func timestamp() -> String {
        let now = Date().timeIntervalSince1970
        let seconds = Int(now)
        let millis = Int((now - Double(seconds)) * 1000)
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%02d:%02d:%02d.%03d", parts.tm_hour, parts.tm_min, parts.tm_sec, millis)
    }

    private func write(_ line: String) {
        FileHandle.standardError.write(Data(line.utf8))
    }
}
