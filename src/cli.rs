//! The command line, clap derive only. Handlers never see these types: `lib.rs` turns them
//! into a validated `Config` and plain arguments.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "bgd",
    version,
    about = "Blue-green deployments of containerised HTTP services on Docker hosts",
    long_about = "bgd starts the new release beside the live one, gates it (readiness of every \
                  replica, migration, smoke probes), switches nginx to it in one validated \
                  reload, and keeps the old release parked for an instant rollback."
)]
pub struct Cli {
    /// Config file [default: ./bgd.yaml]
    #[arg(short = 'f', long = "file", global = true, env = "BGD_CONFIG")]
    pub file: Option<PathBuf>,
    /// Machine output: JSON Lines on stdout, the last line being the result
    #[arg(long, global = true)]
    pub json: bool,
    /// Only errors, warnings and results
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail (nginx output, container specs, Engine API requests made)
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// How long deploy, switch, promote, canary, rollback, drill, discard, prune, repair, reroute
    /// and tls reload wait for a busy deploy lock, e.g. "5m" [default: 0s]
    #[arg(long, global = true, value_name = "DURATION")]
    pub lock_wait: Option<String>,
    /// The docker context to use (as `docker --context`); overrides DOCKER_HOST and
    /// DOCKER_CONTEXT [default: DOCKER_HOST, else DOCKER_CONTEXT, else docker's current context]
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deploy IMAGE: start it beside the live release, gate it, switch traffic, park the old one
    Deploy {
        /// Image reference, e.g. registry.example.com/web:v2
        image: String,
        /// Stop after the gates: the candidate stays up on the preview listener until `bgd switch`
        #[arg(long, conflicts_with = "canary")]
        no_switch: bool,
        /// After the gates, send this percentage (1-99) of live clients to the candidate and
        /// leave it there: then `bgd canary N`, `bgd promote` or `bgd rollback`
        #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=99))]
        canary: Option<u8>,
        /// Print the steps, the containers and the nginx config diff; touch nothing
        #[arg(long)]
        plan: bool,
    },
    /// Promote the candidate left by `deploy --no-switch`: gate it again, switch, verify, park
    Switch,
    /// Change the share of live clients the canary gets (0: none, the candidate idle; 100:
    /// promote it); one validated lossless reload
    Canary {
        /// Percentage of live clients, 0-100
        #[arg(value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: u8,
    },
    /// Make the canary (or a candidate waiting after `deploy --no-switch`) live for all
    /// traffic: gate it again, switch, verify, park (the same as `bgd switch`)
    Promote,
    /// Send traffic back to the parked release (during a canary: all of it to the stable color)
    Rollback {
        /// Also hold for switch.verify after the switch
        #[arg(long)]
        verify: bool,
    },
    /// The rollback drill: roll back to the parked release and forward again, each flip
    /// timed against drill.rto and watched for failed requests; exit 0 only when both were
    /// lossless and within it
    Drill,
    /// Live and idle colors, images, containers, and what nginx routes to
    Status,
    /// Rebuild bgd's record from what nginx routes and the containers' labels; change no routing
    Repair,
    /// Route the live (and idle) release again to where its containers are now, after they
    /// restarted with other addresses; one validated, recorded reload
    Reroute,
    /// Remove the candidate `deploy --no-switch` left waiting and park again the release it
    /// set aside (rollback works again); live traffic is untouched
    Discard,
    /// HTTPS (lb.tls): `tls reload` serves a renewed certificate
    Tls {
        #[command(subcommand)]
        action: TlsAction,
    },
    /// Remove this app's release images older than the last `retain` releases (never the live,
    /// idle or a used one)
    Prune {
        /// Show what would be removed and why the rest stays; remove nothing
        #[arg(long)]
        plan: bool,
    },
    /// Past deploys, switches, rollbacks, discards, repairs, reroutes and prunes, as recorded
    /// on the Docker host
    History {
        /// How many entries, newest last
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
    },
    /// Parse and check the config and the template; touch nothing
    Validate,
    /// Print the nginx config bgd would write now
    Render,
    /// Inspect or clear the deploy lock
    Lock {
        #[command(subcommand)]
        action: LockAction,
    },
    /// Write a starter bgd.yaml in the current directory
    Init {
        /// Overwrite an existing bgd.yaml
        #[arg(long)]
        force: bool,
    },
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsAction {
    /// Serve the certificate and key bgd.yaml names now (e.g. renewed): one validated,
    /// lossless reload, the routing unchanged; an expired or mismatched pair is refused
    Reload,
}

#[derive(Debug, Subcommand)]
pub enum LockAction {
    /// Who holds the lock, since when
    Status,
    /// Remove the lock when its holder is gone
    Release {
        /// Remove it even if its holder may still be running
        #[arg(long)]
        force: bool,
    },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Deploy { .. } => "deploy",
            Command::Switch => "switch",
            Command::Canary { .. } => "canary",
            Command::Promote => "promote",
            Command::Rollback { .. } => "rollback",
            Command::Status => "status",
            Command::Drill => "drill",
            Command::Repair => "repair",
            Command::Reroute => "reroute",
            Command::Prune { .. } => "prune",
            Command::Discard => "discard",
            Command::Tls { .. } => "tls",
            Command::History { .. } => "history",
            Command::Validate => "validate",
            Command::Render => "render",
            Command::Lock { .. } => "lock",
            Command::Init { .. } => "init",
            Command::Completions { .. } => "completions",
        }
    }
}
