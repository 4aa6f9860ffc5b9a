//! `GET /v1/messages`: keyset pagination (no duplicates, no gaps) and filters.

use crate::helpers::*;
use std::collections::BTreeSet;

backend_tests!(
    cursor_pagination_has_no_gaps,
    filters_by_status_conversation_and_time,
    bad_list_parameters_are_422,
);

/// Follows `next_cursor` from `query`; returns the pages' ids.
async fn pages(app: &TestApp, query: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_string(),
        };
        let (status, page) = app.list(&q).await;
        assert_eq!(status, 200, "{q}: {page}");
        let ids: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        out.push(ids);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
    panic!("pagination of {query} never ended");
}

async fn cursor_pagination_has_no_gaps(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        let v = app.send_sms(TO, &format!("page test {i}")).await;
        sent.push(v["id"].as_str().unwrap().to_string());
    }
    let pages = pages(&app, "limit=2").await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 2, 1], "pages: {pages:?}");
    let flat: Vec<String> = pages.concat();
    let unique: BTreeSet<&String> = flat.iter().collect();
    assert_eq!(unique.len(), 5, "no duplicates: {flat:?}");
    let expected: BTreeSet<&String> = sent.iter().collect();
    assert_eq!(unique, expected, "no gaps");
    // Newest first: ids are sortable and the list is in descending order.
    let mut sorted = flat.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(flat, sorted, "newest first");
    // The last message sent is on the first page.
    assert_eq!(flat[0], sent[4]);

    // An exact multiple of the page size ends without an empty trailing page.
    let whole = self::pages(&app, "limit=5").await;
    assert_eq!(whole.len(), 1, "{whole:?}");
    assert_eq!(whole[0].len(), 5);
    // The default page holds them all; limit=1 walks them one by one.
    let ones = self::pages(&app, "limit=1").await;
    assert_eq!(ones.len(), 5);
    assert_eq!(ones.concat(), flat);
}

async fn filters_by_status_conversation_and_time(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut created = Vec::new();
    for i in 0..5 {
        // +15005550001 is Twilio's magic "invalid To": rejected at submit.
        let to = if i % 2 == 0 { TO } else { "+15005550001" };
        let v = app.send_sms(to, &format!("filter {i}")).await;
        let id = v["id"].as_str().unwrap().to_string();
        created.push((id.clone(), v["created_at"].as_str().unwrap().to_string()));
        if i % 2 == 0 {
            good.push((id, v["conversation_id"].as_str().unwrap().to_string()));
        } else {
            bad.push((id, v["conversation_id"].as_str().unwrap().to_string()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for (id, _) in &good {
        app.wait_for_status(id, "delivered", SOON).await;
    }
    for (id, _) in &bad {
        app.wait_for_status(id, "rejected", SOON).await;
    }
    let set = |v: Vec<Vec<String>>| v.concat().into_iter().collect::<BTreeSet<String>>();
    let ids = |v: &[(String, String)]| v.iter().map(|(i, _)| i.clone()).collect::<BTreeSet<_>>();

    assert_eq!(
        set(pages(&app, "status=delivered&limit=2").await),
        ids(&good)
    );
    assert_eq!(set(pages(&app, "status=rejected&limit=1").await), ids(&bad));
    assert!(set(pages(&app, "status=queued").await).is_empty());

    // One conversation per recipient.
    assert!(good.iter().all(|(_, c)| *c == good[0].1));
    assert!(bad.iter().all(|(_, c)| *c == bad[0].1));
    assert_ne!(good[0].1, bad[0].1);
    let q = format!("conversation_id={}&limit=2", good[0].1);
    assert_eq!(set(pages(&app, &q).await), ids(&good));
    let q = format!("conversation_id={}&status=delivered", bad[0].1);
    assert!(set(pages(&app, &q).await).is_empty());
    assert!(set(pages(&app, "conversation_id=conv_nope").await).is_empty());

    // `after`: strictly later than the third message's creation time.
    let after = &created[2].1;
    let q = format!("after={}&limit=2", urlencode(after));
    let expect: BTreeSet<String> = created[3..].iter().map(|(i, _)| i.clone()).collect();
    assert_eq!(set(pages(&app, &q).await), expect, "after {after}");
    let q = format!("after={}", urlencode("2000-01-01T00:00:00Z"));
    assert_eq!(set(pages(&app, &q).await).len(), 5);
    let q = format!("after={}", urlencode("2999-01-01T00:00:00+01:00"));
    assert!(set(pages(&app, &q).await).is_empty());
}

async fn bad_list_parameters_are_422(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    app.send_sms(TO, "one").await;
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=-1", "limit"),
        ("status=bogus", "status"),
        ("after=yesterday", "after"),
        ("cursor=garbage", "cursor"),
    ] {
        let resp = app
            .client
            .get(app.url(&format!("/v1/messages?{q}")))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        let p = assert_problem(resp, 422, "validation").await;
        assert_eq!(error_fields(&p), [field], "{q}: {p}");
    }
    // A query string that does not even parse is a problem too, not axum's plain text.
    for q in ["limit=ten", "limit=1.5", "limit=99999999999999999999"] {
        let resp = app
            .client
            .get(app.url(&format!("/v1/messages?{q}")))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        let p = assert_problem(resp, 400, "bad-request").await;
        assert!(p["detail"].as_str().unwrap().contains("limit"), "{q}: {p}");
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
