//! `vigil serve`: the daemon. The engine, its journal and the HTTP API.
//!
//! Start-up restores the state (the snapshot, then the journal since), or, in a new data
//! directory, loads the initial facts as the first transaction. The API is served on tokio and
//! hyper; the engine lives on a thread of its own ([`core`]). SIGINT and SIGTERM stop the
//! listener, let every request in flight finish (a transaction that reached the engine is
//! journaled and acknowledged), end the watch streams, and exit.

/// Prints a line of the daemon's log on stdout, like `println!`, but never panics ([`output`]).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::serve::output::line($crate::serve::output::Stream::Stdout, format_args!($($arg)*))
    };
}

/// Prints a warning or an error on stderr, like `eprintln!`, but never panics ([`output`]).
macro_rules! say_err {
    ($($arg:tt)*) => {
        $crate::serve::output::line($crate::serve::output::Stream::Stderr, format_args!($($arg)*))
    };
}

mod actuators;
mod approvals;
mod config;
mod core;
mod dashboard;
mod harvest;
mod http;
mod journal;
mod metrics;
mod output;
mod sim;
mod sources;

use anyhow::{Context, Result};
use clap::Args;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use vigil_engine::{Engine, Options};

#[derive(Args)]
pub struct ServeArgs {
    /// The config file (see the README); without one, the bundled policy on the sample house.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen here instead of the config's address (`127.0.0.1:0` picks a free port and prints it).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Keep the journal and snapshot here instead of the config's directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Drop the damaged journal frame at this byte offset and everything after it (the error
    /// that stopped start-up names the offset).
    #[arg(long)]
    truncate_journal_at: Option<u64>,
    /// Simulated seconds per second for the simulator of the sample house (0: as fast as
    /// the engine goes); without a config the simulator runs at 240 (a day in 6 minutes).
    #[arg(long, value_name = "N")]
    speed: Option<f64>,
    /// Do not run the simulator of the sample house (it runs when there is no config).
    #[arg(long)]
    no_simulator: bool,
}

/// The wall clock, in whole seconds since the epoch.
pub fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn serve(args: ServeArgs) -> Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => config::Config::read(path)?,
        None => config::Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    // The sample house without a config plays in a scratch directory, removed at exit, so that
    // every run starts the day afresh; `--data-dir` keeps it.
    let mut scratch = None;
    match args.data_dir {
        Some(dir) => config.data_dir = dir,
        None if args.config.is_none() => {
            let dir = std::env::temp_dir().join(format!("vigil-sample-{}", std::process::id()));
            config.data_dir = dir.clone();
            scratch = Some(dir);
        }
        None => {}
    }
    if let Some(speed) = args.speed {
        if !(speed.is_finite() && speed >= 0.0) {
            anyhow::bail!("--speed {speed}: the speed must be a number of seconds, 0 or more");
        }
        config.simulation_speed = speed;
    }
    if args.no_simulator {
        config.simulate = false;
    }
    if config.simulate {
        // The simulator moves the clock: a simulated day, not the wall clock.
        config.clock = config::Clock::Event;
    }
    let Some(program) = crate::run::compile(&config.program) else {
        return Ok(ExitCode::FAILURE);
    };
    // Bindings that name what the program lacks stop the start, before anything runs.
    actuators::Plan::new(&config.actuators, &program, config.proxmox.clone())?;
    let store = journal::Store {
        dir: config.data_dir.clone(),
    };
    let fresh = !store.journal_path().exists() && !store.snapshot_path().exists();
    let engine = Engine::new(
        program.clone(),
        Options {
            workers: config.workers,
        },
    )?;
    // Approvals: configured, or (the sample house without a config) with a key of this run.
    let settings = match (&config.approvals, &args.config) {
        (Some(settings), _) => Some(settings.clone()),
        (None, None) => Some(approvals::Settings::ephemeral()?),
        (None, Some(_)) => None,
    };
    let desk = match &settings {
        Some(settings) => Some(approvals::Desk::new(settings, &config.data_dir)?),
        None => None,
    };
    let (awaiting, awaiting_rows) = tokio::sync::mpsc::unbounded_channel();
    let observer = decision_log(&program, desk.is_some().then_some(awaiting));
    let board = Arc::new(dashboard::Board::new(&program));
    let observer = dashboard::alongside(observer, board.clone());
    let core = core::Core::start(core::Start {
        wall_clock: config.clock == config::Clock::Wall,
        // A new data directory starts from nothing; the facts become its first journaled
        // transaction below.
        engine,
        store,
        truncate_journal_at: args.truncate_journal_at,
        snapshot_every: config.snapshot_every,
        feed_capacity: config.watch_backlog,
        observer,
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if let Some(dir) = &scratch {
        say!(
            "vigil serve: the sample house, in the scratch data directory {} (removed at exit; --data-dir keeps one)",
            dir.display()
        );
    }
    let served = runtime.block_on(async move {
        if fresh && let Some(dir) = &config.facts {
            load_initial_facts(&core, &program, dir).await?;
        }
        run(core, config, &program, desk, awaiting_rows, board).await
    });
    if let Some(dir) = &scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Loads the facts directory as the first transaction of a new data directory, so that the
/// journal alone rebuilds the state.
async fn load_initial_facts(
    core: &core::Core,
    program: &vigil_engine::ir::Program,
    dir: &std::path::Path,
) -> Result<()> {
    use vigil_engine::trace::{Entry, Field};
    let mut entry = Entry {
        event: Some(dir.display().to_string()),
        ..Entry::default()
    };
    for relation in &program.relations {
        if relation.input.is_none() {
            continue;
        }
        if relation.feed.clock {
            entry.time = vigil_engine::clock_facts(relation, dir)?;
            continue;
        }
        let path = vigil_engine::io::facts_path(relation, dir);
        if relation.feed.stream && !path.exists() {
            continue;
        }
        let tuples = vigil_engine::io::read_facts(relation, dir)?;
        let rows = tuples
            .into_iter()
            .map(|tuple| tuple.into_iter().map(|value| Field(Some(value))).collect())
            .collect();
        entry.restore.insert(relation.name.clone(), rows);
    }
    core.transact(entry)
        .await
        .map_err(|refusal| match refusal {
            core::Refusal::Invalid(message) | core::Refusal::Failed(message) => {
                anyhow::anyhow!(
                    "{}: the initial facts were refused: {message}",
                    dir.display()
                )
            }
        })?;
    // A transaction is answered before the decision log prints its decisions; the engine
    // thread takes commands in order, so once this one is answered the load's decisions are
    // printed, before the daemon says where it listens.
    let _ = core.status().await;
    Ok(())
}

/// Prints each decision as it is made: the rows that appear in and leave a view named
/// `action` (id, kind, target, reason), if the program has one, and those that wait for a
/// person in `awaiting_approval` (id, kind, target, reason). Times are UTC.
fn decision_log(
    program: &vigil_engine::ir::Program,
    awaiting: Option<tokio::sync::mpsc::UnboundedSender<approvals::Row>>,
) -> Option<core::Observer> {
    let action = program.relation("action")?;
    if program.relations[action].arity() != 4 {
        return None;
    }
    let approvals = program
        .relation("awaiting_approval")
        .is_some_and(|r| program.relations[r].arity() == 4);
    Some(Box::new(move |changes, _engine| {
        let at = sim::clock(changes.now);
        for (tuple, diff) in changes.of("action") {
            let text: Vec<String> = tuple.iter().map(ToString::to_string).collect();
            if let [_, kind, target, reason] = text.as_slice() {
                if diff > 0 {
                    say!("{at} decide   {kind} {target}: {reason}");
                } else {
                    say!("{at} settled  {kind} {target}");
                }
            }
        }
        if !approvals {
            return;
        }
        for (tuple, diff) in changes.of("awaiting_approval") {
            let text: Vec<String> = tuple.iter().map(ToString::to_string).collect();
            let [id, kind, target, reason] = text.as_slice() else {
                continue;
            };
            if diff > 0 {
                say!("{at} approval {id}: waits for a person");
            }
            if let Some(awaiting) = &awaiting {
                let _ = awaiting.send((
                    id.clone(),
                    kind.clone(),
                    target.clone(),
                    reason.clone(),
                    diff > 0,
                    changes.now,
                ));
            }
        }
    }))
}

async fn run(
    core: core::Core,
    config: config::Config,
    program: &vigil_engine::ir::Program,
    desk: Option<approvals::Desk>,
    awaiting: tokio::sync::mpsc::UnboundedReceiver<approvals::Row>,
    board: Arc<dashboard::Board>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    say!("vigil serve: listening on http://{address}");
    say!("vigil serve: the dashboard is at http://{address}/dashboard/");
    let desk = match desk {
        Some(mut desk) => {
            desk.listening(address)?;
            let desk = Arc::new(desk);
            let (served, core) = (desk.clone(), core.clone());
            tokio::spawn(async move { served.run(core, awaiting).await });
            Some(desk)
        }
        None => None,
    };
    let (stop, stopped) = watch::channel(false);
    let clock = config.clock.clone();
    config.sources().start(&core, &core.metrics);
    let mut plan = actuators::Plan::new(&config.actuators, program, config.proxmox.clone())?
        .with_ray(config.ray.clone());
    if config.simulate {
        // The simulated house is not the real one: nothing is sent to it.
        plan.force_dry_run();
    }
    let actuation = Arc::new(actuators::Actuation::new(
        core.clone(),
        plan,
        &config.data_dir,
        config.simulate,
    )?);
    tokio::spawn(actuation.clone().run(stopped.clone()));
    let (config_simulate, speed) = (config.simulate, config.simulation_speed);
    let api = Arc::new(
        http::Api::new(core.clone(), config, stopped.clone(), program, desk).with_dashboard(board),
    );
    if config_simulate {
        let core = core.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let outcome = match sim::Simulator::new(core, speed, actuation).await {
                Ok(simulator) => simulator.run(stopped).await,
                Err(error) => Err(error),
            };
            if let Err(error) = outcome {
                say_err!("error: the simulator stopped: {error}");
            }
        });
    }
    if clock == config::Clock::Wall {
        let core = core.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => core.tick(),
                    _ = stopped.changed() => return,
                }
            }
        });
    }
    let mut connections = tokio::task::JoinSet::new();
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let api = api.clone();
                let mut stopped = stopped.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let api = api.clone();
                        async move { Ok::<_, std::convert::Infallible>(api.handle(request).await) }
                    });
                    let connection = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        _ = stopped.changed() => {
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                });
            }
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    drop(listener);
    say!("vigil serve: stopping; finishing the requests in flight");
    let _ = stop.send(true);
    let finished = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        say_err!("warning: some connections did not finish within 10 s");
    }
    if let Err(core::Refusal::Failed(error) | core::Refusal::Invalid(error)) = core.close().await {
        say_err!("warning: {error}");
    }
    say!("vigil serve: stopped");
    Ok(())
}
