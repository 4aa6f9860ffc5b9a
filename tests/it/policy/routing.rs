//! Routes by country, prefix and weight (DESIGN.md §4): the first matching rule picks the
//! connection, a rule whose connections cannot send the channel is no route, and weights split
//! traffic both in the route decisions alone and in real sends.

use super::*;
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;

const DE_MOBILE: &str = "+4915112345678";
const GB_MOBILE: &str = "+447911123456";
const FR_MOBILE: &str = "+33612345678";

// --- routing ---------------------------------------------------------------------------------

pub(super) async fn country_and_prefix_routes_pick_the_connection(b: Backend) {
    let de = twilio_sim().await;
    let mut extra = twilio_conn("twilio-de", &de.base_url(), &de, &["sms"]);
    extra.push_str(&twilio_conn(
        "twilio-de-wa",
        &de.base_url(),
        &de,
        &["whatsapp"],
    ));
    extra.push_str(&format!(
        r#"
[[routes]]
channel = "sms"
country = "de"
connections = ["twilio-de"]

[[routes]]
prefix = "+44"
connections = ["twilio-de", "{TWILIO_CONN}"]

[[routes]]
country = "FR"
connections = ["twilio-de-wa"]

[[routes]]
channel = "sms"
connections = ["{TWILIO_CONN}"]
"#
    ));
    let app = spawn_app(b, with_extra(extra)).await;
    let cases = [
        (DE_MOBILE, "twilio-de"),
        (GB_MOBILE, "twilio-de"),
        (TO, TWILIO_CONN),
        (CUSTOMER, TWILIO_CONN),
    ];
    let mut ids = Vec::new();
    for (to, _) in cases {
        ids.push(id_of(&app.send_sms(to, "routed").await));
    }
    for ((to, want), id) in cases.iter().zip(&ids) {
        let m = app.wait_for_status(id, "delivered", SOON).await;
        assert_eq!(connections_of(&m), [*want], "{to}: {m:#}");
        let (on, off) = if *want == "twilio-de" {
            (&de, app.sim())
        } else {
            (app.sim(), &de)
        };
        let got = on.recorder().find_by_message(id);
        assert_eq!(got.len(), 1, "{to} reached {want} once");
        assert_eq!(got[0].to, *to);
        assert!(off.recorder().find_by_message(id).is_empty(), "{to}");
    }
    // France: the rule's only connection cannot send SMS, so there is no route.
    let id = id_of(&app.send_sms(FR_MOBILE, "nowhere to go").await);
    let m = app.wait_for_status(&id, "rejected", SOON).await;
    assert_eq!(m["error"]["reason"], "no_route", "{m:#}");
    assert!(attempts(&m).is_empty(), "{m:#}");
    assert_eq!(provider_copies(&[&de, app.sim()], &id), 0);
}

/// Weights [70, 30]: 10,000 route decisions through a `Registry` built from the same config
/// (±3 %), and 300 real sends through the API (a looser ±10 %, ≈ 3.8 σ).
pub(super) async fn weights_split_traffic_seventy_thirty(b: Backend) {
    let sim_b = twilio_sim().await;
    let routes = format!(
        r#"
[[routes]]
channel = "sms"
connections = ["{TWILIO_CONN}", "twilio-b"]
weights = [70, 30]
"#
    );
    let extra = format!(
        "{}{routes}",
        twilio_conn("twilio-b", &sim_b.base_url(), &sim_b, &["sms"])
    );
    let app = spawn_app(b, with_extra(extra.clone())).await;

    // 1. Route decisions alone.
    let toml = format!(
        "[sandbox]\nenabled = false\n{}{extra}",
        twilio_conn(TWILIO_CONN, &app.sim().base_url(), app.sim(), &["sms"])
    );
    let cfg = weft::config::Config::from_toml(&toml).expect("routing config");
    let registry = weft::providers::Registry::new(
        cfg.connections().expect("connections"),
        &cfg.routes,
        &cfg.breaker,
    )
    .expect("registry");
    let tenant = [TENANT];
    let target = weft::policy::routing::Target {
        tenant: &tenant,
        channel: weft_provider::Channel::Sms,
        to: TO,
        sender: None,
    };
    let n = 10_000;
    let mut first_a = 0usize;
    for _ in 0..n {
        let order: Vec<String> = registry
            .select(&target, None)
            .iter()
            .map(|l| l.id().to_string())
            .collect();
        assert_eq!(order.len(), 2, "the other connection stays as failover");
        assert_ne!(order[0], order[1]);
        if order[0] == TWILIO_CONN {
            first_a += 1;
        }
    }
    let share = first_a as f64 / n as f64;
    assert!(
        (0.67..=0.73).contains(&share),
        "{TWILIO_CONN} got {share:.4} of {n} decisions, expected 0.70 ± 0.03"
    );

    // 2. Real sends.
    let total = 300usize;
    let ids: Vec<String> = futures::stream::iter(0..total)
        .map(|i| {
            let app = &app;
            async move { send(app, json!({"to": TO, "body": format!("split {i}")})).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let (sa, sb) = (app.sim(), &sim_b);
    eventually("every split send taken", SOON, || {
        sa.recorder().count() + sb.recorder().count() >= total
    })
    .await;
    assert_eq!(sa.recorder().count() + sb.recorder().count(), total);
    assert!(sa.recorder().duplicates().is_empty() && sb.recorder().duplicates().is_empty());
    let per_conn: Vec<String> = futures::stream::iter(ids.iter())
        .map(|id| {
            let app = &app;
            async move {
                let m = app
                    .wait_until(id, SOON, "taken", |m| {
                        attempts(m)
                            .first()
                            .is_some_and(|a| a["outcome"] == "queued")
                    })
                    .await;
                let conns = connections_of(&m);
                assert_eq!(conns.len(), 1, "{m:#}");
                let sim = if conns[0] == TWILIO_CONN { sa } else { sb };
                assert_eq!(sim.recorder().find_by_message(id).len(), 1, "{m:#}");
                conns[0].clone()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut tally: HashMap<String, usize> = HashMap::new();
    for c in per_conn {
        *tally.entry(c).or_default() += 1;
    }
    let a = tally.get(TWILIO_CONN).copied().unwrap_or(0);
    let real_share = a as f64 / total as f64;
    assert_eq!(a, sa.recorder().count(), "{tally:?}");
    assert!(
        (0.60..=0.80).contains(&real_share),
        "{TWILIO_CONN} got {a} of {total} sends ({tally:?}), expected 0.70 ± 0.10"
    );
}
