//! `cblogs`: tail, search and list the logs of Aurora jobs, from cblogsd.

mod alerts;
mod client;
mod config;
mod follow;
mod grep;
mod progress;
mod render;
mod serverset;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use cblogs_core::api::{
    JobsResponse, TailResponse, DEFAULT_TAIL_LINES, JOBS_PATH, MAX_TAIL_LINES, TAIL_PATH,
};
use cblogs_core::{InstanceSet, Selector};

use client::{Client, ClientError};
use render::{ColorChoice, LineWriter, Output};

const EXAMPLES: &str = "Examples:
  cblogs tail www-data/prod/hello -f
  cblogs tail hello --instance 0-2 --stream stderr
  cblogs tail 'devcluster/www-data/prod/hello/3' -n 500 --output raw
  cblogs grep -i 'timeout|refused' www-data/prod/hello --since 2h -C 2
  cblogs jobs 'www-data/*'
  cblogs alerts silence python-tracebacks --group www-data/prod/hello/3 --for 2h";

/// Tail, search and list the logs of Aurora jobs, collected by cblogsd.
#[derive(Parser, Debug)]
#[command(name = "cblogs", version, about, after_help = EXAMPLES)]
struct Cli {
    /// The cblogsd to ask [default: the config file's, else http://127.0.0.1:7450].
    /// Several, comma-separated (a cluster's nodes): the next is asked when
    /// one cannot be reached. Or the cluster's serverset in ZooKeeper:
    /// zk://HOST:PORT[,HOST:PORT]/PATH (Aurora announces jobs at
    /// /aurora/ROLE/ENV/JOB).
    #[arg(long, global = true, env = "CBLOGS_SERVER")]
    server: Option<String>,
    /// CA certificates (PEM) to trust for an https server, besides the system's.
    #[arg(long, global = true, env = "CBLOGS_CA_CERT", value_name = "FILE")]
    ca_cert: Option<std::path::PathBuf>,
    /// The config file [default: $XDG_CONFIG_HOME/cblogs/config.toml or ~/.config/cblogs/config.toml].
    /// It may set server, token (or token_file) and ca_cert; the token is
    /// otherwise read from $CBLOGS_TOKEN.
    #[arg(long, global = true, env = "CBLOGS_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the last lines of a job's processes; -f keeps following.
    Tail(TailArgs),
    /// Search lines with a regex (ripgrep's syntax) or a fixed string; -C, --count, -l as grep.
    Grep(grep::GrepArgs),
    /// Alert rules with their state; `alerts silence RULE --for 2h` holds them back.
    Alerts(alerts::AlertsArgs),
    /// List jobs with their instances, line counts and when they last logged.
    Jobs(JobsArgs),
    /// Print a shell's completion script: cblogs completions bash > /etc/bash_completion.d/cblogs
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) of cblogs, or of one of its commands: cblogs man grep
    Man {
        /// tail, grep, alerts, jobs, completions; none: cblogs itself.
        command: Option<String>,
    },
}

#[derive(Args, Debug)]
#[command(
    after_help = "JOB is name, role/env, role/env/name or cluster/role/env/name, optionally /INSTANCES \
(3, 0-4, 0-4,7); `*` globs work in any part."
)]
struct TailArgs {
    /// The job: hello, www-data/prod/hello, devcluster/www-data/prod/hello/0-2, 'www-*/prod/*'.
    #[arg(value_parser = parse_selector)]
    job: Selector,
    /// Keep printing new lines as they arrive (survives a server restart).
    #[arg(short, long)]
    follow: bool,
    /// How many of the newest lines to print first.
    #[arg(short = 'n', long = "lines", default_value_t = DEFAULT_TAIL_LINES as u64,
          value_parser = clap::value_parser!(u64).range(0..=MAX_TAIL_LINES as u64))]
    n: u64,
    #[command(flatten)]
    only: SourceFilter,
    /// Only lines since then: 90s, 15m, 2h, 3d, 1h30m, or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = parse_time)]
    since: Option<i64>,
    /// Start each line with the time it was read (RFC 3339, UTC).
    #[arg(short, long)]
    timestamps: bool,
    /// How to print each line.
    #[arg(short, long, value_enum, default_value_t = Output::Pretty)]
    output: Output,
    /// Colour the prefixes: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
}

#[derive(Args, Debug)]
struct JobsArgs {
    /// Only jobs matching this selector (globs allowed).
    #[arg(value_parser = parse_selector)]
    pattern: Option<Selector>,
    /// pretty: a table; raw: job keys only; json: one object per job.
    #[arg(short, long, value_enum, default_value_t = Output::Pretty)]
    output: Output,
}

/// Which of a job's sources: the flags `tail` and `grep` share.
#[derive(Args, Debug)]
pub(crate) struct SourceFilter {
    /// Only these instances: 3, 0-4 or 0-4,7.
    #[arg(long, value_parser = parse_instances)]
    instance: Option<InstanceSet>,
    /// Only this stream.
    #[arg(long, value_enum, default_value_t = StreamChoice::All)]
    stream: StreamChoice,
    /// Only this process (the Thermos process name).
    #[arg(long)]
    process: Option<String>,
}

impl SourceFilter {
    /// The read API's parameters for these flags.
    pub(crate) fn push_params(&self, params: &mut Vec<(&'static str, String)>) {
        if let Some(i) = &self.instance {
            params.push(("instance", i.to_string()));
        }
        match self.stream {
            StreamChoice::Stdout => params.push(("stream", "stdout".into())),
            StreamChoice::Stderr => params.push(("stream", "stderr".into())),
            StreamChoice::All => {}
        }
        if let Some(p) = &self.process {
            params.push(("process", p.clone()));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StreamChoice {
    Stdout,
    Stderr,
    All,
}

pub(crate) fn parse_selector(s: &str) -> Result<Selector, String> {
    Selector::parse(s).map_err(|e| e.to_string())
}

/// `--since`/`--until`: a duration ago or an RFC 3339 time.
pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    cblogs_core::time::parse_since(s, cblogs_core::time::now_ns()).map_err(|e| e.to_string())
}

fn parse_instances(s: &str) -> Result<InstanceSet, String> {
    s.parse()
        .map_err(|e: cblogs_core::SelectorError| e.to_string())
}

/// A failed command: what to say on stderr, and the exit code.
#[derive(Debug)]
pub struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    pub fn protocol(message: String) -> Failure {
        Failure {
            message: format!("unexpected answer from cblogsd: {message}"),
            code: 1,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let mut message = e.to_string();
        if let ClientError::Api { body, .. } = &e {
            if !body.candidates.is_empty() {
                message.push_str(":\n");
                for c in &body.candidates {
                    message.push_str(&format!("  {c}\n"));
                }
                message
                    .push_str("say which with the full role/env/name (or cluster/role/env/name)");
            }
        }
        Failure { message, code: 1 }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        // A closed pipe (`cblogs tail … | head`) is a normal way to stop.
        let code = if e.kind() == std::io::ErrorKind::BrokenPipe {
            0
        } else {
            1
        };
        Failure {
            message: format!("cannot write output: {e}"),
            code,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cblogs: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) if f.code == 0 => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("cblogs: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Runs the command; the exit code on success.
async fn run(cli: Cli) -> Result<u8, Failure> {
    // Made from the CLI's own definitions; no server asked.
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "cblogs", &mut std::io::stdout().lock());
            return Ok(0);
        }
        Command::Man { command } => return man_page(command.as_deref()).map(|()| 0),
        _ => {}
    }
    let settings = config::Settings::resolve(
        cli.config.as_deref(),
        cli.server.clone(),
        cli.ca_cert.clone(),
    )
    .map_err(|message| Failure { message, code: 2 })?;
    let settings = serverset::resolve(settings).await?;
    let client = Client::new(&settings)?;
    match cli.command {
        Command::Tail(args) => tail(&client, args).await.map(|()| 0),
        Command::Jobs(args) => jobs(&client, args).await.map(|()| 0),
        Command::Alerts(args) => alerts::alerts(&client, args).await.map(|()| 0),
        // grep's codes: 0 a line matched, 1 none did, 2 trouble.
        // Ctrl-C drops the search (and wipes its progress line).
        Command::Grep(args) => tokio::select! {
            found = grep::grep(&client, args) => match found {
                Ok(matched) => Ok(if matched { 0 } else { 1 }),
                Err(f) if f.code == 0 => Err(f),
                Err(f) => Err(Failure { code: 2, ..f }),
            },
            _ = tokio::signal::ctrl_c() => Ok(130),
        },
        Command::Completions { .. } | Command::Man { .. } => Ok(0),
    }
}

/// `cblogs man [COMMAND]`: the page of cblogs (`cblogs.1`) or of one
/// command (`cblogs-grep.1`), as roff on stdout.
fn man_page(command: Option<&str>) -> Result<(), Failure> {
    let cblogs = <Cli as clap::CommandFactory>::command();
    let page = match command {
        None => cblogs,
        Some(name) => {
            let Some(sub) = cblogs.find_subcommand(name) else {
                let names: Vec<&str> = cblogs
                    .get_subcommands()
                    .map(|c| c.get_name())
                    .filter(|n| *n != "help")
                    .collect();
                return Err(Failure {
                    message: format!("no command '{name}' (expected one of {})", names.join(", ")),
                    code: 2,
                });
            };
            let full = format!("cblogs-{}", sub.get_name());
            sub.clone()
                .name(full)
                .version(cblogs.get_version().unwrap_or_default().to_owned())
        }
    };
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(page).render(&mut out)?;
    out.flush()?;
    Ok(())
}

async fn tail(client: &Client, args: TailArgs) -> Result<(), Failure> {
    let color = args.color.enabled(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").is_some(),
    );
    let mut params: Vec<(&'static str, String)> = vec![("job", args.job.to_string())];
    args.only.push_params(&mut params);
    let mut out = LineWriter::new(
        std::io::BufWriter::new(std::io::stdout().lock()),
        args.output,
        color,
    );
    out.timestamps = args.timestamps;
    if args.follow {
        return tokio::select! {
            r = follow::follow(client, &params, args.n as usize, args.since, &mut out) => r,
            _ = tokio::signal::ctrl_c() => Ok(out.flush()?),
        };
    }
    params.push(("n", args.n.to_string()));
    if let Some(since) = args.since {
        params.push(("since_ns", since.to_string()));
    }
    let resp: TailResponse = client.get_json(TAIL_PATH, &params).await?;
    out.show_job = resp.jobs.len() > 1;
    for l in &resp.lines {
        out.line(l)?;
    }
    out.flush()?;
    // After the lines, so it is the last thing a terminal shows.
    say_partial(&resp.partial);
    Ok(())
}

/// On stderr: the nodes of a cluster that did not answer, so a partial
/// answer is never taken for a whole one.
pub(crate) fn say_partial(nodes: &[cblogs_core::api::Unanswered]) {
    for node in nodes {
        eprintln!(
            "cblogs: partial answer: node {} ({}) did not answer ({}); lines it holds that are not yet published are missing",
            node.node_id, node.url, node.error
        );
    }
}

async fn jobs(client: &Client, args: JobsArgs) -> Result<(), Failure> {
    let mut params = Vec::new();
    if let Some(p) = &args.pattern {
        params.push(("pattern", p.to_string()));
    }
    let resp: JobsResponse = client.get_json(JOBS_PATH, &params).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        Output::Pretty if resp.jobs.is_empty() => eprintln!("cblogs: no jobs"),
        Output::Pretty => {
            out.write_all(render::jobs_table(&resp.jobs, cblogs_core::time::now_ns()).as_bytes())?
        }
        Output::Raw => {
            for j in &resp.jobs {
                writeln!(out, "{}", j.key)?;
            }
        }
        Output::Json => {
            for j in &resp.jobs {
                serde_json::to_writer(&mut out, j).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    say_partial(&resp.partial);
    Ok(())
}
