import CCurl
import Foundation

public struct HTTPResponse: Sendable {
    public let status: Int
    /// Header names are lowercased; repeated headers are joined with ", ".
    public let headers: [String: String]
    public let body: [UInt8]

    public init(status: Int, headers: [String: String], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// Case-insensitive header lookup.
    public func header(_ name: String) -> String? {
        headers[name.lowercased()]
    }

    public var isSuccess: Bool { (200..<300).contains(status) }
}

public enum HTTPError: Error, Sendable, CustomStringConvertible {
    case timeout(String)
    case bodyTooLarge(limit: Int)
    case transport(String)
    case invalidURL(String)

    public var description: String {
        switch self {
        case .timeout(let message): return "HTTP timeout: \(message)"
        case .bodyTooLarge(let limit): return "HTTP response body exceeds the limit of \(limit) bytes"
        case .transport(let message): return "HTTP transport error: \(message)"
        case .invalidURL(let message): return "invalid URL: \(message)"
        }
    }
}

public struct HTTPOptions: Sendable {
    /// Seconds.
    public var connectTimeout: Double
    /// Seconds for the whole transfer; `request(timeout:)` overrides it per call.
    public var totalTimeout: Double
    public var maxResponseBytes: Int
    public var followRedirects: Bool
    public var userAgent: String
    /// Idle handles (each with its open connections) kept for reuse.
    public var maxIdleHandles: Int
    /// PEM file of the certificate authorities to trust instead of the system's (a private CA).
    /// Verification of the peer and its host name is always on: there is no option to skip it.
    public var caFile: String?

    public init(connectTimeout: Double = 5, totalTimeout: Double = 30, maxResponseBytes: Int = 64 << 20,
                followRedirects: Bool = false, userAgent: String = "crynux-worker", maxIdleHandles: Int = 16,
                caFile: String? = nil) {
        self.connectTimeout = connectTimeout
        self.totalTimeout = totalTimeout
        self.maxResponseBytes = maxResponseBytes
        self.followRedirects = followRedirects
        self.userAgent = userAgent
        self.maxIdleHandles = maxIdleHandles
        self.caFile = caFile
    }
}

private let curlGlobalInit: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))

/// Blocking HTTP(S) client over libcurl. Safe to share between threads: each request checks an easy
/// handle out of the pool and returns it afterwards, so connections are kept alive and reused.
public final class HTTPClient: @unchecked Sendable {
    public let options: HTTPOptions
    private let lock = NSLock()
    private var idle: [UnsafeMutableRawPointer] = []  // guarded by lock

    public init(options: HTTPOptions = .init()) {
        precondition(curlGlobalInit == CURLE_OK, "curl_global_init failed")
        self.options = options
    }

    deinit {
        for handle in idle { curl_easy_cleanup(handle) }
    }

    public func get(_ url: String, headers: [String: String] = [:], timeout: Double? = nil) throws -> HTTPResponse {
        try request("GET", url, headers: headers, body: nil, timeout: timeout)
    }

    public func post(_ url: String, json: [UInt8], headers: [String: String] = [:],
                     timeout: Double? = nil) throws -> HTTPResponse {
        var all = headers
        if !all.keys.contains(where: { $0.lowercased() == "content-type" }) {
            all["Content-Type"] = "application/json"
        }
        return try request("POST", url, headers: all, body: json, timeout: timeout)
    }

    /// Throws only `HTTPError`. Any HTTP status is a response, not an error.
    public func request(_ method: String, _ url: String, headers: [String: String] = [:], body: [UInt8]? = nil,
                        timeout: Double? = nil) throws -> HTTPResponse {
        guard !method.isEmpty, method.utf8.allSatisfy({ $0 >= 0x41 && $0 <= 0x5a }) else {
            throw HTTPError.transport("invalid HTTP method \(method.debugDescription)")
        }
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw HTTPError.invalidURL(redactedURL(url))
        }
        for (name, value) in headers {
            let bad = name.isEmpty || name.contains(":")
                || (name + value).unicodeScalars.contains { $0 == "\r" || $0 == "\n" || $0 == "\0" }
            if bad { throw HTTPError.transport("invalid header \(name.debugDescription)") }
        }

        let handle = try checkOut()
        defer { checkIn(handle) }
        return try perform(handle, method: method, url: url, headers: headers, body: body,
                           timeout: timeout ?? options.totalTimeout)
    }

    // MARK: - Handle pool

    private func checkOut() throws -> UnsafeMutableRawPointer {
        lock.lock()
        let reused = idle.popLast()
        lock.unlock()
        if let reused { return reused }
        guard let handle = curl_easy_init() else { throw HTTPError.transport("curl_easy_init failed") }
        return handle
    }

    private func checkIn(_ handle: UnsafeMutableRawPointer) {
        lock.lock()
        if idle.count < options.maxIdleHandles {
            idle.append(handle)
            lock.unlock()
        } else {
            lock.unlock()
            curl_easy_cleanup(handle)
        }
    }

    // MARK: - Transfer

    private func perform(_ h: UnsafeMutableRawPointer, method: String, url: String, headers: [String: String],
                         body: [UInt8]?, timeout: Double) throws -> HTTPResponse {
        // Reset drops the previous request's options but keeps the connection cache.
        curl_easy_reset(h)
        let transfer = Transfer(limit: options.maxResponseBytes)
        let context = Unmanaged.passUnretained(transfer).toOpaque()

        var headerList: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headerList) }
        // An empty "Expect:" stops curl from waiting for "100 Continue" before sending large bodies.
        for line in headers.map({ "\($0.key): \($0.value)" }).sorted() + ["Expect:"] {
            guard let appended = curl_slist_append(headerList, line) else {
                throw HTTPError.transport("out of memory building headers")
            }
            headerList = appended
        }

        // A large body gets time to travel (a second per MB on top); a transfer that stops moving
        // is cut by the low-speed limit below, whatever its size.
        let totalMs = max(1, Int((timeout + Double(body?.count ?? 0) / 1_000_000) * 1000))
        let connectMs = max(1, min(Int(options.connectTimeout * 1000), totalMs))
        var rc = CURLE_OK
        func set(_ code: CURLcode) { if rc == CURLE_OK { rc = code } }

        set(ccurl_setopt_ptr(h, CURLOPT_URL, url))
        set(ccurl_setopt_ptr(h, CURLOPT_PROTOCOLS_STR, "http,https"))
        set(ccurl_setopt_long(h, CURLOPT_NOSIGNAL, 1))
        set(ccurl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 1))
        set(ccurl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 2))
        if let caFile = options.caFile { set(ccurl_setopt_ptr(h, CURLOPT_CAINFO, caFile)) }
        set(ccurl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, connectMs))
        set(ccurl_setopt_long(h, CURLOPT_TIMEOUT_MS, totalMs))
        set(ccurl_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1))
        set(ccurl_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, 1024))
        set(ccurl_setopt_long(h, CURLOPT_LOW_SPEED_TIME, max(1, Int(min(timeout, 30)))))
        set(ccurl_setopt_off(h, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(options.maxResponseBytes)))
        set(ccurl_setopt_ptr(h, CURLOPT_ACCEPT_ENCODING, ""))
        set(ccurl_setopt_ptr(h, CURLOPT_USERAGENT, options.userAgent))
        set(ccurl_setopt_ptr(h, CURLOPT_HTTPHEADER, headerList))
        if options.followRedirects {
            set(ccurl_setopt_long(h, CURLOPT_FOLLOWLOCATION, 1))
            set(ccurl_setopt_long(h, CURLOPT_MAXREDIRS, 5))
            set(ccurl_setopt_ptr(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https"))
        }
        set(ccurl_setopt_write(h, writeCallback))
        set(ccurl_setopt_ptr(h, CURLOPT_WRITEDATA, context))
        set(ccurl_setopt_header(h, headerCallback))
        set(ccurl_setopt_ptr(h, CURLOPT_HEADERDATA, context))

        switch (method, body) {
        case ("GET", nil):
            set(ccurl_setopt_long(h, CURLOPT_HTTPGET, 1))
        case ("HEAD", nil):
            set(ccurl_setopt_long(h, CURLOPT_NOBODY, 1))
        case (_, nil) where method != "POST":
            set(ccurl_setopt_ptr(h, CURLOPT_CUSTOMREQUEST, method))
        default:
            // Always give POST a body buffer; otherwise curl would read the body from stdin.
            let bytes = body ?? []
            set(ccurl_setopt_long(h, CURLOPT_POST, 1))
            set(ccurl_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(bytes.count)))
            set(bytes.withUnsafeBytes { ccurl_setopt_ptr(h, CURLOPT_COPYPOSTFIELDS, $0.baseAddress ?? UnsafeRawPointer(context)) })
            if method != "POST" { set(ccurl_setopt_ptr(h, CURLOPT_CUSTOMREQUEST, method)) }
        }
        guard rc == CURLE_OK else {
            throw HTTPError.transport("curl setup failed: \(String(cString: curl_easy_strerror(rc)))")
        }

        let code: CURLcode = transfer.errorBuffer.withUnsafeMutableBufferPointer { buffer in
            let setBuffer = ccurl_setopt_ptr(h, CURLOPT_ERRORBUFFER, buffer.baseAddress)
            guard setBuffer == CURLE_OK else { return setBuffer }
            let result = withExtendedLifetime(transfer) { curl_easy_perform(h) }
            _ = ccurl_setopt_ptr(h, CURLOPT_ERRORBUFFER, nil)
            return result
        }

        if code != CURLE_OK {
            let detail = transfer.errorMessage ?? String(cString: curl_easy_strerror(code))
            let target = "\(method) \(redactedURL(url))"
            switch code {
            case CURLE_OPERATION_TIMEDOUT:
                throw HTTPError.timeout("\(target): \(detail)")
            case CURLE_FILESIZE_EXCEEDED:
                throw HTTPError.bodyTooLarge(limit: options.maxResponseBytes)
            case CURLE_WRITE_ERROR where transfer.exceeded:
                throw HTTPError.bodyTooLarge(limit: options.maxResponseBytes)
            case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL:
                throw HTTPError.invalidURL("\(redactedURL(url)): \(detail)")
            default:
                throw HTTPError.transport("\(target): \(detail) (curl error \(code.rawValue))")
            }
        }
        var status = 0
        _ = ccurl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: transfer.headers, body: transfer.body)
    }
}

/// Drops credentials, the path and the query string: RPC providers put API keys in any of them
/// (`https://mainnet.example/v3/KEY`). What is left, scheme and host, is safe to log and store.
public func redactedURL(_ url: String) -> String {
    var rest = Substring(url)
    var scheme = ""
    if let range = rest.range(of: "://") {
        scheme = String(rest[..<range.upperBound])
        rest = rest[range.upperBound...]
    }
    let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
    var authority = rest[..<authorityEnd]
    if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
    return scheme + authority + (authorityEnd < rest.endIndex ? "/…" : "")
}


private final class Transfer {
    let limit: Int
    var body: [UInt8] = []
    var headers: [String: String] = [:]
    var exceeded = false
    var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)

    init(limit: Int) { self.limit = limit }

    var errorMessage: String? {
        let message = errorBuffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return message.isEmpty ? nil : message
    }
}

private let writeCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, context in
    let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
    let length = size * count
    guard transfer.body.count + length <= transfer.limit else {
        transfer.exceeded = true
        return 0  // makes curl abort with CURLE_WRITE_ERROR
    }
    if length > 0, let data {
        transfer.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: length))
    }
    return length
}

private let headerCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, context in
    let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
    let length = size * count
    guard let data, length > 0 else { return length }
    let line = String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
    if line.hasPrefix("HTTP/") {
        // A new status line (after "100 Continue" or a redirect) starts a new header block.
        transfer.headers = [:]
    } else if let colon = line.firstIndex(of: ":") {
        let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
        if let existing = transfer.headers[name] {
            transfer.headers[name] = existing + ", " + value
        } else {
            transfer.headers[name] = value
        }
    }
    return length
}
