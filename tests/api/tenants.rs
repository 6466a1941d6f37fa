//! The tenant admin API: ids, create/list/show/delete/restore/rotate, auth between tenants.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn every_bad_id_form_is_refused_with_400_before_any_file_exists() {
    let app = spawn_app().await;
    let before = files_under(&app.data_dir());
    let long = "a".repeat(64);
    // Path forms (percent-encoded where a raw form would be a different route).
    for bad in [
        "..%2Fetc",
        "A",
        "a%2Fb",
        "_control",
        "%00",
        "sh%D0%BEp",
        "a.db",
        long.as_str(),
    ] {
        let r = app.get_tenant(bad, ADMIN).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        assert_eq!(r.error_code(), "invalid_tenant_id", "{bad}");
        let r = app.settings(bad, ADMIN).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // Body forms of create.
    for bad in [
        "../etc",
        "A",
        "a/b",
        "_control",
        "",
        "a\0b",
        "sh\u{043e}p",
        long.as_str(),
    ] {
        let r = app.create_tenant(bad, "x").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}: {}", r.text);
        assert!(r.text.contains("invalid tenant id"), "{}", r.text);
    }
    assert_eq!(files_under(&app.data_dir()), before, "nothing written");
    assert!(!app.dir.path().join("etc.db").exists());
}

#[tokio::test]
async fn create_show_rotate_delete_restore() {
    let app = spawn_app().await;
    let r = app
        .request(
            Method::POST,
            "/v1/tenants",
            Some(ADMIN),
            Some(json!({"id": "joes", "name": "Joe's Deli", "currency": "eur", "timezone": "Europe/Berlin"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["id"], "joes");
    assert_eq!(r.body["currency"], "EUR");
    assert_eq!(r.body["timezone"], "Europe/Berlin");
    assert_eq!(r.body["status"], "active");
    let key = r.body["api_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("tarn_") && key.len() > 60);
    assert!(tenant_file(&app.data_dir(), "joes").exists());

    // The key is stored only as a hash.
    let control = std::fs::read(app.data_dir().join("_control.db")).unwrap();
    assert!(!String::from_utf8_lossy(&control).contains(&key));

    let dup = app.create_tenant("joes", "Again").await;
    assert_eq!(
        (dup.status, dup.error_code()),
        (StatusCode::CONFLICT, "conflict")
    );

    let shown = app.get_tenant("joes", &key).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["name"], "Joe's Deli");
    assert!(
        shown.body.get("api_key").is_none(),
        "key is shown once only"
    );

    let rotated = app.rotate_key("joes", &key).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new_key = rotated.body["api_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert_eq!(
        app.get_tenant("joes", &key).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get_tenant("joes", &new_key).await.status,
        StatusCode::OK
    );

    let patched = app
        .patch_settings("joes", &new_key, json!({"greeting": "salaam"}))
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);

    // Only the operator deletes.
    let r = app.delete_tenant("joes", &new_key).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.delete_tenant("joes", ADMIN).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "deleted");
    assert!(!tenant_file(&app.data_dir(), "joes").exists());
    let trash = files_under(&app.data_dir().join("_trash"));
    assert!(trash.iter().any(|f| f.ends_with("joes.db")), "{trash:?}");
    assert_eq!(
        app.get_tenant("joes", ADMIN).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get_tenant("joes", &new_key).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.settings("joes", ADMIN).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(
        !tenant_file(&app.data_dir(), "joes").exists(),
        "a 404 must not recreate the file"
    );

    let restored = app.restore_tenant("joes").await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.text);
    let key3 = restored.body["api_key"].as_str().unwrap();
    let s = app.settings("joes", key3).await;
    assert_eq!(
        s.body["greeting"], "salaam",
        "data survives delete + restore"
    );
    assert_eq!(
        app.restore_tenant("joes").await.status,
        StatusCode::CONFLICT,
        "an active tenant is not restored over"
    );
    assert_eq!(
        app.restore_tenant("never").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn create_validates_its_input_and_writes_nothing_on_error() {
    let app = spawn_app().await;
    let before = files_under(&app.data_dir());
    for (body, needle) in [
        (json!({"id": "a", "name": ""}), "name"),
        (
            json!({"id": "a", "name": "x", "currency": "EURO"}),
            "currency",
        ),
        (
            json!({"id": "a", "name": "x", "currency": "ABC"}),
            "ISO 4217",
        ),
        (
            json!({"id": "a", "name": "x", "timezone": "Mars/Base"}),
            "timezone",
        ),
        (json!({"id": "a", "name": "x", "colour": "red"}), "colour"),
        (json!({"name": "x"}), "id"),
        (json!({"id": 5, "name": "x"}), "id"),
    ] {
        let r = app
            .request(Method::POST, "/v1/tenants", Some(ADMIN), Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{}",
            r.text
        );
    }
    assert_eq!(files_under(&app.data_dir()), before);
}

#[tokio::test]
async fn list_paginates_over_2500_tenants() {
    let app = spawn_app().await;
    let ids: Vec<String> = (0..2500).map(|i| format!("t{i:05}")).collect();
    for chunk in ids.chunks(50) {
        let creates = chunk.iter().map(|id| app.create_tenant(id, "Shop"));
        for r in futures::future::join_all(creates).await {
            assert_eq!(r.status, StatusCode::CREATED);
        }
    }
    let mut seen = Vec::new();
    let mut query = "?limit=1000".to_owned();
    let mut pages = 0;
    loop {
        let r = app.list_tenants(&query).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        pages += 1;
        for t in r.body["tenants"].as_array().unwrap() {
            seen.push(t["id"].as_str().unwrap().to_owned());
        }
        match r.body["next_after"].as_str() {
            Some(after) => query = format!("?limit=1000&after={after}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "every tenant once, in order");

    let r = app.list_tenants("?limit=0").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.list_tenants("?limit=abc").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "invalid_input");
    let r = app.list_tenants("?after=..%2F").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.list_tenants("").await;
    assert_eq!(r.body["tenants"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn another_tenants_key_is_refused_and_touches_nothing() {
    let app = spawn_app().await;
    let key_a = app.new_tenant("shop-a").await;
    let key_b = app.new_tenant("shop-b").await;
    app.patch_settings("shop-b", &key_b, json!({"greeting": "b's"}))
        .await;

    assert_eq!(
        app.get_tenant("shop-b", &key_a).await.status,
        StatusCode::FORBIDDEN
    );
    let r = app.settings("shop-b", &key_a).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let r = app
        .patch_settings("shop-b", &key_a, json!({"greeting": "hacked"}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.rotate_key("shop-b", &key_a).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.delete_tenant("shop-b", &key_a).await.status,
        StatusCode::FORBIDDEN
    );

    // B is untouched: same key works, same settings, still there.
    let r = app.settings("shop-b", &key_b).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["greeting"], "b's");
    // A tenant key is no operator token: 403 on every operator-only route (it is known,
    // just not enough); an unknown token is 401.
    assert_eq!(app.list_tenants_with(&key_a).await, StatusCode::FORBIDDEN);
    assert_eq!(
        app.list_tenants_with("tarn_not-a-key").await,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .request(
            Method::POST,
            "/v1/tenants",
            Some(&key_a),
            Some(json!({"id": "x", "name": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for (method, path) in [
        (Method::DELETE, "/v1/tenants/shop-a"),
        (Method::POST, "/v1/tenants/shop-a/restore"),
    ] {
        let r = app.request(method, path, Some(&key_a), None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.text);
    }
    // No token, a garbage token, a wrong scheme.
    assert_eq!(
        app.request(Method::GET, "/v1/tenants/shop-b", None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get_tenant("shop-b", "nope").await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .client
        .get(format!("{}/v1/tenants/shop-b", app.base))
        .header("authorization", format!("Basic {key_b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

impl TestApp {
    async fn list_tenants_with(&self, token: &str) -> StatusCode {
        self.request(Method::GET, "/v1/tenants", Some(token), None)
            .await
            .status
    }
}

#[tokio::test]
async fn settings_reject_bad_input() {
    let app = spawn_app().await;
    let key = app.new_tenant("s").await;
    for bad in [
        json!({"Bad-Key": 1}),
        json!({"k": [1]}),
        json!({"k": {"a": 1}}),
        json!([1]),
    ] {
        let r = app.patch_settings("s", &key, bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    for fixed in [
        json!({"currency": "EUR"}),
        json!({"timezone": "UTC"}),
        json!({"low_stock_default": -1}),
    ] {
        let r = app.patch_settings("s", &key, fixed.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{fixed}: {}", r.text);
    }
    // A typo names the settings there are.
    let r = app
        .patch_settings("s", &key, json!({"low_stok_default": 3}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(
        r.text
            .contains("greeting, low_stock_default, join_code_ttl_hours"),
        "{}",
        r.text
    );
    for bad in [
        json!({"join_code_ttl_hours": 0}),
        json!({"join_code_ttl_hours": 1.5}),
        json!({"greeting": ""}),
        json!({"greeting": 5}),
    ] {
        let r = app.patch_settings("s", &key, bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    let r = app
        .patch_settings(
            "s",
            &key,
            json!({"low_stock_default": 3, "greeting": "Hello!", "join_code_ttl_hours": 24}),
        )
        .await;
    assert_eq!(
        (
            &r.body["low_stock_default"],
            &r.body["greeting"],
            &r.body["join_code_ttl_hours"]
        ),
        (&json!(3), &json!("Hello!"), &json!(24))
    );
    assert_eq!(r.body["currency"], "USD", "seeded at creation");
    assert_eq!(r.body["currency_digits"], 2);
    // null: back to the default.
    let r = app
        .patch_settings("s", &key, json!({"greeting": null}))
        .await;
    assert!(r.body.get("greeting").is_none(), "{}", r.text);
    assert_eq!(r.body["join_code_ttl_hours"], 24);
}

/// The permission bits of a path.
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn shop_files_are_readable_by_the_server_user_alone() {
    let app = spawn_app().await;
    app.shop("priv").await;
    let r = app.say("priv", "Sam", "/sale 1 rice").await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    let data = app.data_dir();
    let db = tenant_file(&data, "priv");
    assert_eq!(mode(&data), 0o700, "data dir");
    assert_eq!(mode(db.parent().unwrap()), 0o700, "fan-out folder");
    for f in tarn::tenant::db_files(&db)
        .into_iter()
        .chain(tarn::tenant::db_files(&data.join("_control.db")))
        .chain([data.join("_server.lock")])
    {
        if f.exists() {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }
    // The trash, and a backup made by the CLI, are private too.
    let r = app.delete_tenant("priv", ADMIN).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let trash = data.join("_trash");
    assert_eq!(mode(&trash), 0o700);
    for f in files_under(&trash) {
        assert_eq!(mode(&trash.join(&f)), 0o600, "{f}");
        assert_eq!(mode(trash.join(&f).parent().unwrap()), 0o700, "{f}");
    }
    app.shop("priv2").await;
    let to = app.dir.path().join("backup");
    tarn_ok(&["backup", "--all", "--to", to.to_str().unwrap()], &data);
    for f in files_under(&to) {
        assert_eq!(mode(&to.join(&f)), 0o600, "backup {f}");
    }
    assert_eq!(mode(&to), 0o700, "backup dir");
}

#[tokio::test]
async fn the_trash_is_listed_and_purged_and_re_creating_an_id_keeps_the_old_copy() {
    let app = spawn_app().await;
    app.shop("t").await;
    app.say("t", "Sam", "/sale 2 rice").await;
    assert_eq!(app.delete_tenant("t", ADMIN).await.status, StatusCode::OK);
    let r = app.get("/v1/trash").await;
    assert_eq!(r.body["trash"].as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!(r.body["trash"][0]["id"], "t");
    let first_deleted = r.body["trash"][0]["deleted_at"]
        .as_str()
        .unwrap()
        .to_owned();

    // The id is free for a new shop; the old copy stays in the trash, not orphaned.
    let key = app.new_tenant("t").await;
    let r = app.get("/v1/trash").await;
    assert_eq!(r.body["trash"].as_array().unwrap().len(), 1, "{}", r.text);
    // Restoring over an active tenant is a conflict, for the operator; a key is refused.
    let r = app.restore_tenant("t").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let r = app
        .request(Method::GET, "/v1/trash", Some(&key), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Delete the new one too: two copies; restore brings back the newest (empty) one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.delete_tenant("t", ADMIN).await.status, StatusCode::OK);
    let r = app.get("/v1/trash?limit=1").await;
    assert_eq!(r.body["trash"].as_array().unwrap().len(), 1);
    let next = r.body["next_after"].as_str().unwrap().to_owned();
    let r = app.get(&format!("/v1/trash?limit=1&after={next}")).await;
    assert_eq!(r.body["trash"].as_array().unwrap().len(), 1, "{}", r.text);
    assert!(r.body["next_after"].is_null());
    let r = app.restore_tenant("t").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app.get("/v1/tenants/t/sales").await;
    assert_eq!(
        r.body["sales"].as_array().unwrap().len(),
        0,
        "the newest copy: {}",
        r.text
    );

    // Purge the old copy (with its sale) for good: its files go.
    let before = files_under(&app.data_dir().join("_trash")).len();
    assert!(before >= 1);
    let r = app
        .request(
            Method::DELETE,
            &format!("/v1/trash/t?deleted_at={first_deleted}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["purged"][0]["deleted_at"], first_deleted.as_str());
    assert!(files_under(&app.data_dir().join("_trash")).is_empty());
    let r = app.get("/v1/trash").await;
    assert!(r.body["trash"].as_array().unwrap().is_empty(), "{}", r.text);
    let r = app
        .request(Method::DELETE, "/v1/trash/t", Some(ADMIN), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    // The CLI lists the trash beside the server, and refuses to purge while it runs.
    assert_eq!(app.delete_tenant("t", ADMIN).await.status, StatusCode::OK);
    let listed: serde_json::Value =
        serde_json::from_str(&tarn_ok(&["trash", "list"], &app.data_dir())).unwrap();
    assert_eq!(listed[0]["id"], "t");
    let (ok, _, err) = tarn_cli(&["trash", "purge", "t"], &app.data_dir());
    assert!(!ok && err.contains("in use"), "{err}");
    let dir = app.stop().await;
    tarn_ok(&["trash", "purge", "--all"], &dir.path().join("data"));
    assert!(files_under(&dir.path().join("data/_trash")).is_empty());
}

#[tokio::test]
async fn a_known_api_key_is_checked_without_the_control_db_until_it_changes() {
    let app = spawn_app().await;
    let key = app.new_tenant("keyed").await;
    let products = |key: String| {
        let app = &app;
        async move {
            app.request(Method::GET, "/v1/tenants/keyed/products", Some(&key), None)
                .await
                .status
        }
    };
    assert_eq!(products(key.clone()).await, StatusCode::OK);
    let before = app.metric("control_db_uses").await;
    for _ in 0..5 {
        assert_eq!(products(key.clone()).await, StatusCode::OK);
    }
    assert_eq!(
        app.metric("control_db_uses").await,
        before,
        "a known key is found in memory"
    );
    // A rotation empties the cache: the old key stops at once, the new one works.
    let new_key = app.rotate_key("keyed", &key).await.body["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(products(key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(products(new_key).await, StatusCode::OK);
}
