//! `weft-load`: see `weft-load --help` and `load-tests/RESULTS.md`.

use anyhow::Context;
use clap::Parser;
use http::StatusCode;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_load::baseline::{TrivialServer, SERVER_THREAD};
use weft_load::cli::{
    AcceptArgs, BaselineArgs, Cli, Command, E2eArgs, InboundArgs, LoadArgs, ReportArgs,
};
use weft_load::client::Target;
use weft_load::e2e::{self, Metrics, WaitEnd, WatchSpec};
use weft_load::engine::{self, Payload, Plan, Progress, Stop};
use weft_load::inbound::{self, InboundSpec};
use weft_load::report::{self, per_sec, round2, Table};
use weft_load::rss;

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Baseline(a) => a.load.threads,
        Command::Accept(a) => a.load.threads,
        Command::E2e(a) => a.load.threads,
        Command::Inbound(a) => a.load.threads,
        Command::Report(_) => Some(1),
    }
    .map(|t| t as usize)
    .unwrap_or_else(cpus);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weft-load: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async move {
        match cli.command {
            Command::Baseline(a) => baseline(a, threads).await,
            Command::Accept(a) => accept(a, threads).await,
            Command::E2e(a) => e2e_run(a, threads).await,
            Command::Inbound(a) => inbound_run(a, threads).await,
            Command::Report(a) => report_cmd(a),
        }
    });
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-load: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn plan(load: &LoadArgs, target: Target, api_key: Option<String>, stop: Stop) -> Plan {
    Plan {
        target,
        api_key,
        concurrency: load.concurrency,
        stop,
        request_timeout: load.request_timeout,
        to_prefix: load.to_prefix.clone(),
        recipients: load.recipients,
        send_at: load.send_at.clone(),
        channel: load.channel.clone(),
        expect: StatusCode::ACCEPTED,
        collect_ids: false,
        payload: Payload::Send,
    }
}

/// Fields every summary line starts with.
fn header(
    mode: &str,
    load: &LoadArgs,
    url: &str,
    threads: usize,
) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("mode".into(), json!(mode));
    m.insert("label".into(), json!(load.label));
    m.insert("url".into(), json!(url));
    m.insert("concurrency".into(), json!(load.concurrency));
    m.insert("recipients".into(), json!(load.recipients));
    m.insert("send_at".into(), json!(load.send_at));
    m.insert("threads".into(), json!(threads));
    m.insert("cpus".into(), json!(cpus()));
    m.insert("unix_time".into(), json!(report::unix_time()));
    m.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    m.insert("loadavg_1m_at_start".into(), json!(rss::loadavg_1m()));
    m
}

/// CPU counters at the start of a run: the generator's own, and with `--db-comm` the
/// database server's.
struct CpuStart {
    generator: Option<f64>,
    db: Option<(String, f64)>,
}

impl CpuStart {
    fn now(load: &LoadArgs) -> CpuStart {
        CpuStart {
            generator: rss::own_cpu_seconds(),
            db: load
                .db_comm
                .as_ref()
                .and_then(|c| Some((c.clone(), rss::comm_cpu_seconds(c)?))),
        }
    }
}

/// `cpu` seconds spread over `n` (requests, messages) in µs each, 0 for none.
fn micros_each(cpu: f64, n: u64) -> f64 {
    if n > 0 {
        round2(cpu / n as f64 * 1e6)
    } else {
        0.0
    }
}

/// CPU spent by the generator (and, with --pid, by weft; with --db-comm, by the database
/// server) over the run.
fn cpu_fields(
    m: &mut serde_json::Map<String, Value>,
    t: &mut Table,
    cpu0: CpuStart,
    requests: u64,
    ok: u64,
    rss: Option<&rss::RssReport>,
    note: &str,
) {
    // What the per-message CPU (and run.sh's `db_wal_bytes`) divide by.
    m.insert("ok_incl_warmup".into(), json!(ok));
    if let Some((comm, a)) = &cpu0.db {
        if let Some(b) = rss::comm_cpu_seconds(comm) {
            let cpu = round2(b - a);
            let per = micros_each(cpu, ok);
            m.insert("db_comm".into(), json!(comm));
            m.insert("db_cpu_s".into(), json!(cpu));
            m.insert("db_cpu_us_per_ok".into(), json!(per));
            t.row(
                format!("{comm} CPU"),
                format!("{cpu:.2} s ({per:.1} µs per accepted message)"),
            );
        }
    }
    if let (Some(a), Some(b)) = (cpu0.generator, rss::own_cpu_seconds()) {
        let cpu = round2(b - a);
        let per_req = micros_each(cpu, requests);
        m.insert("generator_cpu_s".into(), json!(cpu));
        m.insert("generator_cpu_us_per_request".into(), json!(per_req));
        t.row(
            format!("generator CPU{note}"),
            format!("{cpu:.2} s ({per_req:.1} µs per request)"),
        );
    }
    if let Some(cpu) = rss.and_then(|r| r.cpu_s) {
        let per = micros_each(cpu, ok);
        m.insert("target_cpu_us_per_ok".into(), json!(per));
        t.row(
            "weft CPU",
            format!("{cpu:.2} s ({per:.1} µs per accepted message)"),
        );
    }
    if let (Some(io), true) = (rss.and_then(|r| r.io), ok > 0) {
        let calls = round2(io.write_syscalls as f64 / ok as f64);
        let kib = round2(io.write_bytes as f64 / 1024.0 / ok as f64);
        m.insert("target_write_syscalls_per_ok".into(), json!(calls));
        m.insert("target_write_kib_per_ok".into(), json!(kib));
        t.row(
            "weft writes",
            format!("{calls:.1} write calls, {kib:.1} KiB to storage per accepted message"),
        );
    }
}

fn extend(m: &mut serde_json::Map<String, Value>, v: Value) {
    if let Value::Object(o) = v {
        m.extend(o);
    }
}

/// `accepted` / `accepted_per_s`: the 202 counts under the names RESULTS.md uses.
fn alias_accepted(m: &mut serde_json::Map<String, Value>) {
    if m.get("mode").and_then(Value::as_str) == Some("baseline") {
        return;
    }
    if let Some(v) = m.get("ok").cloned() {
        m.insert("accepted".into(), v);
    }
    if let Some(v) = m.get("ok_per_s").cloned() {
        m.insert("accepted_per_s".into(), v);
    }
}

fn emit(m: serde_json::Map<String, Value>) {
    println!("{}", Value::Object(m));
}

async fn baseline(a: BaselineArgs, threads: usize) -> anyhow::Result<()> {
    let server_threads = a.server_threads.map(|t| t as usize).unwrap_or_else(cpus);
    let server = TrivialServer::start(server_threads).context("starting the trivial server")?;
    let url = server.url();
    eprintln!(
        "baseline: {} workers, {threads} client threads, trivial server on {url} with {server_threads} threads, {:?} warm-up + {:?}",
        a.load.concurrency, a.warmup, a.duration
    );
    let sampler = rss::maybe_start(a.load.pid);
    let cpu0 = CpuStart::now(&a.load);
    let server_cpu0 = rss::own_threads_cpu_seconds(SERVER_THREAD);
    let p = plan(
        &a.load,
        Target::parse(&url)?,
        Some("baseline-key".into()),
        Stop::Time {
            warmup: a.warmup,
            duration: a.duration,
        },
    );
    let r = engine::run(p, Arc::new(Progress::default())).await?;
    let server_cpu = match (server_cpu0, rss::own_threads_cpu_seconds(SERVER_THREAD)) {
        (Some(a), Some(b)) => Some(round2(b - a)),
        _ => None,
    };
    let rss = rss::maybe_finish(sampler).await;
    tokio::task::spawn_blocking(move || server.stop()).await?;

    let mut t = Table::new("baseline: generator ceiling against a trivial 202 endpoint");
    t.row("concurrency", a.load.concurrency.to_string())
        .row(
            "threads",
            format!("client {threads}, server {server_threads}, cpus {}", cpus()),
        )
        .run_rows(&r, 202, "answered")
        .rss_rows(rss.as_ref());
    let mut m = header("baseline", &a.load, &url, threads);
    let ok = r.tally.count_of(StatusCode::ACCEPTED);
    let reqs = r.tally.requests() + r.tally.warmup_requests;
    cpu_fields(
        &mut m,
        &mut t,
        cpu0,
        reqs,
        ok,
        rss.as_ref(),
        " (incl. server)",
    );
    if let (Some(server), Some(total)) =
        (server_cpu, m.get("generator_cpu_s").and_then(Value::as_f64))
    {
        let client = round2((total - server).max(0.0));
        let per = |cpu: f64| micros_each(cpu, reqs);
        m.insert("server_cpu_s".into(), json!(server));
        m.insert("client_cpu_s".into(), json!(client));
        m.insert("client_cpu_us_per_request".into(), json!(per(client)));
        m.insert("server_cpu_us_per_request".into(), json!(per(server)));
        t.row(
            "split",
            format!(
                "client {client:.2} s ({:.1} µs/request), trivial server {server:.2} s ({:.1} µs/request)",
                per(client),
                per(server)
            ),
        );
    }
    t.eprint();

    m.insert("server_threads".into(), json!(server_threads));
    m.insert("warmup_s".into(), json!(a.warmup.as_secs_f64()));
    m.insert("duration_s".into(), json!(a.duration.as_secs_f64()));
    extend(&mut m, report::run_json(&r, 202));
    alias_accepted(&mut m);
    m.insert("rss".into(), json!(rss));
    emit(m);
    Ok(())
}

async fn accept(a: AcceptArgs, threads: usize) -> anyhow::Result<()> {
    let target = Target::parse(&a.target.url)?;
    eprintln!(
        "accept: {} workers, {threads} threads, POST {}/v1/messages, {:?} warm-up + {:?}",
        a.load.concurrency,
        a.target.url.trim_end_matches('/'),
        a.warmup,
        a.duration
    );
    let sampler = rss::maybe_start(a.load.pid);
    let cpu0 = CpuStart::now(&a.load);
    let p = plan(
        &a.load,
        target,
        Some(a.target.api_key.clone()),
        Stop::Time {
            warmup: a.warmup,
            duration: a.duration,
        },
    );
    let progress = Arc::new(Progress::default());
    let r = engine::run(p, progress.clone()).await?;
    let rss = rss::maybe_finish(sampler).await;

    let mut t = Table::new(format!("accept: {}", a.target.url));
    t.row("concurrency", a.load.concurrency.to_string())
        .run_rows(&r, 202, "accepted")
        .rss_rows(rss.as_ref());
    let mut m = header("accept", &a.load, &a.target.url, threads);
    // weft's CPU is sampled over warm-up too, so divide by every 202 including the warm-up's.
    let ok = progress.ok.load(Ordering::Relaxed);
    let reqs = r.tally.requests() + r.tally.warmup_requests;
    cpu_fields(&mut m, &mut t, cpu0, reqs, ok, rss.as_ref(), "");
    t.eprint();

    m.insert("warmup_s".into(), json!(a.warmup.as_secs_f64()));
    m.insert("duration_s".into(), json!(a.duration.as_secs_f64()));
    extend(&mut m, report::run_json(&r, 202));
    alias_accepted(&mut m);
    m.insert("rss".into(), json!(rss));
    emit(m);
    Ok(())
}

async fn inbound_run(a: InboundArgs, threads: usize) -> anyhow::Result<()> {
    let target = Target::parse(&a.url)?;
    let public = a
        .public_url
        .as_deref()
        .unwrap_or(&a.url)
        .trim_end_matches('/');
    let path = inbound::webhook_path(&a.connection);
    let spec = InboundSpec {
        signed_url: format!("{public}{path}"),
        path,
        account_sid: a.account_sid.clone(),
        auth_token: a.auth_token.clone(),
        to: a.to.clone(),
        from_prefix: a.from_prefix.clone(),
        senders: a.senders,
        run_id: inbound::new_run_id(),
    };
    let stop = Stop::Time {
        warmup: a.warmup,
        duration: a.duration,
    };
    let send_plan = match a.with_sends {
        Some(c) => {
            let key = a
                .api_key
                .clone()
                .context("--with-sends needs --api-key (or WEFT_API_KEY)")?;
            let mut load = a.load.clone();
            load.concurrency = c;
            Some(plan(&load, target.clone(), Some(key), stop))
        }
        None => None,
    };
    eprintln!(
        "inbound: {} workers, {threads} threads, POST {}{} signed for {}, {} senders, {:?} warm-up + {:?}{}",
        a.load.concurrency,
        a.url.trim_end_matches('/'),
        spec.path,
        spec.signed_url,
        a.senders,
        a.warmup,
        a.duration,
        match a.with_sends {
            Some(c) => format!("; with {c} send workers on /v1/messages"),
            None => String::new(),
        }
    );
    let mut p = plan(&a.load, target, None, stop);
    p.expect = StatusCode::OK;
    p.payload = Payload::TwilioInbound(Arc::new(spec));

    let sampler = rss::maybe_start(a.load.pid);
    let cpu0 = CpuStart::now(&a.load);
    let progress = Arc::new(Progress::default());
    let send_progress = Arc::new(Progress::default());
    let sends = send_plan.map(|sp| tokio::spawn(engine::run(sp, send_progress.clone())));
    let r = engine::run(p, progress.clone()).await?;
    let s = match sends {
        Some(h) => Some(h.await.context("the send workers died")??),
        None => None,
    };
    let rss = rss::maybe_finish(sampler).await;

    let mut t = Table::new(format!("inbound: {}", a.url));
    t.row("concurrency", a.load.concurrency.to_string())
        .row("senders", a.senders.to_string())
        .run_rows(&r, 200, "threaded");
    if let Some(s) = &s {
        t.row(
            "with sends",
            format!("{} workers on /v1/messages", a.with_sends.unwrap_or(0)),
        );
        let sl = report::latency(&s.tally.hist);
        t.row(
            "sends accepted (202)",
            format!(
                "{} ({:.0}/s), other {}; latency ms p50 {:.3} p99 {:.3}",
                s.tally.count_of(StatusCode::ACCEPTED),
                per_sec(s.tally.count_of(StatusCode::ACCEPTED), s.elapsed),
                s.tally.requests() - s.tally.count_of(StatusCode::ACCEPTED),
                sl.p50_ms,
                sl.p99_ms
            ),
        );
        if let Some(e) = s.tally.first_error.as_ref() {
            t.row("sends: first error body", e.clone());
        }
    }
    t.rss_rows(rss.as_ref());
    let mut m = header("inbound", &a.load, &a.url, threads);
    let ok = progress.ok.load(Ordering::Relaxed) + send_progress.ok.load(Ordering::Relaxed);
    let mut reqs = r.tally.requests() + r.tally.warmup_requests;
    if let Some(s) = &s {
        reqs += s.tally.requests() + s.tally.warmup_requests;
    }
    cpu_fields(&mut m, &mut t, cpu0, reqs, ok, rss.as_ref(), "");
    t.eprint();

    m.insert("warmup_s".into(), json!(a.warmup.as_secs_f64()));
    m.insert("duration_s".into(), json!(a.duration.as_secs_f64()));
    m.insert("senders".into(), json!(a.senders));
    m.insert("connection".into(), json!(a.connection));
    extend(&mut m, report::run_json(&r, 200));
    if let Some(v) = m.get("ok").cloned() {
        m.insert("threaded".into(), v);
    }
    if let Some(v) = m.get("ok_per_s").cloned() {
        m.insert("threaded_per_s".into(), v);
    }
    if let Some(s) = &s {
        m.insert("with_sends".into(), json!(a.with_sends));
        m.insert("sends".into(), report::run_json(s, 202));
    }
    m.insert("rss".into(), json!(rss));
    emit(m);
    Ok(())
}

async fn e2e_run(a: E2eArgs, threads: usize) -> anyhow::Result<()> {
    let target = Target::parse(&a.target.url)?;
    let mut metrics = Metrics::new(target.clone());
    if metrics.read().await.is_none() {
        anyhow::bail!(
            "cannot read {}/metrics: {}",
            a.target.url.trim_end_matches('/'),
            metrics.first_error.clone().unwrap_or_default()
        );
    }
    if !a.settle_timeout.is_zero() {
        eprintln!(
            "e2e: waiting for weft to be idle (at most {:?})…",
            a.settle_timeout
        );
    }
    let (settled, base) = e2e::settle(&mut metrics, a.settle_timeout, a.poll_interval).await;
    let base = base.context("no /metrics reading to start from")?;
    if !settled {
        eprintln!("e2e: weft did not settle; earlier traffic may still be counted");
    }
    eprintln!(
        "e2e: {} messages, {} workers, {threads} threads, timeout {:?}",
        a.count, a.load.concurrency, a.timeout
    );
    let sampler = rss::maybe_start(a.load.pid);
    let cpu0 = CpuStart::now(&a.load);
    let progress = Arc::new(Progress::default());
    let sending_done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let every_s = a.poll_interval.as_secs_f64().max(0.001);
    let watch = tokio::spawn(e2e::watch(
        metrics,
        WatchSpec {
            base: base.clone(),
            t0,
            deadline: t0 + a.timeout,
            every: a.poll_interval,
            stall_timeout: a.stall_timeout,
            progress: progress.clone(),
            sending_done: sending_done.clone(),
            print_every: ((1.0 / every_s).round() as u32).max(1),
        },
    ));
    let mut p = plan(
        &a.load,
        target,
        Some(a.target.api_key.clone()),
        Stop::Count {
            count: a.count,
            deadline: a.timeout,
        },
    );
    p.collect_ids = a.sim_control.is_some();
    let r = engine::run(p, progress.clone()).await?;
    sending_done.store(true, Ordering::Release);
    let send_end = t0.elapsed();
    eprintln!(
        "e2e: sending done after {:.2} s ({} accepted); waiting for delivery…",
        send_end.as_secs_f64(),
        r.tally.count_of(StatusCode::ACCEPTED)
    );
    let w = watch.await.context("the metrics watcher died")?;
    let rss = rss::maybe_finish(sampler).await;

    let sim = match &a.sim_control {
        Some(url) => match e2e::fetch_sim_counts(url).await {
            Ok((counts, total)) => Some(Ok(e2e::check_sim(
                r.tally.count_of(StatusCode::ACCEPTED),
                &r.tally.ids,
                &counts,
                total,
            ))),
            Err(e) => Some(Err(format!("{e:#}"))),
        },
        None => None,
    };

    let accepted = r.tally.count_of(StatusCode::ACCEPTED);
    let delivered_window = w.last_delivered_at.map(Duration::from_secs_f64);
    let delivered_per_s = delivered_window
        .map(|d| per_sec(w.delivered, d))
        .unwrap_or(0.0);
    let complete = accepted > 0 && w.end == WaitEnd::Complete && w.delivered >= accepted;

    let mut t = Table::new(format!("e2e: {}", a.target.url));
    t.row(
        "messages",
        format!("{} asked, {accepted} accepted", a.count),
    )
    .row("concurrency", a.load.concurrency.to_string());
    if r.hit_deadline {
        t.row("sending", "stopped at the timeout before all were sent");
    }
    t.run_rows(&r, 202, "accepted");
    t.row(
        "delivered",
        format!(
            "{} of {accepted} ({:?}); failed for good {}",
            w.delivered, w.end, w.failed
        ),
    );
    t.row(
        "delivered/s end to end",
        match w.last_delivered_at {
            Some(s) => format!("{delivered_per_s:.0} (last delivery seen at {s:.2} s)"),
            None => "– (nothing delivered)".into(),
        },
    );
    if let Some(series) = series_row(&w.series) {
        t.row("delivered over time", series);
    }
    if !w.status_deltas.is_empty() {
        let s: Vec<String> = w
            .status_deltas
            .iter()
            .map(|(k, v)| format!("{k} {v:.0}"))
            .collect();
        t.row("status counts (delta)", s.join(", "));
    }
    if w.metric_errors > 0 {
        t.row(
            "metrics read errors",
            format!(
                "{} (first: {})",
                w.metric_errors,
                w.first_metric_error.clone().unwrap_or_default()
            ),
        );
    }
    match &sim {
        Some(Ok(c)) => {
            t.row(
                "simulator",
                format!(
                    "lost {}, duplicated {} (+{} extra sends), unchecked {}, received in all {}",
                    c.lost, c.duplicated, c.extra_sends, c.unchecked, c.received_total
                ),
            );
        }
        Some(Err(e)) => {
            t.row("simulator", format!("not checked: {e}"));
        }
        None => {}
    }
    t.rss_rows(rss.as_ref());
    let mut m = header("e2e", &a.load, &a.target.url, threads);
    cpu_fields(
        &mut m,
        &mut t,
        cpu0,
        r.tally.requests(),
        accepted,
        rss.as_ref(),
        "",
    );
    t.eprint();

    m.insert("count".into(), json!(a.count));
    m.insert("settled".into(), json!(settled));
    extend(&mut m, report::run_json(&r, 202));
    alias_accepted(&mut m);
    m.insert("send_phase_s".into(), json!(round2(send_end.as_secs_f64())));
    m.insert("sending_hit_timeout".into(), json!(r.hit_deadline));
    m.insert("delivered".into(), json!(w.delivered));
    m.insert("failed".into(), json!(w.failed));
    m.insert("wait_end".into(), json!(w.end));
    m.insert("complete".into(), json!(complete));
    m.insert("last_delivered_at_s".into(), json!(w.last_delivered_at));
    m.insert("delivered_per_s".into(), json!(delivered_per_s));
    m.insert("status_deltas".into(), json!(w.status_deltas));
    m.insert("metric_errors".into(), json!(w.metric_errors));
    m.insert("rss".into(), json!(rss));
    match sim {
        Some(Ok(c)) => {
            m.insert("sim".into(), json!(c));
        }
        Some(Err(e)) => {
            m.insert("sim".into(), json!({ "error": e }));
        }
        None => {}
    }
    m.insert("series".into(), json!(w.series));
    emit(m);
    Ok(())
}

/// `t:delivered` at whole seconds (at most ~20 points) for the human table.
fn series_row(series: &[e2e::Point]) -> Option<String> {
    let last = series.last()?;
    let secs = last.t.ceil().max(1.0) as usize;
    let step = secs.div_ceil(20).max(1);
    let mut out = Vec::new();
    let mut next = step as f64;
    for p in series {
        if p.t >= next {
            out.push(format!("{:.0}s:{}", p.t.floor(), p.delivered));
            while next <= p.t {
                next += step as f64;
            }
        }
    }
    out.push(format!("{:.2}s:{}", last.t, last.delivered));
    Some(out.join(" "))
}

fn report_cmd(a: ReportArgs) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for f in &a.files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        lines.extend(report::read_lines(&text));
    }
    print!("{}", report::markdown(&lines));
    Ok(())
}
