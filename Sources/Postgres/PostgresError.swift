/// An error from PostgreSQL or from talking to it.
///
/// `sqlState` is the five-character SQLSTATE code when the server sent one
/// (for example `23505` for a unique violation), so callers can branch on it.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The server rejected the statement (syntax, constraint, permission, ...).
        case server
        /// The connection could not be made or was lost during the call.
        /// The next call on the same `PostgresConnection` reconnects.
        case connection
        /// A value could not be converted to or from the requested Swift type.
        case decoding
        /// The caller misused the API (wrong column, nested transaction, ...).
        case usage
    }

    public let kind: Kind
    public let sqlState: String?
    public let message: String
    public let detail: String?

    public init(_ kind: Kind, _ message: String, sqlState: String? = nil, detail: String? = nil) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
    }

    public var description: String {
        var text = message
        if let sqlState { text = "\(text) (SQLSTATE \(sqlState))" }
        if let detail, !detail.isEmpty { text += ": \(detail)" }
        return text
    }

    public var isUniqueViolation: Bool { sqlState == "23505" }
}
