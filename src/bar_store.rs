//! Bar history for charts: what `GET /bars` answers from.
//!
//! The store follows the published events, not the simulator: trades build each symbol's open
//! minute, `bar` events close it. So any process that sees the events (one that runs the market,
//! or one that only follows a feed) keeps the same bars. One-minute bars are kept for the last
//! [`MINUTE_BARS_KEPT`] minutes of each symbol; 5m, 15m and 1h bars are aggregated from them on
//! request, exactly. Daily bars are kept for every finished day (generated history included)
//! plus the day in progress, aggregated from its minute bars as they close.

use std::collections::VecDeque;
use std::sync::RwLock;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::market::bars::{Bar, Interval, MinuteBar};
use crate::market::clock::MarketMs;
use crate::market::Event;

/// One-minute bars kept per symbol: four full trading days of 16 hours. At 100 symbols that
/// is at most about 40 MB; larger intervals need no storage of their own.
pub const MINUTE_BARS_KEPT: usize = 4 * 960;
/// Daily bars kept per symbol.
pub const DAY_BARS_KEPT: usize = 10_000;

/// A bar as `/bars` returns it: the still-open bar of a series is marked `partial`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChartBar {
    #[serde(flatten)]
    pub bar: Bar,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// Which bars a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarQuery {
    pub interval: Interval,
    /// The most recent `limit` bars of the range.
    pub limit: usize,
    /// Bars starting at or after this market time...
    pub start: Option<MarketMs>,
    /// ...and before this one.
    pub end: Option<MarketMs>,
}

#[derive(Debug, Default)]
struct SymbolBars {
    /// Finished one-minute bars, ascending.
    minutes: VecDeque<Bar>,
    /// The minute being built from trades.
    open: MinuteBar,
    /// Finished days, ascending.
    days: VecDeque<Bar>,
    /// The day in progress: its finished minutes so far.
    today: Option<Bar>,
}

impl SymbolBars {
    fn finish_minute(&mut self, bar: Bar) {
        let day = Interval::D1.start_of(bar.start);
        match &mut self.today {
            Some(today) if today.start == day => today.merge(&bar),
            _ => {
                if let Some(done) = self.today.take() {
                    push_bounded(&mut self.days, done, DAY_BARS_KEPT);
                }
                let mut today = bar.clone();
                today.start = day;
                self.today = Some(today);
            }
        }
        push_bounded(&mut self.minutes, bar, MINUTE_BARS_KEPT);
    }
}

fn push_bounded(bars: &mut VecDeque<Bar>, bar: Bar, max: usize) {
    if bars.len() == max {
        bars.pop_front();
    }
    bars.push_back(bar);
}

/// Every symbol's bars.
#[derive(Debug)]
pub struct BarStore {
    symbols: RwLock<Vec<SymbolBars>>,
}

impl BarStore {
    /// An empty store for `symbols` symbols.
    pub fn new(symbols: usize) -> BarStore {
        BarStore {
            symbols: RwLock::new((0..symbols).map(|_| SymbolBars::default()).collect()),
        }
    }

    /// Loads generated history of symbol `index`: finished minute bars and finished days, both
    /// ascending and older than anything recorded later.
    pub fn load_history(&self, index: usize, minutes: &[Bar], days: &[Bar]) {
        let mut symbols = self.write();
        let Some(s) = symbols.get_mut(index) else {
            return;
        };
        for day in days {
            push_bounded(&mut s.days, day.clone(), DAY_BARS_KEPT);
        }
        for minute in minutes {
            push_bounded(&mut s.minutes, minute.clone(), MINUTE_BARS_KEPT);
        }
    }

    /// Follows published events: trades extend the open minute, bars close it.
    pub fn record(&self, events: &[Event]) {
        let mut symbols = self.write();
        for event in events {
            match event {
                Event::Trade(i, t) => {
                    if let Some(s) = symbols.get_mut(*i as usize) {
                        s.open.add(t.header.market_ts, t.trade.price, t.trade.size);
                    }
                }
                Event::Bar(i, b) => {
                    if let Some(s) = symbols.get_mut(*i as usize) {
                        // The event is the authority; the trades seen only made it visible early.
                        s.open.finish();
                        s.finish_minute(b.bar.clone());
                    }
                }
                _ => {}
            }
        }
    }

    /// A trade of symbol `index`, as a node that follows a feed published elsewhere reads it
    /// from the event's JSON.
    pub fn record_trade(&self, index: usize, at: MarketMs, price: Decimal, size: u64) {
        if let Some(s) = self.write().get_mut(index) {
            s.open.add(at, price, size);
        }
    }

    /// A closed minute bar of symbol `index`, read from a `bar` event's JSON.
    pub fn record_bar(&self, index: usize, bar: Bar) {
        if let Some(s) = self.write().get_mut(index) {
            s.open.finish();
            s.finish_minute(bar);
        }
    }

    /// Bars of symbol `index` for `query`, ascending, as of market time `now`. The last is
    /// marked partial if its interval has not ended.
    pub fn bars(&self, index: usize, query: &BarQuery, now: MarketMs) -> Vec<ChartBar> {
        let symbols = self.read();
        let Some(s) = symbols.get(index) else {
            return Vec::new();
        };
        let open = s.open.current();
        let mut bars: Vec<Bar> = match query.interval {
            // Finished days, then today's finished minutes and the open one, merged by day.
            Interval::D1 => s
                .days
                .iter()
                .cloned()
                .chain(aggregate(s.today.iter().chain(open), Interval::D1))
                .collect(),
            interval => aggregate(s.minutes.iter().chain(open), interval),
        };
        bars.retain(|b| {
            query.start.is_none_or(|start| b.start >= start)
                && query.end.is_none_or(|end| b.start < end)
        });
        let skip = bars.len().saturating_sub(query.limit);
        let current = query.interval.start_of(now);
        bars.into_iter()
            .skip(skip)
            .map(|bar| ChartBar {
                partial: bar.start >= current,
                bar,
            })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<SymbolBars>> {
        // Bars are plain data updated in small steps; a panic mid-update leaves usable bars.
        self.symbols.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<SymbolBars>> {
        self.symbols.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Minute bars (ascending) merged into bars of `interval`.
fn aggregate<'a>(minutes: impl Iterator<Item = &'a Bar>, interval: Interval) -> Vec<Bar> {
    let mut out: Vec<Bar> = Vec::new();
    for minute in minutes {
        let start = interval.start_of(minute.start);
        match out.last_mut() {
            Some(last) if last.start == start => last.merge(minute),
            _ => {
                let mut bar = minute.clone();
                bar.start = start;
                out.push(bar);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::clock::{et_time, MINUTE_MS};
    use crate::market::events::{BarEvent, Header, TradeEvent};
    use crate::market::{Conditions, Symbol, Trade};
    use chrono::NaiveDate;
    use rust_decimal::Decimal;

    fn at(h: u32, m: u32) -> MarketMs {
        et_time(NaiveDate::from_ymd_opt(2024, 3, 4).unwrap(), h, m)
    }

    fn trade(seq: u64, ts: MarketMs, price: i64, size: u64) -> Event {
        Event::Trade(
            0,
            TradeEvent {
                symbol: "AAPL".parse::<Symbol>().unwrap(),
                header: Header {
                    seq,
                    ts: 0,
                    market_ts: ts,
                },
                trade: Trade {
                    price: Decimal::new(price, 2),
                    size,
                    conditions: Conditions::NONE,
                },
            },
        )
    }

    /// Trades every 20 s from 09:30 for `minutes` minutes, with bar events as the simulator
    /// sends them; the last minute is left open.
    fn feed(store: &BarStore, minutes: i64) -> Vec<Bar> {
        let mut seq = 0;
        let mut builder = MinuteBar::default();
        let mut finished = Vec::new();
        for n in 0..minutes * 3 {
            let ts = at(9, 30) + n * 20_000;
            let minute = Interval::M1.start_of(ts);
            if builder.current().is_some_and(|b| b.start != minute) {
                let bar = builder.finish().unwrap();
                seq += 1;
                store.record(&[Event::Bar(
                    0,
                    BarEvent {
                        symbol: "AAPL".parse().unwrap(),
                        header: Header {
                            seq,
                            ts: 0,
                            market_ts: minute,
                        },
                        interval: "1m",
                        bar: bar.clone(),
                    },
                )]);
                finished.push(bar);
            }
            seq += 1;
            let price = 10_000 + (n * 37 % 23) - 11;
            builder.add(ts, Decimal::new(price, 2), 100 + n as u64);
            store.record(&[trade(seq, ts, price, 100 + n as u64)]);
        }
        finished
    }

    fn query(interval: Interval) -> BarQuery {
        BarQuery {
            interval,
            limit: 10_000,
            start: None,
            end: None,
        }
    }

    #[test]
    fn minute_bars_end_with_the_open_one_marked_partial() {
        let store = BarStore::new(1);
        let finished = feed(&store, 10);
        let now = at(9, 39) + 45_000;
        let bars = store.bars(0, &query(Interval::M1), now);
        assert_eq!(bars.len(), 10);
        assert_eq!(
            bars[..9].iter().map(|b| b.bar.clone()).collect::<Vec<_>>(),
            finished
        );
        assert!(bars[..9].iter().all(|b| !b.partial));
        assert!(bars[9].partial);
        assert_eq!(bars[9].bar.start, at(9, 39));
        assert_eq!(bars[9].bar.trades, 3);
    }

    #[test]
    fn larger_intervals_aggregate_minutes_exactly() {
        let store = BarStore::new(1);
        feed(&store, 40);
        let now = at(10, 9) + 50_000;
        let minutes = store.bars(0, &query(Interval::M1), now);
        for interval in [Interval::M5, Interval::M15, Interval::H1, Interval::D1] {
            let bars = store.bars(0, &query(interval), now);
            for b in &bars {
                let inside: Vec<&Bar> = minutes
                    .iter()
                    .map(|m| &m.bar)
                    .filter(|m| interval.start_of(m.start) == b.bar.start)
                    .collect();
                assert_eq!(b.bar.open, inside[0].open, "{interval}");
                assert_eq!(b.bar.close, inside.last().unwrap().close);
                assert_eq!(b.bar.high, inside.iter().map(|m| m.high).max().unwrap());
                assert_eq!(b.bar.low, inside.iter().map(|m| m.low).min().unwrap());
                assert_eq!(b.bar.volume, inside.iter().map(|m| m.volume).sum::<u64>());
                assert_eq!(b.bar.trades, inside.iter().map(|m| m.trades).sum::<u64>());
            }
            assert!(bars.last().unwrap().partial, "{interval}");
            let total: u64 = bars.iter().map(|b| b.bar.volume).sum();
            assert_eq!(total, minutes.iter().map(|m| m.bar.volume).sum::<u64>());
        }
        assert_eq!(store.bars(0, &query(Interval::M15), now).len(), 3);
        assert_eq!(store.bars(0, &query(Interval::H1), now).len(), 2);
    }

    #[test]
    fn limit_start_and_end_select_the_range() {
        let store = BarStore::new(1);
        feed(&store, 30);
        let now = at(10, 0);
        let q = BarQuery {
            limit: 5,
            ..query(Interval::M1)
        };
        let bars = store.bars(0, &q, now);
        assert_eq!(bars.len(), 5);
        assert_eq!(bars[4].bar.start, at(9, 59));
        let q = BarQuery {
            start: Some(at(9, 40)),
            end: Some(at(9, 45)),
            ..query(Interval::M1)
        };
        let starts: Vec<MarketMs> = store.bars(0, &q, now).iter().map(|b| b.bar.start).collect();
        assert_eq!(
            starts,
            (0..5)
                .map(|i| at(9, 40) + i * MINUTE_MS)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn history_comes_first_and_days_roll_over() {
        let store = BarStore::new(1);
        let old_day = Bar::of_trade(at(0, 0) - 86_400_000 * 3, Decimal::new(9_000, 2), 10);
        let yesterday_minute = Bar::of_trade(at(15, 59) - 86_400_000, Decimal::new(9_900, 2), 10);
        let mut yesterday = yesterday_minute.clone();
        yesterday.start = at(0, 0) - 86_400_000;
        store.load_history(
            0,
            std::slice::from_ref(&yesterday_minute),
            &[old_day.clone(), yesterday],
        );
        feed(&store, 3);
        let days = store.bars(0, &query(Interval::D1), at(9, 33));
        assert_eq!(days.len(), 3);
        assert_eq!(days[0].bar, old_day);
        assert_eq!(days[2].bar.start, at(0, 0));
        assert!(days[2].partial && !days[1].partial);
        let minutes = store.bars(0, &query(Interval::M1), at(9, 33));
        assert_eq!(minutes[0].bar, yesterday_minute);
        assert_eq!(
            serde_json::to_value(&minutes[0]).unwrap()["partial"],
            serde_json::Value::Null,
            "only the open bar says partial"
        );
    }
}
