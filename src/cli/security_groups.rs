//! `strata security-groups check --listener NAME --from ADDRESS`: whether the broker
//! configured by the same `--config` / `--override` would admit a peer on a listener,
//! and by which rule. Unlike the other tools this one reads the broker's own
//! configuration, and decides with the very code the broker's accept loop runs.

use std::net::IpAddr;

use crate::config::BrokerConfig;
use crate::network::admission::Admission;
use crate::network::security_groups::Verdict;

#[derive(clap::Args, Debug)]
pub struct SecurityGroupsArgs {
    #[command(subcommand)]
    pub command: SecurityGroupsCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum SecurityGroupsCommand {
    /// Prints ADMITTED or DENIED first (exit 0 or 1), then the rule that admits the
    /// peer or the groups none of whose rules do.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The listener's name, as in `listeners` (e.g. CLIENT).
    #[arg(long)]
    pub listener: String,
    /// The peer's address (IPv4 or IPv6).
    #[arg(long)]
    pub from: IpAddr,
    /// The port to check (default: the listener's port).
    #[arg(long)]
    pub port: Option<u16>,
}

/// Decides as the broker would: (admitted, text to print). An unknown listener or a
/// configuration the broker would refuse is an error.
pub fn check(config: &BrokerConfig, args: &CheckArgs) -> Result<(bool, String), String> {
    let listener = config
        .listeners
        .iter()
        .find(|l| l.name.eq_ignore_ascii_case(&args.listener))
        .ok_or_else(|| {
            format!(
                "listener {} is not in listeners ({})",
                args.listener,
                config
                    .listeners
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let admission = Admission::from_config(config)?;
    let port = args.port.unwrap_or(listener.port);
    let subject = format!(
        "listener {} (port {port}), peer {}",
        listener.name, args.from
    );
    Ok(match admission.verdict(&listener.name, port, args.from) {
        Verdict::Admitted { group, rule } if group.is_empty() => {
            (true, format!("ADMITTED\n{subject}: {rule}\n"))
        }
        Verdict::Admitted { group, rule } => (
            true,
            format!("ADMITTED\n{subject}: security group \"{group}\", {rule}\n"),
        ),
        Verdict::Denied => {
            let groups = admission.attached(&listener.name);
            let why = if groups.is_empty() {
                "no security group is attached to this listener".to_string()
            } else {
                format!(
                    "no ingress rule of the attached groups ({}) admits it",
                    groups.join(", ")
                )
            };
            (false, format!("DENIED\n{subject}: {why}\n"))
        }
    })
}
