//! `cblogs alerts`: the alert rules with their state, and silences.

use std::io::Write;

use cblogs_core::api::{AlertsResponse, Silence, SilenceRequest, ALERTS_PATH, SILENCES_PATH};
use clap::{Args, Subcommand};

use crate::client::Client;
use crate::render::{ago, Output};
use crate::Failure;

#[derive(Args, Debug)]
pub struct AlertsArgs {
    #[command(subcommand)]
    command: Option<AlertsCommand>,
    /// pretty: tables; json: the API's answer.
    #[arg(short, long, value_enum, default_value_t = Output::Pretty)]
    output: Output,
}

#[derive(Subcommand, Debug)]
enum AlertsCommand {
    /// Hold back a rule's notifications (or one group's) for a while.
    Silence {
        /// The rule's name.
        rule: String,
        /// Only this group: cluster/role/env/name or …/INSTANCE (the cluster may be left out).
        #[arg(long)]
        group: Option<String>,
        /// How long: 30m, 2h, 1d.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        for_secs: u64,
    },
}

fn parse_duration(s: &str) -> Result<u64, String> {
    cblogs_core::time::parse_duration_ns(s)
        .filter(|ns| *ns >= 1_000_000_000)
        .map(|ns| (ns / 1_000_000_000) as u64)
        .ok_or_else(|| format!("'{s}' is not a duration such as 30m, 2h or 1d"))
}

pub async fn alerts(client: &Client, args: AlertsArgs) -> Result<(), Failure> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.command {
        Some(AlertsCommand::Silence {
            rule,
            group,
            for_secs,
        }) => {
            let req = SilenceRequest {
                rule,
                group,
                for_secs,
            };
            let s: Silence = client.post_json(SILENCES_PATH, &req).await?;
            let what = match &s.group {
                Some(g) => format!("{} on {g}", s.rule),
                None => s.rule.clone(),
            };
            writeln!(out, "silenced {what} until {}", s.until)?;
        }
        None => {
            let resp: AlertsResponse = client.get_json(ALERTS_PATH, &[]).await?;
            if args.output == Output::Json {
                serde_json::to_writer(&mut out, &resp).map_err(std::io::Error::from)?;
                writeln!(out)?;
            } else {
                out.write_all(table(&resp, cblogs_core::time::now_ns()).as_bytes())?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Rules with their state, the firing groups under each, then silences.
fn table(resp: &AlertsResponse, now_ns: i64) -> String {
    let mut s = String::new();
    if resp.rules.is_empty() {
        s.push_str("no alert rules (set [alerts] rules_file in cblogsd.toml)\n");
    }
    for r in &resp.rules {
        let firing: Vec<_> = r.groups.iter().filter(|g| g.state == "firing").collect();
        let state = if firing.is_empty() {
            "ok".to_owned()
        } else {
            format!("FIRING ({})", firing.len())
        };
        let last = r
            .last_fired
            .as_deref()
            .and_then(cblogs_core::time::parse_rfc3339)
            .map_or_else(
                || "never fired".to_owned(),
                |t| format!("last fired {}", ago(t, now_ns)),
            );
        s.push_str(&format!(
            "{}  {}  {}  (≥ {} in {} s, {last})\n",
            r.name, r.severity, state, r.threshold, r.window_secs
        ));
        for g in firing {
            s.push_str(&format!("    {}  {} lines\n", g.group.key(), g.count));
        }
    }
    if !resp.silences.is_empty() {
        s.push_str("silences:\n");
        for x in &resp.silences {
            let on = x.group.as_deref().unwrap_or("every group");
            s.push_str(&format!("    {} on {on} until {}\n", x.rule, x.until));
        }
    }
    let d = resp.deliveries;
    if d.failed > 0 || d.pending > 0 {
        s.push_str(&format!(
            "notifications: {} sent, {} attempts failed, {} waiting\n",
            d.sent, d.failed, d.pending
        ));
    }
    s
}
