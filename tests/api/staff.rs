//! Staff and owners: a request with no sender speaks as the shop's owner (by role, not by
//! the seeded name), and the last active owner cannot be removed or demoted.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn the_default_sender_is_the_owner_whatever_their_name() {
    let app = spawn_app().await;
    let t = "own";
    app.shop(t).await;
    let path = format!("/v1/tenants/{t}/messages");
    let message = |text: &'static str| app.post(&path, json!({"text": text}));
    // Renamed: still the owner.
    let r = app
        .request(
            Method::PATCH,
            &format!("/v1/tenants/{t}/staff/1"),
            Some(ADMIN),
            Some(json!({"name": "Jane"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = message("/price rice 16").await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    let log = app.get(&format!("/v1/tenants/{t}/messages?limit=1")).await;
    assert_eq!(log.body["messages"][0]["sender"], "Jane", "{}", log.text);

    // The last active owner stays: neither deactivated nor demoted.
    for (method, body) in [
        (Method::DELETE, None),
        (Method::PATCH, Some(json!({"active": false}))),
        (Method::PATCH, Some(json!({"role": "manager"}))),
    ] {
        let r = app
            .request(
                method.clone(),
                &format!("/v1/tenants/{t}/staff/1"),
                Some(ADMIN),
                body,
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{method}: {}", r.text);
        assert!(r.text.contains("last active owner"), "{}", r.text);
    }

    // With a second owner, Jane may go; requests with no sender follow the owner left.
    let r = app
        .post(
            &format!("/v1/tenants/{t}/staff"),
            json!({"name": "Omar", "role": "owner"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app
        .request(
            Method::DELETE,
            &format!("/v1/tenants/{t}/staff/1"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = message("/price rice 17").await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    let log = app.get(&format!("/v1/tenants/{t}/messages?limit=1")).await;
    assert_eq!(log.body["messages"][0]["sender"], "Omar", "{}", log.text);
    let r = app
        .act(
            t,
            json!({"action": "set_price", "product": "Rice", "price": 18}),
        )
        .await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
}

#[tokio::test]
async fn tarn_chat_refuses_an_unknown_sender_before_reading() {
    let app = spawn_app().await;
    app.shop("c").await;
    let data = app.data_dir();
    let (ok, _, err) = tarn_cli(&["chat", "c", "--as", "Nobody"], &data);
    assert!(!ok && err.contains("unknown sender"), "{err}");
    // And a data dir that is not there is an error, not a new empty one.
    let missing = data.join("nope");
    let (ok, _, err) = tarn_cli(&["chat", "c"], &missing);
    assert!(!ok && err.contains("not a tarn data dir"), "{err}");
    assert!(!missing.exists(), "nothing created");
}
