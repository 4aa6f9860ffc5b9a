//! The `weft-load` command line.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "weft-load",
    version,
    about = "Load generator for weft: accept throughput, end-to-end delivery, generator ceiling.",
    after_help = "Every mode prints a human table on stderr and one JSON summary line on stdout."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hammer a trivial in-process server (answers 202) to measure the generator's own ceiling.
    Baseline(BaselineArgs),
    /// POST /v1/messages for a fixed time and measure accepted msgs/s and latency.
    Accept(AcceptArgs),
    /// Send N messages as fast as possible, then wait until /metrics says all are delivered.
    E2e(E2eArgs),
    /// POST signed Twilio inbound-SMS webhooks for a fixed time (optionally while sends run)
    /// and measure inbound messages threaded per second (200 answers) and latency.
    Inbound(InboundArgs),
    /// Turn saved JSON summary lines into a markdown table for RESULTS.md.
    Report(ReportArgs),
}

/// Options every load mode shares.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Concurrent workers, each with its own keep-alive connection.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,
    /// Sample this process's RSS (VmRSS, VmHWM from /proc/PID/status) every second.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Also count the CPU of every process with this name on the machine, exited children
    /// included (`postgres`: the database server and its backends), per accepted message.
    #[arg(long)]
    pub db_comm: Option<String>,
    /// Runtime worker threads of the generator (default: one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Give up on one request after this long (counted as a timeout).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Destination numbers are this prefix followed by a per-request counter, 11 digits in
    /// all. The default is a valid US range (+1555… is not a valid number for libphonenumber).
    #[arg(long, default_value = "+12025", value_parser = parse_to_prefix)]
    pub to_prefix: String,
    /// Send to this many distinct numbers in turn (request n goes to number n mod K), as
    /// traffic to known customers does. Default: a new number for every request, so that
    /// every message also creates its contact, identity and conversation (the costliest case).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub recipients: Option<u64>,
    /// Schedule every message for this RFC 3339 time (`send_at`). A time far ahead keeps the
    /// dispatcher out of the run, so `accept` measures intake alone (the API and the store).
    #[arg(long)]
    pub send_at: Option<String>,
    /// The `channel` field of every message.
    #[arg(long, default_value = "sms", value_parser = parse_channel)]
    pub channel: String,
    /// Free text carried into the JSON summary (e.g. "sqlite/twilio-sim").
    #[arg(long)]
    pub label: Option<String>,
}

/// Where weft is and how to authenticate.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// weft's base URL (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A tenant API key (sent as `Authorization: Bearer KEY`).
    #[arg(long, env = "WEFT_API_KEY", hide_env_values = true)]
    pub api_key: String,
}

#[derive(Debug, Clone, Args)]
pub struct BaselineArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Measured time (after warm-up).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time first.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Worker threads of the trivial server's own runtime (default: one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub server_threads: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct AcceptArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Measured time (after warm-up).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time first.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct E2eArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Messages to send.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Stop sending and waiting after this long (from the first send) and report how far it got.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Stop waiting when the delivered/terminal count has not moved for this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub stall_timeout: Duration,
    /// How often to read GET /metrics.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Before starting, wait (at most this long) until weft is idle: the delivered counter
    /// still and weft_outbox_depth 0. 0s skips the wait.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub settle_timeout: Duration,
    /// twilio-sim's control URL (its --control-port): count what the provider received per
    /// accepted message (lost and duplicated sends).
    #[arg(long)]
    pub sim_control: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct InboundArgs {
    /// weft's base URL (http only); webhooks go to {url}/webhooks/twilio/{connection}/inbound.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// weft's `public_url`, which the signature covers (default: --url).
    #[arg(long)]
    pub public_url: Option<String>,
    /// The Twilio connection id in weft's config.
    #[arg(long, default_value = "twilio-load")]
    pub connection: String,
    /// `AccountSid` of every webhook (the connection's account SID).
    #[arg(long)]
    pub account_sid: String,
    /// The connection's auth token, to sign with.
    #[arg(long, env = "WEFT_TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: String,
    /// `To`: the business number (one of the connection's senders).
    #[arg(long, default_value = "+15005550006")]
    pub to: String,
    /// `From` numbers are this prefix followed by `n % senders`, 11 digits in all.
    #[arg(long, default_value = "+12025", value_parser = parse_to_prefix)]
    pub from_prefix: String,
    /// Distinct customer numbers, used in turn: the first round opens conversations, later
    /// rounds land on existing ones.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub senders: u64,
    /// Also run this many `POST /v1/messages` workers (as `accept`) at the same time, so
    /// replies arrive while sends run. Needs --api-key / WEFT_API_KEY.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub with_sends: Option<u32>,
    /// A tenant API key for --with-sends.
    #[arg(long, env = "WEFT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Inbound workers (--concurrency), RSS sampling and the rest; --to-prefix and --channel
    /// apply to --with-sends.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Measured time (after warm-up).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time first.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Files of JSON summary lines (as printed on stdout by the other modes).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// `10s`, `250ms`, `2m`, … (humantime).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (try 10s, 250ms, 2m)"))?;
    if d.is_zero() && !s.trim().starts_with('0') {
        return Err("must not be zero".into());
    }
    Ok(d)
}

/// `+` and 1 to 10 digits: the rest of the 11 digits is the per-request counter.
pub fn parse_to_prefix(s: &str) -> Result<String, String> {
    let digits = s
        .strip_prefix('+')
        .ok_or_else(|| "must start with '+' (E.164)".to_string())?;
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be '+' and 1 to 10 digits (numbers are 11 digits in all)".into());
    }
    Ok(s.to_string())
}

/// A lower-case word: it is put into the JSON body without escaping.
pub fn parse_channel(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err("must be a lower-case word such as sms".into());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("weft-load").chain(args.iter().copied()))
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn baseline_defaults() {
        let Ok(cli) = parse(&["baseline"]) else {
            panic!("baseline should parse")
        };
        let Command::Baseline(b) = cli.command else {
            panic!("expected baseline")
        };
        assert_eq!(b.load.concurrency, 64);
        assert_eq!(b.duration, Duration::from_secs(10));
        assert_eq!(b.warmup, Duration::from_secs(1));
        assert_eq!(b.load.pid, None);
        assert_eq!(b.load.to_prefix, "+12025");
    }

    #[test]
    fn baseline_overrides() {
        let cli = parse(&[
            "baseline",
            "--concurrency",
            "8",
            "--duration",
            "1500ms",
            "--warmup",
            "0s",
            "--threads",
            "1",
            "--server-threads",
            "1",
        ])
        .expect("baseline with overrides");
        let Command::Baseline(b) = cli.command else {
            panic!("expected baseline")
        };
        assert_eq!(b.load.concurrency, 8);
        assert_eq!(b.duration, Duration::from_millis(1500));
        assert_eq!(b.warmup, Duration::ZERO);
        assert_eq!(b.load.threads, Some(1));
        assert_eq!(b.server_threads, Some(1));
    }

    #[test]
    fn accept_full() {
        let cli = parse(&[
            "accept",
            "--url",
            "http://127.0.0.1:9999",
            "--api-key",
            "wk_test",
            "--concurrency",
            "32",
            "--duration",
            "20s",
            "--warmup",
            "2s",
            "--pid",
            "1234",
            "--label",
            "sqlite/sandbox",
        ])
        .expect("accept");
        let Command::Accept(a) = cli.command else {
            panic!("expected accept")
        };
        assert_eq!(a.target.url, "http://127.0.0.1:9999");
        assert_eq!(a.target.api_key, "wk_test");
        assert_eq!(a.load.concurrency, 32);
        assert_eq!(a.duration, Duration::from_secs(20));
        assert_eq!(a.warmup, Duration::from_secs(2));
        assert_eq!(a.load.pid, Some(1234));
        assert_eq!(a.load.label.as_deref(), Some("sqlite/sandbox"));
    }

    #[test]
    fn accept_needs_a_key() {
        // WEFT_API_KEY may be set in a developer's shell; only check when it is not.
        if std::env::var_os("WEFT_API_KEY").is_none() {
            assert!(parse(&["accept", "--url", "http://127.0.0.1:8080"]).is_err());
        }
    }

    #[test]
    fn e2e_defaults_and_overrides() {
        let cli = parse(&["e2e", "--api-key", "k"]).expect("e2e");
        let Command::E2e(e) = cli.command else {
            panic!("expected e2e")
        };
        assert_eq!(e.count, 50_000);
        assert_eq!(e.timeout, Duration::from_secs(300));
        assert_eq!(e.poll_interval, Duration::from_millis(250));
        assert_eq!(e.target.url, "http://127.0.0.1:8080");
        assert_eq!(e.sim_control, None);

        let cli = parse(&[
            "e2e",
            "--api-key",
            "k",
            "--count",
            "2000",
            "--timeout",
            "1m",
            "--sim-control",
            "http://127.0.0.1:19001",
        ])
        .expect("e2e overrides");
        let Command::E2e(e) = cli.command else {
            panic!("expected e2e")
        };
        assert_eq!(e.count, 2000);
        assert_eq!(e.timeout, Duration::from_secs(60));
        assert_eq!(e.sim_control.as_deref(), Some("http://127.0.0.1:19001"));
    }

    #[test]
    fn inbound_options() {
        let cli = parse(&[
            "inbound",
            "--url",
            "http://127.0.0.1:18080",
            "--account-sid",
            "ACx",
            "--auth-token",
            "tok",
            "--senders",
            "50",
            "--with-sends",
            "16",
            "--api-key",
            "k",
            "--concurrency",
            "8",
        ])
        .expect("inbound");
        let Command::Inbound(i) = cli.command else {
            panic!("expected inbound")
        };
        assert_eq!(i.connection, "twilio-load");
        assert_eq!(i.to, "+15005550006");
        assert_eq!(i.from_prefix, "+12025");
        assert_eq!(i.senders, 50);
        assert_eq!(i.with_sends, Some(16));
        assert_eq!(i.load.concurrency, 8);
        assert_eq!(i.public_url, None);
        assert!(parse(&[
            "inbound",
            "--account-sid",
            "A",
            "--auth-token",
            "t",
            "--senders",
            "0"
        ])
        .is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["baseline", "--concurrency", "0"]).is_err());
        assert!(parse(&["baseline", "--duration", "ten"]).is_err());
        assert!(parse(&["baseline", "--to-prefix", "1555"]).is_err());
        assert!(parse(&["baseline", "--to-prefix", "+12345678901"]).is_err());
        assert!(parse(&["baseline", "--channel", "SMS\""]).is_err());
        assert!(parse(&["e2e", "--api-key", "k", "--count", "0"]).is_err());
        assert!(parse(&["report"]).is_err());
        assert!(parse(&["nonsense"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("").is_err());
    }
}
