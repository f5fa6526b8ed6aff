/// The period a budget counts spend over (`budget.period`), in UTC.
public enum BudgetPeriod: String, CaseIterable, Sendable, Hashable {
    /// The calendar day.
    case day = "1d"
    /// The week from Monday 00:00.
    case week = "7d"
    /// Fixed 30-day periods counted from 1970-01-01.
    case thirtyDays = "30d"
    /// The calendar month.
    case month = "1mo"
    /// Since the first request.
    case total

    static let dayMillis: UInt64 = 86_400_000

    /// The period holding `nowMillis`: `[start, end)`, whole UTC days; `total` is `[0, .max)`.
    public func window(containing nowMillis: UInt64) -> (start: UInt64, end: UInt64) {
        let day = Self.dayMillis
        switch self {
        case .day:
            let start = nowMillis / day * day
            return (start, start + day)
        case .week:
            // 1970-01-01 was a Thursday; the first Monday was 4 days later.
            let offset = 4 * day
            let week = 7 * day
            let start = nowMillis < offset ? 0 : (nowMillis - offset) / week * week + offset
            return (start, nowMillis < offset ? offset : start + week)
        case .thirtyDays:
            let span = 30 * day
            let start = nowMillis / span * span
            return (start, start + span)
        case .month:
            let days = Int64(nowMillis / day)
            let (year, month, _) = Self.civil(days: days)
            let start = Self.days(year: year, month: month, day: 1)
            let next =
                month == 12
                ? Self.days(year: year + 1, month: 1, day: 1) : Self.days(year: year, month: month + 1, day: 1)
            return (UInt64(start) * day, UInt64(next) * day)
        case .total:
            return (0, .max)
        }
    }

    /// Year, month and day of a count of days since 1970-01-01 (proleptic Gregorian).
    static func civil(days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    /// Days since 1970-01-01 of a date (proleptic Gregorian).
    static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = month > 2 ? month - 3 : month + 9
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}

/// A budget: at most `maxMicros` micro-USD of priced spend per period, for one account.
public struct BudgetLimit: Sendable, Hashable {
    public var maxMicros: UInt64
    public var period: BudgetPeriod

    public init(maxMicros: UInt64, period: BudgetPeriod) {
        self.maxMicros = maxMicros
        self.period = period
    }
}
