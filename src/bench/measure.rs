//! One benchmark case, measured in a process of its own (`vigil bench --one CASE`): a house
//! with one implementation, or a classic program with one implementation.
//!
//! The process's peak resident memory (`VmHWM`) is then the case's alone. The child tells the
//! parent on standard output when its load is done (`VIGIL_BENCH_PHASE loaded`), so that the
//! parent can hold the load to its budget, and ends with its figures as one JSON line
//! (`VIGIL_BENCH_RESULT {...}`). Its progress goes to standard error, which it shares with the
//! parent. The measuring loops hold themselves to the time budget: past it, they stop and say
//! how many events they timed.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value as Json, json};
use vigil_engine::{Engine, Options};
use vigil_homelab::baseline::{ShedInputs, crepe::Recompute, dataflow::ShedDataflow};
use vigil_homelab::events::{Event, Events, Kind};

use super::baselines::{ClassicImplementation, CrepeClassic, House, Vigil, VigilClassic};
use super::progress::Progress;
use super::report::{Recorder, summary};
use super::workloads::{Classic, Paths, PreparedHouse, Scale, Size, compile, warm_up};

pub const PHASE_PREFIX: &str = "VIGIL_BENCH_PHASE ";
pub const RESULT_PREFIX: &str = "VIGIL_BENCH_RESULT ";
pub const PARTIAL_PREFIX: &str = "VIGIL_BENCH_PARTIAL ";

/// An implementation of the house's decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HouseImplementation {
    /// Vigil with the whole policy, `rules/homelab.dl`.
    Vigil,
    /// Vigil with the load-shedding view alone, `fixtures/bench/shed_view.dl`.
    VigilView,
    /// The hand-written differential dataflow of the view.
    TypedDataflow,
    /// crepe recomputing the view from scratch.
    Crepe,
}

pub const HOUSE_IMPLEMENTATIONS: [HouseImplementation; 4] = [
    HouseImplementation::Vigil,
    HouseImplementation::VigilView,
    HouseImplementation::TypedDataflow,
    HouseImplementation::Crepe,
];

impl HouseImplementation {
    pub fn key(self) -> &'static str {
        match self {
            HouseImplementation::Vigil => "vigil",
            HouseImplementation::VigilView => "vigil-view",
            HouseImplementation::TypedDataflow => "typed-dd",
            HouseImplementation::Crepe => "crepe",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            HouseImplementation::Vigil => "Vigil, the whole policy",
            HouseImplementation::VigilView => "Vigil, the load-shedding view alone",
            HouseImplementation::TypedDataflow => "hand-written typed dataflow, load-shedding view",
            HouseImplementation::Crepe => "crepe recomputing the load-shedding view",
        }
    }

    fn parse(text: &str) -> Option<HouseImplementation> {
        HOUSE_IMPLEMENTATIONS
            .into_iter()
            .find(|implementation| implementation.key() == text)
    }
}

/// What one child measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    House(Size, HouseImplementation),
    /// A classic program, with Vigil (`true`) or crepe.
    Classic(Classic, bool),
}

impl Case {
    /// `house/1000/vigil`, `classic/points_to/crepe`: the argument of `--one`.
    pub fn key(self) -> String {
        match self {
            Case::House(size, implementation) => {
                format!("house/{}/{}", size.key(), implementation.key())
            }
            Case::Classic(classic, vigil) => {
                format!(
                    "classic/{}/{}",
                    classic.key(),
                    if vigil { "vigil" } else { "crepe" }
                )
            }
        }
    }

    pub fn parse(text: &str) -> Result<Case> {
        let parts: Vec<&str> = text.split('/').collect();
        let case = match parts.as_slice() {
            ["house", size, implementation] => {
                let size = Size::parse(size)?;
                HouseImplementation::parse(implementation).map(|i| Case::House(size, i))
            }
            ["classic", classic, implementation] => {
                Classic::parse(classic).and_then(|classic| match *implementation {
                    "vigil" => Some(Case::Classic(classic, true)),
                    "crepe" => Some(Case::Classic(classic, false)),
                    _ => None,
                })
            }
            _ => None,
        };
        match case {
            Some(case) => Ok(case),
            None => bail!(
                "`{text}` is not a benchmark case (house/SIZE/IMPLEMENTATION or classic/PROGRAM/IMPLEMENTATION)"
            ),
        }
    }
}

/// What a child needs to know besides its case.
pub struct Settings {
    pub scale: Scale,
    /// One-event transactions to time per house.
    pub events: usize,
    pub seed: u64,
    /// Each measuring phase stops once it has run this long.
    pub budget: Duration,
    pub paths: Paths,
}

/// Runs one case and prints its result line; the child's whole job.
pub fn run_child(case: Case, settings: &Settings) -> Result<()> {
    let result = match case {
        Case::House(size, implementation) => house(size, implementation, settings)?,
        Case::Classic(classic, vigil) => classic_program(classic, vigil, settings)?,
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{RESULT_PREFIX}{result}")?;
    stdout.flush()?;
    Ok(())
}

fn announce(phase: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{PHASE_PREFIX}{phase}");
    let _ = stdout.flush();
}

/// The figures so far, which the parent keeps in case it has to stop this process.
fn report_partial(figures: &serde_json::Map<String, Json>) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{PARTIAL_PREFIX}{}", Json::Object(figures.clone()));
    let _ = stdout.flush();
}

/// A field of `/proc/self/status`, in MB (`VmHWM`: the peak resident set; `VmRSS`: now).
pub fn memory_mb(field: &str) -> f64 {
    status_mb("/proc/self/status", field)
}

/// A memory field of a `/proc/PID/status`-like file, in MB; NaN where there is none.
pub fn status_mb(path: &str, field: &str) -> f64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(field)?.strip_prefix(':')?;
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The view's rows at one point of the event stream, for the parent to compare across
/// implementations.
fn checkpoint(subject: &dyn House, after: usize) -> Result<Json> {
    let view = subject.view()?;
    Ok(json!({
        "after_events": after,
        "shed_order_rows": view.order.len(),
        "shed_rows": view.shed.len(),
        "digest": format!("{:016x}", view.digest()),
    }))
}

fn house(size: Size, implementation: HouseImplementation, settings: &Settings) -> Result<Json> {
    let mut progress = Progress::new(format!("{} · {}", size.key(), implementation.key()));
    let base_mb = memory_mb("VmRSS");
    let vigil = matches!(
        implementation,
        HouseImplementation::Vigil | HouseImplementation::VigilView
    );
    let house = PreparedHouse::new(size, settings.seed, &settings.paths, vigil)?;
    let input_tuples = house.facts.len();
    progress.line(&format!(
        "{}: {} nodes, {} workloads, {input_tuples} input tuples; loading",
        implementation.describe(),
        house.nodes,
        house.workloads,
    ));
    let house_mb = memory_mb("VmRSS");

    // The load.
    let mut figures = serde_json::Map::new();
    let started = Instant::now();
    let mut subject: Box<dyn House> = match implementation {
        HouseImplementation::Vigil | HouseImplementation::VigilView => {
            let path = if implementation == HouseImplementation::Vigil {
                settings.paths.policy.clone()
            } else {
                settings.paths.shed_view()
            };
            let program = compile(&path)?;
            let mut engine = Engine::new(program, Options { workers: 1 })?;
            let build_s = started.elapsed().as_secs_f64();
            let loading = Instant::now();
            let changes = engine.load_facts(&house.facts_dir)?;
            figures.insert("build_s".into(), json!(build_s));
            figures.insert("load_s".into(), json!(loading.elapsed().as_secs_f64()));
            figures.insert("load_changes".into(), json!(changes.len()));
            figures.insert("largest_relations".into(), largest_relations(&engine)?);
            Box::new(Vigil(engine))
        }
        HouseImplementation::Crepe => {
            let inputs = ShedInputs::from_facts(&house.facts);
            let loading = Instant::now();
            let recompute = Recompute::new(inputs);
            figures.insert("load_s".into(), json!(loading.elapsed().as_secs_f64()));
            Box::new(recompute)
        }
        HouseImplementation::TypedDataflow => {
            let inputs = ShedInputs::from_facts(&house.facts);
            let loading = Instant::now();
            let dataflow = ShedDataflow::new(&inputs);
            figures.insert("load_s".into(), json!(loading.elapsed().as_secs_f64()));
            Box::new(dataflow)
        }
    };
    announce("loaded");
    let load_peak_mb = memory_mb("VmHWM");
    progress.line(&format!(
        "loaded in {:.3} s; peak memory {load_peak_mb:.0} MB",
        started.elapsed().as_secs_f64()
    ));
    figures.insert("memory".into(), json!({"load_peak_rss_mb": load_peak_mb}));
    report_partial(&figures);

    // One event at a time. The first events warm caches and allocators up, untimed; when
    // events are slow (over 100 ms), there is nothing to warm up, and the warm-up ends at the
    // first slow one. An event that follows a slow one is announced to the parent, so that if
    // it must stop this process it can say for how long the event in flight had run.
    let (batches, batch) = settings.scale.batches();
    let planned_warm = warm_up(settings.events);
    let stream: Vec<Event> = Events::new(&house.facts, settings.seed)
        .take(planned_warm + settings.events + batches * batch)
        .collect();
    // The view is compared across implementations at fixed counts of events applied,
    // wherever the warm-up ended; reading it is not timed.
    let marks = [
        planned_warm,
        planned_warm + settings.events / 2,
        planned_warm + settings.events,
    ];
    let mut checkpoints = vec![checkpoint(&*subject, 0)?];
    let mut warm = 0;
    let mut slow = true;
    let apply = |subject: &mut Box<dyn House>, index: usize, slow: &mut bool| {
        let announced = *slow;
        if announced {
            announce(&format!("event {}", index + 1));
        }
        let start = Instant::now();
        let changed = subject.apply(&stream[index]);
        let elapsed = start.elapsed();
        if announced {
            announce("event done");
        }
        *slow = elapsed > Duration::from_millis(100);
        changed.map(|changed| (changed, elapsed))
    };
    while warm < planned_warm.min(stream.len()) {
        apply(&mut subject, warm, &mut slow)?;
        warm += 1;
        if marks.contains(&warm) {
            checkpoints.push(checkpoint(&*subject, warm)?);
        }
        if slow {
            break;
        }
    }
    let timed_count = settings.events.min(stream.len() - warm);
    let mut all = Recorder::new();
    let mut by_kind: BTreeMap<Kind, Recorder> = BTreeMap::new();
    let mut changed_rows = 0usize;
    let phase = Instant::now();
    let mut stopped = false;
    let mut measured = 0;
    let mut reported = Instant::now();
    while measured < timed_count {
        let index = warm + measured;
        let (changed, elapsed) = apply(&mut subject, index, &mut slow)?;
        changed_rows += changed;
        all.record(elapsed);
        by_kind
            .entry(stream[index].kind())
            .or_default()
            .record(elapsed);
        measured += 1;
        if marks.contains(&(warm + measured)) {
            checkpoints.push(checkpoint(&*subject, warm + measured)?);
        }
        progress.count("one-event transactions", measured, timed_count);
        if reported.elapsed() > Duration::from_secs(5) {
            let mut partial = figures.clone();
            partial.insert(
                "one_event_so_far".into(),
                json!({
                    "latency": summary(&all),
                    "planned": timed_count,
                    "by_kind": by_kind_summaries(&by_kind),
                }),
            );
            report_partial(&partial);
            reported = Instant::now();
        }
        if phase.elapsed() > settings.budget && measured < timed_count {
            stopped = true;
            break;
        }
    }
    progress.close();
    // A warm-up cut short leaves events that the others applied: apply them now, untimed,
    // so that every implementation reaches the same checkpoints and batches the same events.
    let mut applied = warm + measured;
    let planned = (planned_warm + settings.events).min(stream.len());
    while !stopped && applied < planned {
        apply(&mut subject, applied, &mut slow)?;
        applied += 1;
        if marks.contains(&applied) {
            checkpoints.push(checkpoint(&*subject, applied)?);
        }
    }
    if !marks.contains(&applied) {
        checkpoints.push(checkpoint(&*subject, applied)?);
    }
    let one_event = summary(&all);
    progress.line(&format!(
        "{measured} one-event transactions in {:.1} s{}: p50 {:.3} ms, p99 {:.3} ms",
        phase.elapsed().as_secs_f64(),
        if stopped {
            " (stopped at the budget)"
        } else {
            ""
        },
        all.quantile_ms(0.5),
        all.quantile_ms(0.99),
    ));
    figures.insert(
        "one_event".into(),
        json!({
            "latency": one_event,
            "planned": timed_count,
            "warm_up_events": warm,
            "stopped_at_budget": stopped,
            "changed_rows_mean": changed_rows as f64 / measured.max(1) as f64,
            "by_kind": by_kind_summaries(&by_kind),
        }),
    );

    // Batches of events, one transaction each.
    let rest = &stream[applied.min(stream.len())..];
    if !stopped && subject.has_transactions() {
        let mut recorder = Recorder::new();
        let phase = Instant::now();
        let mut events = 0;
        for (index, chunk) in rest.chunks(batch).take(batches).enumerate() {
            let start = Instant::now();
            subject.batch(chunk)?;
            recorder.record(start.elapsed());
            events += chunk.len();
            progress.count("batched transactions", index + 1, batches);
            if phase.elapsed() > settings.budget / 2 {
                break;
            }
        }
        progress.close();
        let seconds = recorder.total_seconds();
        figures.insert(
            "batched".into(),
            json!({
                "events_per_transaction": batch,
                "transactions": recorder.len(),
                "events": events,
                "events_per_s": events as f64 / seconds.max(1e-9),
                "latency": summary(&recorder),
            }),
        );
        progress.line(&format!(
            "{} batches of {batch} events: {:.0} events/s",
            recorder.len(),
            events as f64 / seconds.max(1e-9)
        ));
    }

    figures.insert("checkpoints".into(), Json::Array(checkpoints));
    figures.insert(
        "house".into(),
        json!({
            "nodes": house.nodes,
            "workloads": house.workloads,
            "input_tuples": input_tuples,
        }),
    );
    figures.insert(
        "memory".into(),
        json!({
            "process_start_rss_mb": base_mb,
            "house_ready_rss_mb": house_mb,
            "load_peak_rss_mb": load_peak_mb,
            "peak_rss_mb": memory_mb("VmHWM"),
        }),
    );
    Ok(Json::Object(figures))
}

fn by_kind_summaries(by_kind: &BTreeMap<Kind, Recorder>) -> Json {
    by_kind
        .iter()
        .map(|(kind, recorder)| (kind.name().to_string(), summary(recorder)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The eight largest relations of the engine, by rows: where a large house's memory and time
/// go.
fn largest_relations(engine: &Engine) -> Result<Json> {
    let mut sizes = Vec::new();
    for relation in &engine.program().relations {
        sizes.push((engine.len(&relation.name)?, relation.name.clone()));
    }
    let total: usize = sizes.iter().map(|(rows, _)| rows).sum();
    sizes.sort_by(|a, b| b.cmp(a));
    let top: Vec<Json> = sizes
        .iter()
        .take(8)
        .map(|(rows, name)| json!({"relation": name, "rows": rows}))
        .collect();
    Ok(json!({"total_rows": total, "relations": sizes.len(), "largest": top}))
}

fn classic_program(classic: Classic, vigil: bool, settings: &Settings) -> Result<Json> {
    let label = format!(
        "{} · {}",
        classic.key(),
        if vigil { "vigil" } else { "crepe" }
    );
    let mut progress = Progress::new(label);
    let (n, pairs) = settings.scale.classic();
    let workload = classic.workload(n, pairs, settings.seed);
    let input_tuples: usize = workload.facts.values().map(Vec::len).sum();
    progress.line(&format!("{}; loading", workload.description));
    let started = Instant::now();
    let mut subject: Box<dyn ClassicImplementation> = if vigil {
        let program = compile(&classic.file(&settings.paths))?;
        Box::new(VigilClassic {
            engine: Engine::new(program, Options { workers: 1 })?,
            outputs: classic.outputs(),
        })
    } else {
        Box::new(CrepeClassic::new(classic))
    };
    let loading = Instant::now();
    let output_tuples = subject.load(&workload)?;
    let load_s = loading.elapsed().as_secs_f64();
    announce("loaded");
    let load_peak_mb = memory_mb("VmHWM");
    progress.line(&format!(
        "loaded in {load_s:.3} s ({:.3} s with the build): {output_tuples} output tuples",
        started.elapsed().as_secs_f64()
    ));
    let (mut inserts, mut retracts) = (Recorder::new(), Recorder::new());
    let mut sizes = Vec::new();
    let phase = Instant::now();
    for (index, update) in workload.updates.iter().enumerate() {
        let start = Instant::now();
        let size = subject.update(*update)?;
        let elapsed = start.elapsed();
        if update.insert {
            inserts.record(elapsed);
        } else {
            retracts.record(elapsed);
        }
        sizes.push(size);
        progress.count("updates", index + 1, workload.updates.len());
        // Stop after a retraction, so that the input is back as it was.
        if !update.insert && phase.elapsed() > settings.budget {
            break;
        }
    }
    progress.close();
    progress.line(&format!(
        "{} updates in {:.1} s: insert p50 {:.3} ms, retract p50 {:.3} ms",
        sizes.len(),
        phase.elapsed().as_secs_f64(),
        inserts.quantile_ms(0.5),
        retracts.quantile_ms(0.5)
    ));
    Ok(json!({
        "description": workload.description,
        "input_tuples": input_tuples,
        "load_s": load_s,
        "output_tuples": output_tuples,
        "insert": summary(&inserts),
        "retract": summary(&retracts),
        "updates_planned": workload.updates.len(),
        "sizes_after_updates": sizes,
        "memory": {
            "load_peak_rss_mb": load_peak_mb,
            "peak_rss_mb": memory_mb("VmHWM"),
        },
    }))
}
