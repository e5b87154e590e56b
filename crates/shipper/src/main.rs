//! `cblogs-shipper`: one per Mesos agent. See `config/shipper.toml`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cblogs_shipper::Config;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "cblogs-shipper",
    version,
    about = "Tail every Thermos sandbox log on this Mesos agent and ship the lines to cblogsd.",
    after_help = "Examples:\n  cblogs-shipper --work-dir /var/lib/mesos --server http://logs:7450\n  cblogs-shipper --config /etc/cblogs/shipper.toml\n  cblogs-shipper --status"
)]
struct Args {
    /// TOML config file (see config/shipper.toml); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The Mesos agent's work dir [default: /var/lib/mesos].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// cblogsd's URL [default: http://127.0.0.1:7450].
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Where checkpoints are kept [default: /var/lib/cblogs-shipper].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The Aurora cluster of this agent [default: default].
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// This agent's name in every source [default: the hostname].
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Thermos' checkpoint root, for legacy log folders [default: /var/run/thermos].
    #[arg(long, value_name = "DIR")]
    checkpoint_root: Option<PathBuf>,
    /// Address of the status endpoint, or "off" [default: 127.0.0.1:7451].
    #[arg(long, value_name = "ADDR")]
    status_listen: Option<String>,
    /// A file holding the ingest token [default: $CBLOGS_TOKEN, or none].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for an https server, besides the system's.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Print the running shipper's tailed files and their lag, then exit.
    #[arg(long)]
    status: bool,
    /// Print this man page (roff) and exit: what the packages install.
    #[arg(long, hide = true)]
    man: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.man {
        let page = clap_mangen::Man::new(<Args as clap::CommandFactory>::command());
        return match page.render(&mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cblogs-shipper: cannot write the man page: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cblogs-shipper: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let Args {
        work_dir,
        server,
        state_dir,
        cluster,
        host,
        checkpoint_root,
        status_listen,
        token_file,
        ca_cert,
        ..
    } = args;
    cfg.token_file = token_file.unwrap_or(cfg.token_file);
    cfg.ca_cert = ca_cert.unwrap_or(cfg.ca_cert);
    cfg.work_dir = work_dir.unwrap_or(cfg.work_dir);
    cfg.server = server.unwrap_or(cfg.server);
    cfg.state_dir = state_dir.unwrap_or(cfg.state_dir);
    cfg.cluster = cluster.unwrap_or(cfg.cluster);
    cfg.host = host.unwrap_or(cfg.host);
    cfg.checkpoint_root = checkpoint_root.unwrap_or(cfg.checkpoint_root);
    cfg.status_listen = status_listen.unwrap_or(cfg.status_listen);
    cfg.validate()?;

    if args.status {
        let addr = cfg.status_listen.parse().with_context(|| {
            format!(
                "status_listen '{}' is not an address to ask",
                cfg.status_listen
            )
        })?;
        print!("{}", cblogs_shipper::status::fetch_and_render(addr)?);
        return Ok(());
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(cblogs_shipper::run(cfg, shutdown_signal()))
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}
