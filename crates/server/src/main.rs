//! `cblogsd`: the central cblogs service.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use cblogs_server::{Config, NodeRole, PeerAddr, Service, StartError, Starting, TlsListener};

/// jemalloc rather than the system's malloc. A quiet cluster keeps one
/// small open block per source, each grown a line at a time while
/// millions of short-lived allocations (requests, index documents) come
/// and go around them: glibc's arenas kept the holes between them, and
/// RSS ran well past what was live. Built both ways, a day of 2,000 quiet
/// sources peaks at 237 MiB against 389, at the same busy ingest rate and
/// search latency (bench/results/allocator-report.md); a day of 10,000
/// at 835 MiB, against 1,014 the run before. It also replaces the cap of
/// two glibc arenas per core that 16 searches at once needed (522 MiB
/// then, 563 MiB now while serving a third more searches).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The central cblogs service: stores and indexes the logs of every Aurora
/// task and serves them to `cblogs` and the web page.
#[derive(Parser, Debug)]
#[command(
    name = "cblogsd",
    version,
    about,
    after_help = "Examples:\n  cblogsd --demo\n  cblogsd --config config/cblogsd.toml\n  cblogsd --listen 0.0.0.0:7450 --data-dir /var/lib/cblogs"
)]
struct Args {
    /// A TOML config file (every setting is commented in config/cblogsd.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address; overrides the config. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Data directory; overrides the config.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Also run a few demo jobs that keep writing realistic lines.
    #[arg(long)]
    demo: bool,
    /// What this node of a cluster does: take lines and answer queries
    /// (all), or only one of them; overrides `[cluster] role`.
    #[arg(long, value_enum, value_name = "ROLE")]
    role: Option<NodeRole>,
    /// Print this man page (roff) and exit: what the packages install.
    #[arg(long, hide = true)]
    man: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tantivy=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    if args.man {
        let page = clap_mangen::Man::new(<Args as clap::CommandFactory>::command());
        return match page.render(&mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cblogsd: cannot write the man page: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cblogsd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(role) = args.role {
        config.cluster.role = role;
    }
    // The flags may make a config that the file alone was not (a cluster
    // listening off loopback).
    config.validate()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(serve(config, args.demo))
}

async fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    // Before anything can announce that cblogsd runs: a SIGHUP that came
    // before the handler would end the process (its default action).
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    let tls = if config.tls.enabled() {
        Some(cblogs_server::tls_acceptor(&config.tls)?)
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let data_dir = config.data_dir.clone();
    // The port answers from now on: 503 until the service is open (the
    // metastore read, the WAL replayed), then the service itself.
    let starting = Starting::new(&format!(
        "reading the metastore in {} and the write-ahead log in {}",
        config.object_store.describe(&data_dir),
        data_dir.display()
    ));
    let front = starting
        .router()
        .into_make_service_with_connect_info::<PeerAddr>();
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = shutdown_rx.await;
    };
    let mut server = match tls {
        Some(acceptor) => {
            let listener = TlsListener::new(listener, acceptor).context("cannot start TLS")?;
            let server = axum::serve(listener, front).with_graceful_shutdown(shutdown);
            tokio::spawn(async move { server.await })
        }
        None => {
            let server = axum::serve(listener, front).with_graceful_shutdown(shutdown);
            tokio::spawn(async move { server.await })
        }
    };
    let service = match tokio::task::spawn_blocking(|| Service::open(config))
        .await
        .context("the start failed")?
    {
        Ok(s) => s,
        // A bad rules file: its own message says which rule and field.
        Err(StartError::Alerts(e)) => anyhow::bail!("{e}"),
        Err(StartError::Auth(e)) => anyhow::bail!("{e}"),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("cannot open the data dir {}", data_dir.display())))
        }
    };
    for line in service.describe_auth() {
        tracing::info!("auth: {line}");
    }
    starting.ready(service.router());
    service.join_cluster(addr, scheme);
    tracing::info!(%addr, data_dir = %data_dir.display(), tls = scheme == "https", "cblogsd ready");
    // Scripts and tests wait for this line (it means ready); keep its wording.
    println!("cblogsd listening on {scheme}://{addr}");
    let demo_task = demo.then(|| {
        let url = format!("{scheme}://{addr}");
        cblogs_server::demo::print_tour(&url);
        tokio::spawn(cblogs_server::demo::run(
            url,
            data_dir.clone(),
            service.stopping(),
        ))
    });
    #[cfg(unix)]
    service.reload_on(hup);
    // On SIGINT/SIGTERM: stop accepting, end follow streams (they would
    // otherwise keep the graceful shutdown waiting forever), drain requests.
    let stop = service.stop_handle();
    let stopping = service.stopping();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown_signal() => {
                tracing::info!("shutting down");
                stop.send_replace(true);
            }
            () = wait_stopping(stopping) => {}
        }
        let _ = shutdown_tx.send(());
    });
    tokio::select! {
        r = &mut server => r.context("HTTP server task failed")?.context("HTTP server failed")?,
        _ = wait_stopping(service.stopping()) => {
            if tokio::time::timeout(Duration::from_secs(10), &mut server).await.is_err() {
                tracing::warn!("HTTP requests still running after 10 s; closing anyway");
                server.abort();
            }
        }
    }
    if let Some(t) = demo_task {
        t.abort();
    }
    tokio::task::block_in_place(|| service.close());
    Ok(())
}

async fn wait_stopping(mut stopping: tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
