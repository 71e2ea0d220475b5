import BigInt
import Ethereum
import Foundation
import Postgres

/// A spending cap: at most `limit` wei committed in any `window` seconds, by one wallet or (nil)
/// by every wallet together. Kept in PostgreSQL (`crynux.budgets`), so every worker enforces
/// every budget, whoever set it.
public struct Budget: Sendable, Equatable, CustomStringConvertible {
    public let wallet: Address?
    public let window: Int
    public let limit: BigUInt

    public init(wallet: Address?, window: Int, limit: BigUInt) {
        self.wallet = wallet
        self.window = window
        self.limit = limit
    }

    public var description: String {
        "the budget of \(cnx(limit)) per \(Self.windowText(window)) of \(wallet.map { "wallet \($0.checksummed)" } ?? "all wallets")"
    }

    /// A short name for metrics and tables: `0xabc…/1h`, `total/1d`.
    public var label: String { "\(wallet?.checksummed ?? "total")/\(Self.windowText(window))" }

    static func windowText(_ seconds: Int) -> String {
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] where seconds % size == 0 && seconds >= size {
            return seconds == size ? ["d": "day", "h": "hour", "m": "minute"][unit]! : "\(seconds / size)\(unit)"
        }
        return "\(seconds)s"
    }
}

/// A budget and what is committed in its window now.
public struct BudgetUse: Sendable, Equatable {
    public let budget: Budget
    public let used: BigUInt

    /// Share of the limit used, 0…1 (or more, when a refund-free payment that a budget does not
    /// hold back, such as a validation group's members, went past it).
    public var share: Double { Double(used) / Double(budget.limit) }
}

/// A payment would pass a budget: nothing is signed or sent, and the job waits until `roomAt`.
public struct BudgetExceeded: Error, CustomStringConvertible {
    public let budget: Budget
    public let used: BigUInt
    public let needed: BigUInt
    /// When enough of the window's payments age out for this one; nil when it alone exceeds the limit.
    public let roomAt: Date?

    public var description: String {
        let when = roomAt.map { "room returns at \(ISO8601DateFormatter().string(from: $0))" } ?? "it alone is over the limit"
        return "waiting for budget: \(budget) has \(cnx(used)) committed and this payment needs \(cnx(needed)); \(when)"
    }
}

extension JobStore {
    /// Sets these budgets (a budget of the same wallet and window gets the new limit); others stay.
    public static func setBudgets(_ db: PostgresConnection, _ budgets: [Budget]) throws {
        for budget in budgets {
            try db.execute("""
                INSERT INTO crynux.budgets (wallet_address, window_seconds, limit_wei) VALUES ($1, $2, $3::numeric)
                ON CONFLICT (wallet_address, window_seconds) DO UPDATE SET limit_wei = EXCLUDED.limit_wei, updated_at = now()
                """, [budget.wallet?.bytes.hex, Int32(clamping: budget.window), budget.limit.description])
        }
    }

    /// Every budget with what its window holds now.
    public static func budgetUse(_ db: PostgresConnection) throws -> [BudgetUse] {
        try db.query("SELECT wallet_address, window_seconds, limit_wei::text AS limit_wei FROM crynux.budgets ORDER BY id").map { row in
            let budget = try Self.budget(row)
            return BudgetUse(budget: budget, used: try payments(db, budget).reduce(0) { $0 + $1.amount })
        }
    }

    /// Checks a new payment of `amount` by `wallet` against every budget covering it, with those
    /// budget rows locked until the caller's transaction ends (the caller stores the payment in
    /// the same transaction, where `payments_since` finds it). Throws `BudgetExceeded`; no budget,
    /// no cost. What an admitted payment needs to complete (a gas bump, a validation group's two
    /// more tasks) is counted but never checked: holding it back would lose the first payment.
    static func checkBudgets(_ db: PostgresConnection, wallet: Address, amount: BigUInt) throws {
        let rows = try db.query("""
            SELECT wallet_address, window_seconds, limit_wei::text AS limit_wei FROM crynux.budgets
            WHERE wallet_address IS NULL OR wallet_address = $1 ORDER BY id FOR UPDATE
            """, [wallet.bytes.hex])
        for row in rows {
            let budget = try Self.budget(row)
            let paid = try payments(db, budget)
            let used = paid.reduce(BigUInt(0)) { $0 + $1.amount }
            guard used + amount > budget.limit else { continue }
            // Rolling window: room returns once the oldest payments that make the excess age out.
            var excess = used + amount - budget.limit, roomAt: Date?
            if amount <= budget.limit {
                for payment in paid {
                    if payment.amount >= excess { roomAt = payment.at.addingTimeInterval(Double(budget.window)); break }
                    excess -= payment.amount
                }
            }
            throw BudgetExceeded(budget: budget, used: used, needed: amount, roomAt: roomAt)
        }
    }

    private static func budget(_ row: PostgresRow) throws -> Budget {
        let hex: String? = try row.optional("wallet_address")
        guard let limit = BigUInt(try row.get("limit_wei", as: String.self)) else { throw PostgresError(.usage, "a budget's limit is not a whole number") }
        return Budget(wallet: try hex.map { hex in
            guard let address = Address(hex: hex) else { throw PostgresError(.usage, "a budget's wallet \(hex) is not an address") }
            return address
        }, window: Int(try row.get("window_seconds", as: Int32.self)), limit: limit)
    }

    /// The payments in `budget`'s window now, oldest first. Now is the clock's, not the
    /// transaction's start: a payment is stamped when it is stored, after the budgets' lock was
    /// granted, so that the windows hold in real time (what the chain or the Relay records).
    private static func payments(_ db: PostgresConnection, _ budget: Budget) throws -> [(at: Date, amount: BigUInt)] {
        try db.query("""
            SELECT at, amount_wei::text AS amount FROM crynux.payments_since(clock_timestamp() - make_interval(secs => $1))
            WHERE $2::text IS NULL OR wallet_address = $2 ORDER BY at
            """, [Double(budget.window), budget.wallet?.bytes.hex]).map {
            (try $0.get("at"), BigUInt(try $0.get("amount", as: String.self)) ?? 0)
        }
    }
}

/// An amount of CNX for people (every profile's fees are CNX with 18 decimals), from wei.
public func cnx(_ wei: BigUInt) -> String {
    let unit = BigUInt(10).power(18)
    let (whole, rest) = wei.quotientAndRemainder(dividingBy: unit)
    guard rest > 0 else { return "\(whole) CNX" }
    var fraction = String(rest)
    fraction = String(repeating: "0", count: 18 - fraction.count) + fraction
    while fraction.hasSuffix("0") { fraction.removeLast() }
    return "\(whole).\(fraction) CNX"
}
