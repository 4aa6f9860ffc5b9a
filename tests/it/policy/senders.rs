//! Sender pools (DESIGN.md §5, the `lease` rung): a connection with several numbers picks one
//! per conversation, so a customer always sees the same number while different conversations
//! spread over the pool; an explicit `from` wins. The per-sender rate limit
//! (`sender_rate_limit_per_second`) spaces out a burst on one number without holding back the
//! others.

use super::*;
use futures::StreamExt;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

const POOL_CONN: &str = "twilio-pool";
/// The pool (none of them a Twilio magic "From" that fails).
const POOL: [&str; 3] = ["+15005550006", "+15005550010", "+15005550011"];
/// A number of the business outside the pool.
const OUTSIDE: &str = "+15005550012";

/// A weft whose only connection is a Twilio simulator with the [`POOL`] senders and `extra`
/// keys in its `[[connections]]` entry.
async fn pool_app(b: Backend, extra: &str) -> (TestApp, Simulator) {
    let sim = twilio_sim().await;
    let setup = Setup {
        twilio: false,
        extra_toml: sms_conn(POOL_CONN, &sim, &POOL, extra),
        ..Setup::default()
    };
    (spawn_app(b, setup).await, sim)
}

/// The `From` the simulator saw for `id` (exactly one send).
fn from_of(sim: &Simulator, id: &str) -> String {
    let got = sim.recorder().find_by_message(id);
    assert_eq!(got.len(), 1, "{id} reached the provider once: {got:?}");
    got[0].from.clone().expect("a From")
}

/// The sender of the message's only attempt.
fn attempt_sender(m: &Value) -> String {
    let at = attempts(m);
    assert_eq!(at.len(), 1, "one attempt: {m:#}");
    at[0]["sender"].as_str().unwrap_or_default().to_string()
}

pub(super) async fn sender_pool_is_sticky_per_conversation_and_from_wins(b: Backend) {
    let (app, sim) = pool_app(b, "").await;
    // Twelve customers, three messages each, one after the other per customer.
    let customers: Vec<String> = (0..12).map(|i| format!("+1415555{:04}", 300 + i)).collect();
    let sent: Vec<(String, String, Vec<String>)> = futures::stream::iter(customers.iter())
        .map(|to| {
            let app = &app;
            async move {
                let mut conv = None;
                let mut ids = Vec::new();
                for n in 0..3 {
                    let v = app.send_sms(to, &format!("pool {n}")).await;
                    let c = v["conversation_id"].as_str().expect("conversation_id");
                    assert_eq!(*conv.get_or_insert_with(|| c.to_string()), c, "{to}: {v}");
                    ids.push(id_of(&v));
                }
                (to.clone(), conv.expect("a conversation"), ids)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let convs: BTreeSet<&String> = sent.iter().map(|(_, c, _)| c).collect();
    assert_eq!(
        convs.len(),
        customers.len(),
        "one conversation per customer"
    );

    let mut per_conv: BTreeMap<String, String> = BTreeMap::new();
    for (to, conv, ids) in &sent {
        let mut froms = BTreeSet::new();
        for id in ids {
            let m = app.wait_for_status(id, "delivered", SOON).await;
            assert_eq!(connections_of(&m), [POOL_CONN], "{m:#}");
            let from = from_of(&sim, id);
            assert!(POOL.contains(&from.as_str()), "{from} is from the pool");
            assert_eq!(
                attempt_sender(&m),
                from,
                "the attempt names the sender: {m:#}"
            );
            froms.insert(from);
        }
        assert_eq!(
            froms.len(),
            1,
            "{to} ({conv}) always sees one number: {froms:?}"
        );
        per_conv.insert(conv.clone(), froms.into_iter().next().expect("a sender"));
    }
    let used: BTreeSet<&String> = per_conv.values().collect();
    assert!(
        used.len() >= 2,
        "{} conversations all on one sender: {per_conv:?}",
        per_conv.len()
    );

    // An explicit `from` wins: another number of the pool, or one outside it.
    let (to, conv, _) = &sent[0];
    let sticky = &per_conv[conv];
    let other = POOL
        .iter()
        .find(|s| *s != sticky)
        .expect("another pool number");
    for from in [*other, OUTSIDE] {
        let id = send(
            &app,
            json!({"to": to, "from": from, "body": format!("from {from}")}),
        )
        .await;
        let m = app.wait_for_status(&id, "delivered", SOON).await;
        assert_eq!(from_of(&sim, &id), from, "{m:#}");
        assert_eq!(attempt_sender(&m), from, "{m:#}");
    }
    // …and the conversation keeps its number afterwards.
    let id = id_of(&app.send_sms(to, "sticky again").await);
    app.wait_for_status(&id, "delivered", SOON).await;
    assert_eq!(&from_of(&sim, &id), sticky);
    assert!(sim.recorder().duplicates().is_empty());
}

/// `sender_rate_limit_per_second = 1`: four messages from one number reach the provider about a
/// second apart (≥ 2.5 s from first to last), each exactly once; a message from another number
/// of the same connection, sent amid the burst, is not queued behind it.
pub(super) async fn sender_rate_limit_spaces_one_number_and_spares_the_others(b: Backend) {
    let (app, sim) = pool_app(b, "sender_rate_limit_per_second = 1\n").await;
    let (busy, free) = (POOL[0], POOL[1]);
    let burst_msg = |i: usize| json!({"to": TO, "from": busy, "body": format!("burst {i}")});
    // The other number's message goes in right after the burst's first.
    let mut burst = vec![send(&app, burst_msg(0)).await];
    let other = send(
        &app,
        json!({"to": CUSTOMER, "from": free, "body": "not held back"}),
    )
    .await;
    for i in 1..4 {
        burst.push(send(&app, burst_msg(i)).await);
    }

    let mut started = Vec::new();
    for id in &burst {
        let m = app.wait_for_status(id, "delivered", SOON).await;
        assert_eq!(from_of(&sim, id), busy, "{m:#}");
        let sent = attempts(&m)
            .into_iter()
            .filter(|a| a["outcome"] == "queued")
            .collect::<Vec<_>>();
        assert_eq!(sent.len(), 1, "one successful attempt: {m:#}");
        started.push(unix_ms(&sent[0]["started_at"]));
    }
    started.sort_unstable();
    let span = started[started.len() - 1] - started[0];
    let gaps: Vec<i128> = started.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        span >= 2500,
        "4 sends at 1/s from one number span {span} ms (gaps {gaps:?})"
    );
    assert!(
        gaps.iter().all(|g| *g >= 700),
        "sends from one number about 1 s apart, got gaps {gaps:?}"
    );

    // The other number is not queued behind the burst: out before the burst's second send
    // (due 1 s after its first).
    let m = app.wait_for_status(&other, "delivered", SOON).await;
    assert_eq!(from_of(&sim, &other), free, "{m:#}");
    let other_at = unix_ms(&attempts(&m)[0]["started_at"]);
    assert!(
        other_at < started[1],
        "the other number waited behind the burst: sent at {other_at}, burst at {started:?}"
    );
    assert_eq!(
        sim.recorder().count(),
        burst.len() + 1,
        "nothing lost or doubled"
    );
    assert!(sim.recorder().duplicates().is_empty());
}
