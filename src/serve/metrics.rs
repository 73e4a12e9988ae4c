//! `/metrics`: counters, a latency histogram and gauges in Prometheus's text format.

use super::core::Status;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds: from 50 µs to 1 s.
const BUCKETS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0,
];

#[derive(Default)]
pub struct Metrics {
    committed: AtomicU64,
    rejected: AtomicU64,
    /// Per bucket, the transactions at most that long (not cumulative; summed on output).
    buckets: [AtomicU64; BUCKETS.len()],
    over: AtomicU64,
    sum_nanos: AtomicU64,
    status: Mutex<Option<Status>>,
    /// Per source: reports committed, and input dropped as malformed.
    sources: Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
}

impl Metrics {
    /// Counts a transaction: committed or rejected, and how long the engine thread took.
    pub fn transaction(&self, took: Duration, committed: bool) {
        if committed {
            self.committed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        let seconds = took.as_secs_f64();
        match BUCKETS.iter().position(|bound| seconds <= *bound) {
            Some(bucket) => self.buckets[bucket].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Counts a source's report committed (`dropped` false) or input it dropped.
    pub fn source(&self, name: &str, dropped: bool) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let counts = sources.entry(name.to_string()).or_default();
        if dropped {
            counts.1 += 1;
        } else {
            counts.0 += 1;
        }
    }

    pub fn set_status(&self, status: Status) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
    }

    /// Everything, in Prometheus's text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let committed = self.committed.load(Ordering::Relaxed);
        let rejected = self.rejected.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP vigil_transactions_total Transactions, by outcome.\n# TYPE vigil_transactions_total counter"
        );
        let _ = writeln!(
            out,
            "vigil_transactions_total{{outcome=\"committed\"}} {committed}"
        );
        let _ = writeln!(
            out,
            "vigil_transactions_total{{outcome=\"rejected\"}} {rejected}"
        );
        let _ = writeln!(
            out,
            "# HELP vigil_transaction_seconds Time from a transaction's arrival at the engine to its change set.\n# TYPE vigil_transaction_seconds histogram"
        );
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "vigil_transaction_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.over.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "vigil_transaction_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "vigil_transaction_seconds_sum {sum}");
        let _ = writeln!(out, "vigil_transaction_seconds_count {cumulative}");
        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if !sources.is_empty() {
            let _ = writeln!(
                out,
                "# HELP vigil_source_reports_total Reports of each source committed.\n# TYPE vigil_source_reports_total counter"
            );
            for (name, (reports, _)) in sources.iter() {
                let _ = writeln!(
                    out,
                    "vigil_source_reports_total{{source=\"{name}\"}} {reports}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP vigil_source_dropped_total Malformed input of each source, dropped.\n# TYPE vigil_source_dropped_total counter"
            );
            for (name, (_, dropped)) in sources.iter() {
                let _ = writeln!(
                    out,
                    "vigil_source_dropped_total{{source=\"{name}\"}} {dropped}"
                );
            }
        }
        drop(sources);
        if let Some(status) = &*self.status.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = writeln!(
                out,
                "# HELP vigil_logical_time The logical time of the last transaction.\n# TYPE vigil_logical_time gauge\nvigil_logical_time {}",
                status.time
            );
            let _ = writeln!(
                out,
                "# HELP vigil_event_time_seconds The event time of the last transaction.\n# TYPE vigil_event_time_seconds gauge\nvigil_event_time_seconds {}",
                status.now
            );
            let _ = writeln!(
                out,
                "# HELP vigil_view_rows Rows in each view.\n# TYPE vigil_view_rows gauge"
            );
            for (view, rows) in &status.views {
                let _ = writeln!(out, "vigil_view_rows{{view=\"{view}\"}} {rows}");
            }
            let _ = writeln!(
                out,
                "# HELP vigil_journal_bytes Size of the journal.\n# TYPE vigil_journal_bytes gauge\nvigil_journal_bytes {}",
                status.journal_bytes
            );
            let _ = writeln!(
                out,
                "# HELP vigil_journal_records Transactions in the journal since the last snapshot.\n# TYPE vigil_journal_records gauge\nvigil_journal_records {}",
                status.journal_records
            );
        }
        out
    }
}
