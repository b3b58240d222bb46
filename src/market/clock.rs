//! Market time: the simulated exchange's calendar (NYSE trading days) and its sessions.
//!
//! Everything here is pure arithmetic on [`MarketMs`] (epoch milliseconds, UTC): no tokio, no
//! I/O, and no wall clock except where a function takes `now` as an argument. US Eastern time
//! comes from the tz database (`chrono_tz::America::New_York`), so daylight-saving time follows
//! the historical US rules and today's rules for future years.
//!
//! Sessions on a trading day, US Eastern: pre-market 04:00-09:30, regular 09:30-16:00,
//! post-market 16:00-20:00, closed otherwise. Weekends and holidays are closed all day.
//!
//! Holidays are computed by rule for any year, not looked up in a table:
//! - New Year's Day, January 1. On a Sunday it is observed on Monday January 2; on a Saturday
//!   it is *not* observed on Friday December 31, because NYSE keeps the last trading day of
//!   the year open.
//! - Martin Luther King Jr. Day, the third Monday of January, from 1998 (when NYSE first
//!   closed for it).
//! - Washington's Birthday, the third Monday of February.
//! - Good Friday, two days before Western (Gregorian) Easter.
//! - Memorial Day, the last Monday of May.
//! - Juneteenth, June 19, from 2022 (NYSE stayed open in 2021).
//! - Independence Day, July 4.
//! - Labor Day, the first Monday of September.
//! - Thanksgiving, the fourth Thursday of November.
//! - Christmas, December 25.
//!
//! Apart from New Year's Day, a holiday on a Saturday is observed on the Friday before and one on
//! a Sunday on the Monday after.
//!
//! Not modelled: one-off closures (national days of mourning, September 11-14 2001, Hurricane
//! Sandy in 2012) and the early 13:00 closes around Independence Day, Thanksgiving and
//! Christmas; on those days the simulated market keeps its usual hours.
//!
//! `--start` accepts only years 1990..=2200; the rules above are what NYSE observed or has
//! announced over that span, and the functions here work for any year chrono can represent.

use std::ops::RangeInclusive;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Weekday};
use chrono_tz::America::New_York;

/// Market time: milliseconds since the Unix epoch (UTC), the unit of `market_ts` on the wire.
pub type MarketMs = i64;

/// One minute in market milliseconds.
pub const MINUTE_MS: MarketMs = 60_000;

/// One hour in market milliseconds.
pub const HOUR_MS: MarketMs = 3_600_000;

/// Length of the regular session 09:30-16:00, ms.
pub const REGULAR_SESSION_MS: MarketMs = 23_400_000;

/// Years `--start` may name: enough history and future for any simulation, while keeping far
/// away from the edges of chrono's calendar.
const SUPPORTED_YEARS: RangeInclusive<i32> = 1990..=2200;

/// Where a market instant falls in the trading day.
///
/// Serialised in lower case (`"pre"`, `"open"`, `"post"`, `"closed"`), the form used on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Pre-market, 04:00-09:30 ET on a trading day.
    Pre,
    /// Regular session, 09:30-16:00 ET on a trading day.
    Open,
    /// Post-market, 16:00-20:00 ET on a trading day.
    Post,
    /// 20:00-04:00 ET, and all day on weekends and holidays.
    Closed,
}

// === impl SessionState ===

impl SessionState {
    /// The wire name, the same text serde writes, for code that builds frames by hand.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Pre => "pre",
            SessionState::Open => "open",
            SessionState::Post => "post",
            SessionState::Closed => "closed",
        }
    }
}

/// NYSE full-day closures observed in `year` (sorted).
///
/// Every observed date falls inside `year`: a Saturday New Year's Day is dropped rather than
/// moved to December 31 of the year before. See the module doc for the rules.
///
/// # Panics
///
/// If `year` is outside chrono's calendar (beyond about ±262,000).
pub fn holidays(year: i32) -> Vec<NaiveDate> {
    let mut days: Vec<NaiveDate> = holiday_dates(year).into_iter().flatten().collect();
    days.sort_unstable();
    days
}

/// A weekday that is not an NYSE holiday.
///
/// This is the only test of "is the exchange open today"; it allocates nothing, so loops
/// over dates can call it freely.
pub fn is_trading_day(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
        && !holiday_dates(date.year()).contains(&Some(date))
}

/// The US Eastern calendar date of a market instant.
///
/// Trading days are Eastern dates, so 01:00 UTC on a Saturday still belongs to Friday.
///
/// # Panics
///
/// If `ms` is beyond chrono's range (about ±262,000 years from 1970).
pub fn et_date_of(ms: MarketMs) -> NaiveDate {
    DateTime::from_timestamp_millis(ms)
        .expect("market instant within chrono's range")
        .with_timezone(&New_York)
        .date_naive()
}

/// Epoch ms of `date` at `hour:minute` US Eastern (DST handled; these hours are never
/// ambiguous/nonexistent).
///
/// The session hours (04:00, 09:30, 16:00, 20:00) never fall in a DST change, which happens at
/// 02:00. For other times: an ambiguous time (the repeated hour in autumn) gives the earlier
/// instant, and a nonexistent time (the skipped hour in spring) is read with the offset in force
/// before the jump, so 02:30 becomes 03:30 daylight time.
///
/// # Panics
///
/// If `hour > 23` or `minute > 59`, or if `date` is at the very edge of chrono's calendar.
pub fn et_time(date: NaiveDate, hour: u32, minute: u32) -> MarketMs {
    let local = date
        .and_hms_opt(hour, minute, 0)
        .expect("hour in 0..=23 and minute in 0..=59");
    match New_York.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.timestamp_millis(),
        LocalResult::None => {
            // A spring-forward gap lasts one hour; an hour earlier the old offset applies.
            let before = local - Duration::hours(1);
            let t = New_York
                .from_local_datetime(&before)
                .earliest()
                .expect("the hour before a DST gap exists");
            t.timestamp_millis() + HOUR_MS
        }
    }
}

/// One trading day's session boundaries, as market instants.
///
/// Built once per day so the simulator compares integers instead of converting time zones on
/// every tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradingDay {
    /// The US Eastern date of this trading day.
    pub date: NaiveDate,
    /// 04:00 ET: pre-market starts.
    pub pre_open: MarketMs,
    /// 09:30 ET: the regular session opens.
    pub open: MarketMs,
    /// 16:00 ET: the regular session closes.
    pub close: MarketMs,
    /// 20:00 ET: post-market ends and the market is closed until the next day's `pre_open`.
    pub post_close: MarketMs,
}

// === impl TradingDay ===

impl TradingDay {
    /// The sessions of `date`, or `None` when it is a weekend day or a holiday.
    pub fn of(date: NaiveDate) -> Option<TradingDay> {
        is_trading_day(date).then(|| TradingDay {
            date,
            pre_open: et_time(date, 4, 0),
            open: et_time(date, 9, 30),
            close: et_time(date, 16, 0),
            post_close: et_time(date, 20, 0),
        })
    }

    /// The next trading day, skipping weekends and holidays.
    ///
    /// # Panics
    ///
    /// At the end of chrono's calendar (year 262,142 or so).
    pub fn next(&self) -> TradingDay {
        first_trading_day(self.date, |d| d.succ_opt())
    }

    /// The previous trading day, skipping weekends and holidays.
    ///
    /// # Panics
    ///
    /// At the start of chrono's calendar (year -262,143 or so).
    pub fn prev(&self) -> TradingDay {
        first_trading_day(self.date, |d| d.pred_opt())
    }

    /// The trading day that `ms` is in or waiting for: the day whose post_close > ms with the
    /// earliest date (so at 21:00 on a Friday it is next Monday's, or Tuesday's if Monday is a
    /// holiday).
    ///
    /// The simulator uses it to know which day's sessions to run next after any instant.
    ///
    /// # Panics
    ///
    /// If `ms` is beyond chrono's range (see [`et_date_of`]).
    pub fn current_or_next(ms: MarketMs) -> TradingDay {
        let date = et_date_of(ms);
        // Every earlier date's post_close (20:00 that day) is before any instant of `date`.
        match TradingDay::of(date) {
            Some(day) if day.post_close > ms => day,
            _ => first_trading_day(date, |d| d.succ_opt()),
        }
    }

    /// The session state at `ms`, relative to this day only: `Closed` outside
    /// `[pre_open, post_close)`, even if `ms` is inside another trading day.
    pub fn state_at(&self, ms: MarketMs) -> SessionState {
        if ms < self.pre_open || ms >= self.post_close {
            SessionState::Closed
        } else if ms < self.open {
            SessionState::Pre
        } else if ms < self.close {
            SessionState::Open
        } else {
            SessionState::Post
        }
    }
}

/// Session state at a market instant (Closed on weekends/holidays and 20:00-04:00).
///
/// # Panics
///
/// If `ms` is beyond chrono's range (see [`et_date_of`]).
pub fn session_state(ms: MarketMs) -> SessionState {
    TradingDay::of(et_date_of(ms)).map_or(SessionState::Closed, |day| day.state_at(ms))
}

/// Next regular-session open (09:30 ET) strictly after `ms`.
///
/// At exactly 09:30 it is the next trading day's open, so a caller that sleeps until the result
/// always moves forward.
///
/// # Panics
///
/// If `ms` is beyond chrono's range (see [`et_date_of`]).
pub fn next_open(ms: MarketMs) -> MarketMs {
    // Earlier trading days end before `ms`; a later day's open is after this day's post_close.
    let day = TradingDay::current_or_next(ms);
    if day.open > ms {
        day.open
    } else {
        day.next().open
    }
}

/// Next regular-session close (16:00 ET) strictly after `ms`.
///
/// At exactly 16:00 it is the next trading day's close, for the same reason as [`next_open`].
///
/// # Panics
///
/// If `ms` is beyond chrono's range (see [`et_date_of`]).
pub fn next_close(ms: MarketMs) -> MarketMs {
    let day = TradingDay::current_or_next(ms);
    if day.close > ms {
        day.close
    } else {
        day.next().close
    }
}

/// Why a `--start` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The text is neither form `--start` accepts.
    #[error("--start '{input}' is neither an RFC 3339 date-time nor a date (YYYY-MM-DD)")]
    Unparseable { input: String },
    /// A bare date names a session to open, so it must have one.
    #[error("--start {date} is not a trading day (NYSE holiday or weekend)")]
    NotATradingDay { date: NaiveDate },
    /// The calendar is only claimed to be right for 1990..=2200.
    #[error(
        "--start {input} is in year {year}; only years {first}..={last} are supported",
        first = SUPPORTED_YEARS.start(),
        last = SUPPORTED_YEARS.end()
    )]
    YearOutOfRange { input: String, year: i32 },
}

/// Parses `--start`: an RFC 3339 date-time (any offset; any instant is accepted as is, even
/// inside closed time) or a date YYYY-MM-DD, meaning 09:30 ET of that date, which must be a
/// trading day.
///
/// A date-time is taken literally so a run can start just before the open or in the middle of
/// a weekend; a date is a shorthand for "that day's opening bell".
///
/// # Errors
///
/// [`ClockError::Unparseable`] for any other text (including impossible dates such as
/// `2024-02-30`), [`ClockError::YearOutOfRange`] when the year as written is outside
/// 1990..=2200, and [`ClockError::NotATradingDay`] for a date on a weekend or holiday.
pub fn parse_start(s: &str) -> Result<MarketMs, ClockError> {
    let check_year = |year: i32| {
        if SUPPORTED_YEARS.contains(&year) {
            Ok(())
        } else {
            Err(ClockError::YearOutOfRange {
                input: s.to_owned(),
                year,
            })
        }
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        check_year(t.year())?;
        return Ok(t.timestamp_millis());
    }
    let date = parse_plain_date(s).ok_or_else(|| ClockError::Unparseable {
        input: s.to_owned(),
    })?;
    check_year(date.year())?;
    TradingDay::of(date)
        .map(|day| day.open)
        .ok_or(ClockError::NotATradingDay { date })
}

/// The default start: 09:30 ET of the most recent trading day whose 09:30 is at or before
/// `now_ms` (wall clock, epoch ms), so a server started at any hour shows an open market.
///
/// # Panics
///
/// If `now_ms` is beyond chrono's range (see [`et_date_of`]).
pub fn default_start(now_ms: i64) -> MarketMs {
    let mut date = et_date_of(now_ms);
    loop {
        if let Some(day) = TradingDay::of(date) {
            if day.open <= now_ms {
                return day.open;
            }
        }
        date = date
            .pred_opt()
            .expect("a trading day precedes any date chrono can represent");
    }
}

/// The first trading day reached by stepping from `from` (exclusive) with `step`.
fn first_trading_day(from: NaiveDate, step: impl Fn(NaiveDate) -> Option<NaiveDate>) -> TradingDay {
    let mut date = from;
    loop {
        date = step(date).expect("stepping stays inside chrono's calendar");
        if let Some(day) = TradingDay::of(date) {
            return day;
        }
    }
}

/// Exactly `YYYY-MM-DD`: chrono's own parser also takes one-digit months and signed years,
/// which would make `--start` looser than its documentation.
fn parse_plain_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shape_ok {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// The observed holidays of `year`, unsorted, `None` where a rule does not apply that year.
///
/// A fixed-size array so [`is_trading_day`] allocates nothing.
fn holiday_dates(year: i32) -> [Option<NaiveDate>; 10] {
    let ymd = |month, day| {
        NaiveDate::from_ymd_opt(year, month, day).expect("year inside chrono's calendar")
    };
    let nth = |month, weekday, n| {
        NaiveDate::from_weekday_of_month_opt(year, month, weekday, n)
            .expect("every month has a fourth weekday of each kind")
    };

    let new_year = ymd(1, 1);
    let new_year = match new_year.weekday() {
        Weekday::Sat => None,
        Weekday::Sun => Some(ymd(1, 2)),
        _ => Some(new_year),
    };
    let may_31 = ymd(5, 31);
    let memorial_day = may_31 - Duration::days(i64::from(may_31.weekday().num_days_from_monday()));

    [
        new_year,
        (year >= 1998).then(|| nth(1, Weekday::Mon, 3)),
        Some(nth(2, Weekday::Mon, 3)),
        Some(easter(year) - Duration::days(2)),
        Some(memorial_day),
        (year >= 2022).then(|| observed(ymd(6, 19))),
        Some(observed(ymd(7, 4))),
        Some(nth(9, Weekday::Mon, 1)),
        Some(nth(11, Weekday::Thu, 4)),
        Some(observed(ymd(12, 25))),
    ]
}

/// A fixed-date holiday moved off the weekend: Saturday to Friday, Sunday to Monday.
fn observed(date: NaiveDate) -> NaiveDate {
    match date.weekday() {
        Weekday::Sat => date - Duration::days(1),
        Weekday::Sun => date + Duration::days(1),
        _ => date,
    }
}

/// Western Easter Sunday of `year`, by the anonymous Gregorian algorithm (Meeus/Jones/Butcher).
fn easter(year: i32) -> NaiveDate {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c.div_euclid(4);
    let k = c.rem_euclid(4);
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let month = (h + l - 7 * m + 114).div_euclid(31);
    let day = (h + l - 7 * m + 114).rem_euclid(31) + 1;
    // The algorithm yields March 22..=April 25, so both fit in u32.
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).expect("easter is a valid date")
}

/// Where market time stood at one instant, and how it moves from there: what a reader outside
/// the simulator (the `/clock` route, heartbeats) needs to tell market time between two
/// publishes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockAnchor {
    /// Market time at the anchor.
    pub market_ms: MarketMs,
    /// Market seconds per wall second.
    pub speed: f64,
    /// The next session change: market time does not run past it before the simulator has
    /// handled it (it may jump over closed time there).
    pub until_ms: MarketMs,
}

impl ClockAnchor {
    /// Market time `elapsed` of wall time after the anchor.
    pub fn after(&self, elapsed: std::time::Duration) -> MarketMs {
        let ahead = (elapsed.as_secs_f64() * self.speed * 1000.0).min(i64::MAX as f64 / 4.0);
        (self.market_ms + ahead as MarketMs).min(self.until_ms.max(self.market_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchor_runs_at_speed_and_stops_at_the_next_session_change() {
        let anchor = ClockAnchor {
            market_ms: 1_000_000,
            speed: 60.0,
            until_ms: 1_000_000 + 90_000,
        };
        let secs = std::time::Duration::from_secs;
        assert_eq!(anchor.after(secs(0)), 1_000_000);
        assert_eq!(anchor.after(secs(1)), 1_060_000);
        assert_eq!(anchor.after(secs(10)), 1_090_000);
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn dates(y: i32, md: &[(u32, u32)]) -> Vec<NaiveDate> {
        md.iter().map(|&(m, d)| date(y, m, d)).collect()
    }

    /// Epoch ms of an Eastern wall-clock time.
    fn et(y: i32, m: u32, d: u32, hour: u32, minute: u32) -> MarketMs {
        et_time(date(y, m, d), hour, minute)
    }

    /// Epoch ms of a UTC wall-clock time.
    fn utc(y: i32, m: u32, d: u32, hour: u32, minute: u32) -> MarketMs {
        date(y, m, d)
            .and_hms_opt(hour, minute, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    #[test]
    fn holidays_2024_match_the_nyse_calendar() {
        let expected = [
            (1, 1),
            (1, 15),
            (2, 19),
            (3, 29),
            (5, 27),
            (6, 19),
            (7, 4),
            (9, 2),
            (11, 28),
            (12, 25),
        ];
        assert_eq!(holidays(2024), dates(2024, &expected));
    }

    #[test]
    fn holidays_2025_match_the_nyse_calendar() {
        let expected = [
            (1, 1),
            (1, 20),
            (2, 17),
            (4, 18),
            (5, 26),
            (6, 19),
            (7, 4),
            (9, 1),
            (11, 27),
            (12, 25),
        ];
        assert_eq!(holidays(2025), dates(2025, &expected));
    }

    #[test]
    fn holidays_2026_match_the_nyse_calendar() {
        let expected = [
            (1, 1),
            (1, 19),
            (2, 16),
            (4, 3),
            (5, 25),
            (6, 19),
            (7, 3),
            (9, 7),
            (11, 26),
            (12, 25),
        ];
        assert_eq!(holidays(2026), dates(2026, &expected));
    }

    #[test]
    fn new_year_on_saturday_is_not_observed_on_the_friday_before() {
        // 2022-01-01 is a Saturday.
        assert!(is_trading_day(date(2021, 12, 31)));
        assert!(!holidays(2021).contains(&date(2021, 12, 31)));
        assert_eq!(holidays(2022)[0], date(2022, 1, 17));
        assert_eq!(holidays(2022).len(), 9);
    }

    #[test]
    fn new_year_on_sunday_is_observed_on_monday() {
        // 2023-01-01 is a Sunday.
        assert!(!is_trading_day(date(2023, 1, 2)));
        assert_eq!(holidays(2023)[0], date(2023, 1, 2));
    }

    #[test]
    fn independence_day_on_sunday_is_observed_on_monday() {
        assert!(holidays(2021).contains(&date(2021, 7, 5)));
        assert!(!is_trading_day(date(2021, 7, 5)));
        assert!(is_trading_day(date(2021, 7, 2)));
    }

    #[test]
    fn christmas_moves_off_the_weekend() {
        // 2021-12-25 is a Saturday, 2022-12-25 a Sunday.
        assert!(!is_trading_day(date(2021, 12, 24)));
        assert!(!is_trading_day(date(2022, 12, 26)));
        assert!(is_trading_day(date(2022, 12, 23)));
    }

    #[test]
    fn juneteenth_is_a_holiday_only_from_2022() {
        // 2021-06-19 is a Saturday; NYSE stayed open on Friday the 18th.
        assert!(is_trading_day(date(2021, 6, 18)));
        assert!(!is_trading_day(date(2022, 6, 20)));
        // 2027-06-19 is a Saturday.
        assert!(!is_trading_day(date(2027, 6, 18)));
    }

    #[test]
    fn martin_luther_king_day_is_a_holiday_only_from_1998() {
        assert!(is_trading_day(date(1997, 1, 20)));
        assert!(!is_trading_day(date(1998, 1, 19)));
    }

    #[test]
    fn easter_matches_known_dates() {
        assert_eq!(easter(1990), date(1990, 4, 15));
        assert_eq!(easter(2000), date(2000, 4, 23));
        assert_eq!(easter(2008), date(2008, 3, 23));
        assert_eq!(easter(2011), date(2011, 4, 24));
        assert_eq!(easter(2038), date(2038, 4, 25));
        assert_eq!(easter(2200), date(2200, 4, 6));
    }

    #[test]
    fn holidays_are_sorted_distinct_weekdays_inside_their_year() {
        for year in SUPPORTED_YEARS {
            let days = holidays(year);
            assert!(days.windows(2).all(|w| w[0] < w[1]), "{year}: {days:?}");
            for day in &days {
                assert_eq!(day.year(), year);
                assert!(!matches!(day.weekday(), Weekday::Sat | Weekday::Sun));
                assert!(!is_trading_day(*day));
            }
            let rules = 8 + usize::from(year >= 1998) + usize::from(year >= 2022);
            let saturday_new_year = date(year, 1, 1).weekday() == Weekday::Sat;
            assert_eq!(days.len(), rules - usize::from(saturday_new_year), "{year}");
        }
    }

    #[test]
    fn weekends_are_not_trading_days() {
        assert!(!is_trading_day(date(2024, 3, 9)));
        assert!(!is_trading_day(date(2024, 3, 10)));
        assert!(is_trading_day(date(2024, 3, 11)));
    }

    #[test]
    fn open_follows_daylight_saving_time() {
        assert_eq!(
            TradingDay::of(date(2024, 3, 8)).unwrap().open,
            utc(2024, 3, 8, 14, 30)
        );
        assert_eq!(
            TradingDay::of(date(2024, 3, 11)).unwrap().open,
            utc(2024, 3, 11, 13, 30)
        );
        assert_eq!(
            TradingDay::of(date(2024, 11, 1)).unwrap().open,
            utc(2024, 11, 1, 13, 30)
        );
        assert_eq!(
            TradingDay::of(date(2024, 11, 4)).unwrap().open,
            utc(2024, 11, 4, 14, 30)
        );
    }

    #[test]
    fn trading_day_boundaries_are_the_session_hours() {
        let day = TradingDay::of(date(2024, 7, 5)).unwrap();
        assert_eq!(day.pre_open, utc(2024, 7, 5, 8, 0));
        assert_eq!(day.open, utc(2024, 7, 5, 13, 30));
        assert_eq!(day.close, utc(2024, 7, 5, 20, 0));
        assert_eq!(day.post_close, utc(2024, 7, 6, 0, 0));
        assert_eq!(day.close - day.open, REGULAR_SESSION_MS);
        assert_eq!(day.post_close - day.pre_open, 16 * HOUR_MS);
    }

    #[test]
    fn et_time_resolves_dst_changes() {
        // 02:30 does not exist on 2024-03-10; it is read as 02:30 EST = 03:30 EDT.
        assert_eq!(et(2024, 3, 10, 2, 30), utc(2024, 3, 10, 7, 30));
        // 01:30 happens twice on 2024-11-03; the first (EDT) wins.
        assert_eq!(et(2024, 11, 3, 1, 30), utc(2024, 11, 3, 5, 30));
    }

    #[test]
    fn et_date_of_uses_the_eastern_date() {
        assert_eq!(et_date_of(utc(2024, 7, 5, 3, 0)), date(2024, 7, 4));
        assert_eq!(et_date_of(utc(2024, 7, 5, 4, 0)), date(2024, 7, 5));
        assert_eq!(et_date_of(utc(2024, 1, 6, 4, 59)), date(2024, 1, 5));
        assert_eq!(et_date_of(utc(2024, 1, 6, 5, 0)), date(2024, 1, 6));
    }

    #[test]
    fn session_state_follows_the_trading_day() {
        // Friday 2024-03-08.
        let at = |h, m| et(2024, 3, 8, h, m);
        assert_eq!(session_state(at(3, 59)), SessionState::Closed);
        assert_eq!(session_state(at(4, 0)), SessionState::Pre);
        assert_eq!(session_state(at(9, 30) - 1), SessionState::Pre);
        assert_eq!(session_state(at(9, 30)), SessionState::Open);
        assert_eq!(session_state(at(16, 0) - 1), SessionState::Open);
        assert_eq!(session_state(at(16, 0)), SessionState::Post);
        assert_eq!(session_state(at(19, 59)), SessionState::Post);
        assert_eq!(session_state(at(20, 0)), SessionState::Closed);
        assert_eq!(session_state(at(23, 59)), SessionState::Closed);
    }

    #[test]
    fn session_state_is_closed_all_day_on_weekends_and_holidays() {
        for (y, m, d) in [(2024, 3, 9), (2024, 3, 10), (2024, 7, 4)] {
            for hour in [0, 4, 9, 10, 12, 16, 19, 23] {
                assert_eq!(session_state(et(y, m, d, hour, 0)), SessionState::Closed);
            }
        }
    }

    #[test]
    fn state_at_is_relative_to_one_day() {
        let friday = TradingDay::of(date(2024, 3, 8)).unwrap();
        let monday = friday.next();
        assert_eq!(friday.state_at(monday.open), SessionState::Closed);
        assert_eq!(monday.state_at(monday.open), SessionState::Open);
        assert_eq!(friday.state_at(friday.post_close - 1), SessionState::Post);
    }

    #[test]
    fn trading_day_of_refuses_weekends_and_holidays() {
        assert_eq!(TradingDay::of(date(2024, 3, 9)), None);
        assert_eq!(TradingDay::of(date(2024, 7, 4)), None);
        assert!(TradingDay::of(date(2024, 7, 5)).is_some());
    }

    #[test]
    fn next_and_prev_skip_weekends_and_holidays() {
        let wednesday = TradingDay::of(date(2024, 7, 3)).unwrap();
        assert_eq!(wednesday.next().date, date(2024, 7, 5));
        assert_eq!(wednesday.next().prev(), wednesday);
        let friday = TradingDay::of(date(2024, 1, 12)).unwrap();
        assert_eq!(friday.next().date, date(2024, 1, 16));
        assert_eq!(friday.next().prev().date, date(2024, 1, 12));
    }

    #[test]
    fn current_or_next_after_friday_post_market_is_monday() {
        let day = TradingDay::current_or_next(et(2024, 3, 8, 21, 0));
        assert_eq!(day.date, date(2024, 3, 11));
        let day = TradingDay::current_or_next(et(2024, 3, 9, 12, 0));
        assert_eq!(day.date, date(2024, 3, 11));
    }

    #[test]
    fn current_or_next_skips_a_monday_holiday() {
        // Monday 2024-01-15 is Martin Luther King Jr. Day.
        let day = TradingDay::current_or_next(et(2024, 1, 12, 21, 0));
        assert_eq!(day.date, date(2024, 1, 16));
    }

    #[test]
    fn current_or_next_keeps_today_until_post_close() {
        assert_eq!(
            TradingDay::current_or_next(et(2024, 3, 8, 0, 0)).date,
            date(2024, 3, 8)
        );
        let last_ms = et(2024, 3, 8, 20, 0) - 1;
        assert_eq!(TradingDay::current_or_next(last_ms).date, date(2024, 3, 8));
        let post_close = et(2024, 3, 8, 20, 0);
        assert_eq!(
            TradingDay::current_or_next(post_close).date,
            date(2024, 3, 11)
        );
    }

    #[test]
    fn next_open_and_close_cross_the_weekend() {
        let friday_evening = et(2024, 3, 8, 17, 0);
        assert_eq!(next_open(friday_evening), utc(2024, 3, 11, 13, 30));
        assert_eq!(next_close(friday_evening), utc(2024, 3, 11, 20, 0));
        let friday_noon = et(2024, 3, 8, 12, 0);
        assert_eq!(next_open(friday_noon), et(2024, 3, 11, 9, 30));
        assert_eq!(next_close(friday_noon), et(2024, 3, 8, 16, 0));
        let saturday = et(2024, 3, 9, 12, 0);
        assert_eq!(next_open(saturday), et(2024, 3, 11, 9, 30));
    }

    #[test]
    fn next_open_and_close_are_strictly_after() {
        let open = et(2024, 3, 8, 9, 30);
        assert_eq!(next_open(open), et(2024, 3, 11, 9, 30));
        assert_eq!(next_open(open - 1), open);
        let close = et(2024, 3, 8, 16, 0);
        assert_eq!(next_close(close), et(2024, 3, 11, 16, 0));
        assert_eq!(next_close(close - 1), close);
    }

    #[test]
    fn parse_start_takes_rfc3339_instants_as_is() {
        let open = utc(2024, 3, 8, 14, 30);
        assert_eq!(parse_start("2024-03-08T14:30:00Z"), Ok(open));
        assert_eq!(parse_start("2024-03-08T09:30:00-05:00"), Ok(open));
        assert_eq!(parse_start("2024-03-08T14:30:00.250Z"), Ok(open + 250));
        // Closed time is accepted: Saturday noon and a holiday.
        assert_eq!(
            parse_start("2024-03-09T12:00:00Z"),
            Ok(utc(2024, 3, 9, 12, 0))
        );
        assert_eq!(
            parse_start("2024-07-04T15:00:00Z"),
            Ok(utc(2024, 7, 4, 15, 0))
        );
    }

    #[test]
    fn parse_start_takes_a_date_as_its_open() {
        assert_eq!(parse_start("2024-03-08"), Ok(utc(2024, 3, 8, 14, 30)));
        assert_eq!(parse_start("2024-07-05"), Ok(utc(2024, 7, 5, 13, 30)));
        assert_eq!(parse_start("1990-01-02"), Ok(et(1990, 1, 2, 9, 30)));
        assert_eq!(parse_start("2200-12-31"), Ok(et(2200, 12, 31, 9, 30)));
    }

    #[test]
    fn parse_start_refuses_dates_without_a_session() {
        let err = parse_start("2024-07-04").unwrap_err();
        assert_eq!(
            err,
            ClockError::NotATradingDay {
                date: date(2024, 7, 4)
            }
        );
        assert_eq!(
            err.to_string(),
            "--start 2024-07-04 is not a trading day (NYSE holiday or weekend)"
        );
        assert_eq!(
            parse_start("2024-03-09").unwrap_err().to_string(),
            "--start 2024-03-09 is not a trading day (NYSE holiday or weekend)"
        );
    }

    #[test]
    fn parse_start_refuses_text_that_is_not_a_date() {
        for input in [
            "xyz",
            "",
            "2024-7-4",
            "2024-02-30",
            "+2024-03-08",
            "2024-03-08 ",
            "2024-03-08T14:30",
        ] {
            assert_eq!(
                parse_start(input).unwrap_err().to_string(),
                format!(
                    "--start '{input}' is neither an RFC 3339 date-time nor a date (YYYY-MM-DD)"
                )
            );
        }
    }

    #[test]
    fn parse_start_refuses_years_outside_1990_to_2200() {
        assert_eq!(
            parse_start("1989-12-29").unwrap_err().to_string(),
            "--start 1989-12-29 is in year 1989; only years 1990..=2200 are supported"
        );
        assert_eq!(
            parse_start("2201-01-02T14:30:00Z").unwrap_err(),
            ClockError::YearOutOfRange {
                input: "2201-01-02T14:30:00Z".to_owned(),
                year: 2201
            }
        );
        // A year out of range is reported before the calendar is consulted.
        assert!(matches!(
            parse_start("1989-12-30"),
            Err(ClockError::YearOutOfRange { year: 1989, .. })
        ));
    }

    #[test]
    fn default_start_on_sunday_is_friday_open() {
        assert_eq!(default_start(et(2024, 3, 10, 12, 0)), et(2024, 3, 8, 9, 30));
    }

    #[test]
    fn default_start_before_the_open_is_the_previous_trading_day() {
        assert_eq!(default_start(et(2024, 3, 12, 8, 0)), et(2024, 3, 11, 9, 30));
        // Tuesday after Martin Luther King Jr. Day goes back to Friday.
        assert_eq!(default_start(et(2024, 1, 16, 8, 0)), et(2024, 1, 12, 9, 30));
    }

    #[test]
    fn default_start_after_the_open_is_today() {
        assert_eq!(
            default_start(et(2024, 3, 12, 10, 0)),
            et(2024, 3, 12, 9, 30)
        );
        assert_eq!(
            default_start(et(2024, 3, 12, 9, 30)),
            et(2024, 3, 12, 9, 30)
        );
        assert_eq!(
            default_start(et(2024, 3, 12, 23, 0)),
            et(2024, 3, 12, 9, 30)
        );
    }

    #[test]
    fn default_start_is_always_an_open_market() {
        let mut now = utc(2024, 1, 1, 0, 0);
        while now < utc(2024, 12, 31, 0, 0) {
            let start = default_start(now);
            assert!(start <= now);
            assert_eq!(session_state(start), SessionState::Open);
            now += 7 * HOUR_MS + 13 * MINUTE_MS;
        }
    }

    #[test]
    fn session_state_serialises_in_lower_case() {
        for state in [
            SessionState::Pre,
            SessionState::Open,
            SessionState::Post,
            SessionState::Closed,
        ] {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        assert_eq!(SessionState::Pre.as_str(), "pre");
        assert_eq!(SessionState::Closed.as_str(), "closed");
    }
}
