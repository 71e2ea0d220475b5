/// One row of a result, with values kept in PostgreSQL's binary format until read.
public struct PostgresRow: Sendable {
    let columns: PostgresColumns
    let values: [[UInt8]?]

    /// The value of `column` as `T`; throws if the column is missing, NULL, or of another type.
    public func get<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws -> T {
        let index = try columns.index(of: column)
        guard let bytes = values[index] else {
            throw PostgresError(.decoding, "column \"\(column)\" is NULL, expected \(T.self)")
        }
        do {
            return try T.decode(bytes, oid: columns.oids[index])
        } catch let error as PostgresError {
            throw PostgresError(.decoding, "column \"\(column)\": \(error.message)")
        }
    }

    /// The value of `column` as `T`, or nil when it is NULL.
    public func optional<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws -> T? {
        let index = try columns.index(of: column)
        guard values[index] != nil else { return nil }
        return try get(column, as: type)
    }

    public func isNull(_ column: String) throws -> Bool { values[try columns.index(of: column)] == nil }

    /// Positional access, for queries like `SELECT count(*)`.
    public func get<T: PostgresDecodable>(_ index: Int, as type: T.Type = T.self) throws -> T {
        guard index >= 0, index < values.count else { throw PostgresError(.usage, "no column at index \(index)") }
        guard let bytes = values[index] else { throw PostgresError(.decoding, "column \(index) is NULL, expected \(T.self)") }
        return try T.decode(bytes, oid: columns.oids[index])
    }

    public func optional<T: PostgresDecodable>(_ index: Int, as type: T.Type = T.self) throws -> T? {
        guard index >= 0, index < values.count else { throw PostgresError(.usage, "no column at index \(index)") }
        return values[index] == nil ? nil : try get(index, as: type)
    }

    public var columnNames: [String] { columns.names }
}

final class PostgresColumns: Sendable {
    let names: [String]
    let oids: [UInt32]
    private let lookup: [String: Int]

    init(names: [String], oids: [UInt32]) {
        self.names = names
        self.oids = oids
        var lookup: [String: Int] = [:]
        for (i, name) in names.enumerated() where lookup[name] == nil { lookup[name] = i }
        self.lookup = lookup
    }

    func index(of name: String) throws -> Int {
        guard let index = lookup[name] else {
            throw PostgresError(.usage, "no column \"\(name)\" in result (columns: \(names.joined(separator: ", ")))")
        }
        return index
    }
}
