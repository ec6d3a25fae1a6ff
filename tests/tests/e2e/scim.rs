//! SCIM 2.0 over HTTP against the real server, on SQLite and PostgreSQL: a
//! provisioning client's round trips for users and groups: discovery,
//! creation, filters, sorting and paging, projections, PUT and PATCH with
//! value-path filters, ETag conflicts, Bulk with bulkId references, and
//! the refusals of RFC 7644 §3.12 that write nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Store, TestServer, http};
use crate::oauth::confidential;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

struct Scim<'a> {
    s: &'a TestServer,
    token: String,
}

impl Scim<'_> {
    /// (status, ETag, body) of a SCIM call.
    async fn call(
        &self,
        method: Method,
        path: &str,
        if_match: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Option<String>, Value) {
        let mut req = http()
            .request(method, self.s.url(&format!("/scim/v2{path}")))
            .bearer_auth(&self.token);
        if let Some(tag) = if_match {
            req = req.header("if-match", tag);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        if status != 204 {
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(ct.as_deref(), Some("application/scim+json"), "{status}");
        }
        let etag = r
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = r.text().await.unwrap();
        (
            status,
            etag,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (st, _, v) = self.call(Method::GET, path, None, None).await;
        (st, v)
    }

    async fn names(&self, query: &str) -> Vec<String> {
        let (st, v) = self.get(&format!("/Users?{query}")).await;
        assert_eq!(st, 200, "{query}: {v}");
        v["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["userName"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn q(filter: &str) -> String {
    format!("filter={}", urlencode(filter))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn person(user: &str, given: &str, family: &str, email: &str, dept: &str) -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "userName": user,
        "externalId": format!("ext-{user}"),
        "name": {"givenName": given, "familyName": family},
        "displayName": format!("{given} {family}"),
        "emails": [{"value": email, "type": "work", "primary": true}],
        "phoneNumbers": [{"value": "+14155550100", "type": "work"}],
        "active": true,
        "password": "correct horse battery staple",
        ENTERPRISE: {"department": dept, "employeeNumber": "42"},
    })
}

async fn log_len(s: &TestServer) -> u64 {
    let log = s.server().state.bus.log();
    log.count_after(eventlog::Position::START).await.unwrap()
}

/// A client of the admin's organization that may provision (and read):
/// its SCIM caller, id and secret.
async fn provisioning_client(s: &TestServer) -> (Scim<'_>, String, String) {
    s.wait_ready().await;
    let admin = s.admin().await;
    let c = s
        .create_client(
            &admin,
            confidential(
                &admin.organization_id,
                "client_secret_basic",
                &["idp:scim", "read"],
            ),
        )
        .await;
    let id = c["client_id"].as_str().unwrap().to_owned();
    let (_, secret) = s.create_secret(&admin, &id).await;
    let scim = Scim {
        s,
        token: s.token_basic(&id, &secret, Some("idp:scim")).await,
    };
    (scim, id, secret)
}

async fn round_trips(store: Store) {
    let Some(s) = TestServer::start(store, "scim").await else {
        return;
    };
    let (scim, id, secret) = provisioning_client(&s).await;

    // Who may call.
    let wrong = Scim {
        s: &s,
        token: s.token_basic(&id, &secret, Some("read")).await,
    };
    assert_eq!(wrong.get("/Users").await.0, 403);
    let none = Scim {
        s: &s,
        token: "nope".into(),
    };
    assert_eq!(none.get("/Users").await.0, 401);

    // Discovery.
    let (st, spc) = scim.get("/ServiceProviderConfig").await;
    assert_eq!(st, 200);
    for feature in ["patch", "bulk", "filter", "sort", "etag"] {
        assert_eq!(spc[feature]["supported"], true, "{feature}");
    }
    let (_, types) = scim.get("/ResourceTypes").await;
    assert_eq!(types["totalResults"], 2);
    let (_, schemas) = scim.get("/Schemas").await;
    assert_eq!(schemas["totalResults"], 3);
    assert_eq!(scim.get(&format!("/Schemas/{ENTERPRISE}")).await.0, 200);

    // Creation.
    let (st, etag, b) = scim
        .call(
            Method::POST,
            "/Users",
            None,
            Some(person(
                "bjensen",
                "Barbara",
                "Jensen",
                "bjensen@example.com",
                "Sales",
            )),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let bjensen = b["id"].as_str().unwrap().to_owned();
    assert_eq!(etag.as_deref(), b["meta"]["version"].as_str());
    assert_eq!(b["name"]["familyName"], "Jensen");
    assert_eq!(b[ENTERPRISE]["department"], "Sales");
    assert!(b.get("password").is_none(), "a password is never returned");
    for (u, g, f, e, d) in [
        ("jsmith", "John", "Smith", "john@example.org", "Engineering"),
        ("adoe", "Alice", "Doe", "alice@example.com", "Sales"),
    ] {
        let (st, _, v) = scim
            .call(Method::POST, "/Users", None, Some(person(u, g, f, e, d)))
            .await;
        assert_eq!(st, 201, "{v}");
    }
    let before = log_len(&s).await;
    let (st, _, e) = scim
        .call(
            Method::POST,
            "/Users",
            None,
            Some(person("BJensen", "B", "J", "other@example.com", "x")),
        )
        .await;
    assert_eq!(
        (st, e["scimType"].as_str()),
        (409, Some("uniqueness")),
        "{e}"
    );
    assert_eq!(
        e["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(
        log_len(&s).await,
        before,
        "a refused creation writes nothing"
    );

    // Filters, every operator and combination.
    assert_eq!(
        scim.names(&q(r#"userName eq "BJENSEN""#)).await,
        ["bjensen"]
    );
    assert_eq!(
        scim.names(&q(r#"externalId eq "ext-jsmith""#)).await,
        ["jsmith"]
    );
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(scim.names(&q(r#"userName ne "bjensen""#)).await),
        ["adoe", "jsmith"]
    );
    assert_eq!(
        scim.names(&q(r#"name.familyName co "ens""#)).await,
        ["bjensen"]
    );
    assert_eq!(scim.names(&q(r#"userName sw "js""#)).await, ["jsmith"]);
    assert_eq!(
        scim.names(&q(r#"emails.value ew "example.org""#)).await,
        ["jsmith"]
    );
    assert_eq!(
        scim.names(&q(
            r#"emails[type eq "work" and value co "@example.com"] and name.givenName sw "B""#
        ))
        .await,
        ["bjensen"]
    );
    assert_eq!(sorted(scim.names(&q(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales""#)).await), ["adoe", "bjensen"]);
    // Counted in the attribute index alone, whatever the case asked.
    let (_, page) = scim
        .get(&format!(
            "/Users?{}&count=1",
            q(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "SALES""#)
        ))
        .await;
    assert_eq!(
        (page["totalResults"].clone(), page["itemsPerPage"].clone()),
        (json!(2), json!(1)),
        "{page}"
    );
    assert_eq!(
        sorted(
            scim.names(&q(
                r#"not (userName eq "adoe") and (userName sw "b" or userName sw "j")"#
            ))
            .await
        ),
        ["bjensen", "jsmith"]
    );
    assert_eq!(
        scim.names(&q("displayName pr and active eq true"))
            .await
            .len(),
        3
    );
    let (_, all) = scim.get("/Users").await;
    let created = all["Resources"][1]["meta"]["created"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        scim.names(&q(&format!(r#"meta.created gt "{created}""#)))
            .await
            .len(),
        1
    );
    assert_eq!(
        scim.names(&q(&format!(r#"meta.created ge "{created}""#)))
            .await
            .len(),
        2
    );
    assert_eq!(
        scim.names(&q(&format!(r#"meta.created lt "{created}""#)))
            .await
            .len(),
        1
    );
    assert_eq!(
        scim.names(&q(&format!(r#"meta.created le "{created}""#)))
            .await
            .len(),
        2
    );
    // Sorting, paging, projections.
    assert_eq!(
        scim.names("sortBy=userName&sortOrder=descending").await,
        ["jsmith", "bjensen", "adoe"]
    );
    let (_, page) = scim
        .get("/Users?sortBy=userName&startIndex=2&count=1")
        .await;
    assert_eq!(
        (
            page["totalResults"].clone(),
            page["startIndex"].clone(),
            page["itemsPerPage"].clone()
        ),
        (json!(3), json!(2), json!(1))
    );
    assert_eq!(page["Resources"][0]["userName"], "bjensen");
    // A filter SQL answers whole, paged by index.
    let (_, page) = scim
        .get(&format!(
            "/Users?{}&startIndex=2&count=1",
            q("active eq true")
        ))
        .await;
    assert_eq!(
        (page["totalResults"].clone(), page["itemsPerPage"].clone()),
        (json!(3), json!(1)),
        "{page}"
    );
    assert_eq!(
        page["Resources"][0]["userName"], "jsmith",
        "in order of creation"
    );
    let (_, slim) = scim
        .get(&format!(
            "/Users/{bjensen}?attributes=userName,name.givenName"
        ))
        .await;
    assert_eq!(slim["name"], json!({"givenName": "Barbara"}));
    assert!(slim.get("emails").is_none() && slim["id"] == json!(bjensen));
    let (_, without) = scim
        .get(&format!("/Users/{bjensen}?excludedAttributes=emails"))
        .await;
    assert!(without.get("emails").is_none() && without["userName"] == "bjensen");
    // Bad filters.
    for bad in [r#"userName eq"#, r#"nope eq "x""#, r#"name.nope pr"#] {
        let (st, e) = scim.get(&format!("/Users?{}", q(bad))).await;
        assert_eq!(
            (st, e["scimType"].as_str()),
            (400, Some("invalidFilter")),
            "{bad}: {e}"
        );
    }

    // PUT with an ETag: the current version passes, a stale one is 412.
    let (_, etag, current) = scim
        .call(Method::GET, &format!("/Users/{bjensen}"), None, None)
        .await;
    let etag = etag.unwrap();
    let mut changed = current.clone();
    changed["displayName"] = json!("Babs Jensen");
    let (st, new_tag, v) = scim
        .call(
            Method::PUT,
            &format!("/Users/{bjensen}"),
            Some(&etag),
            Some(changed.clone()),
        )
        .await;
    assert_eq!(
        (st, v["displayName"].clone()),
        (200, json!("Babs Jensen")),
        "{v}"
    );
    assert_ne!(new_tag.as_deref(), Some(etag.as_str()));
    let (st, _, e) = scim
        .call(
            Method::PUT,
            &format!("/Users/{bjensen}"),
            Some(&etag),
            Some(changed),
        )
        .await;
    assert_eq!(st, 412, "{e}");

    // PATCH: value paths with filters, sub-attributes, no path.
    let patch = |ops: Value| json!({"schemas": [PATCH], "Operations": ops});
    let (st, _, v) = scim.call(Method::PATCH, &format!("/Users/{bjensen}"), None, Some(patch(json!([
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "barbara@example.com"},
        {"op": "replace", "path": "name.givenName", "value": "Babs"},
        {"op": "Replace", "value": {"active": false}},
        {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Support"},
    ])))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["emails"][0]["value"], "barbara@example.com");
    assert_eq!(
        (v["name"]["givenName"].clone(), v["active"].clone()),
        (json!("Babs"), json!(false))
    );
    assert_eq!(v[ENTERPRISE]["department"], "Support");
    let before = log_len(&s).await;
    let (st, _, e) = scim
        .call(
            Method::PATCH,
            &format!("/Users/{bjensen}"),
            None,
            Some(patch(json!([
                {"op": "replace", "path": "name.familyName", "value": "Nope"},
                {"op": "replace", "path": "emails[type eq \"home\"].value", "value": "b@home.example"},
            ]))),
        )
        .await;
    assert_eq!((st, e["scimType"].as_str()), (400, Some("noTarget")), "{e}");
    let (st, _, e) = scim
        .call(
            Method::PATCH,
            &format!("/Users/{bjensen}"),
            None,
            Some(patch(json!([{"op": "sing"}]))),
        )
        .await;
    assert_eq!(
        (st, e["scimType"].as_str()),
        (400, Some("invalidSyntax")),
        "{e}"
    );
    assert_eq!(log_len(&s).await, before, "a refused PATCH writes nothing");

    // Groups: members, nesting through PATCH, a cycle refused.
    let (_, jsmith) = scim
        .get(&q(r#"userName eq "jsmith""#).replace("filter=", "/Users?filter="))
        .await;
    let jsmith = jsmith["Resources"][0]["id"].as_str().unwrap().to_owned();
    let (st, _, eng) = scim
        .call(
            Method::POST,
            "/Groups",
            None,
            Some(json!({
                "schemas": [GROUP], "displayName": "Engineering", "members": [{"value": jsmith}],
            })),
        )
        .await;
    assert_eq!(st, 201, "{eng}");
    let eng_id = eng["id"].as_str().unwrap().to_owned();
    let (_, _, staff) = scim.call(Method::POST, "/Groups", None, Some(json!({
        "schemas": [GROUP], "displayName": "Staff", "members": [{"value": eng_id, "type": "Group"}],
    }))).await;
    let staff_id = staff["id"].as_str().unwrap().to_owned();
    // A cycle refuses the whole request: the rename and the user beside
    // it are not written either.
    let before = log_len(&s).await;
    let (st, _, e) = scim
        .call(
            Method::PATCH,
            &format!("/Groups/{eng_id}"),
            None,
            Some(patch(json!([
                {"op": "replace", "path": "displayName", "value": "Circular"},
                {"op": "add", "path": "members", "value": [{"value": bjensen}, {"value": staff_id, "type": "Group"}]},
            ]))),
        )
        .await;
    assert_eq!(
        (st, e["scimType"].as_str()),
        (400, Some("invalidValue")),
        "a cycle: {e}"
    );
    assert_eq!(
        log_len(&s).await,
        before,
        "a refused replacement writes nothing"
    );
    let (_, v) = scim.get(&format!("/Groups/{eng_id}")).await;
    assert_eq!(
        (
            v["displayName"].clone(),
            v["members"].as_array().map(Vec::len)
        ),
        (json!("Engineering"), Some(1)),
        "{v}"
    );
    let (st, _, v) = scim
        .call(
            Method::PATCH,
            &format!("/Groups/{eng_id}"),
            None,
            Some(patch(json!([
                {"op": "add", "path": "members", "value": [{"value": bjensen}]},
                {"op": "replace", "path": "displayName", "value": "Engineers"},
            ]))),
        )
        .await;
    assert_eq!(
        (
            st,
            v["members"].as_array().map(Vec::len),
            v["displayName"].clone()
        ),
        (200, Some(2), json!("Engineers")),
        "{v}"
    );
    let (_, u) = scim.get(&format!("/Users/{jsmith}")).await;
    let groups: Vec<(&str, &str)> = u["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["display"].as_str().unwrap(), g["type"].as_str().unwrap()))
        .collect();
    assert!(
        groups.contains(&("Engineers", "direct")) && groups.contains(&("Staff", "indirect")),
        "{u}"
    );
    let (st, _, v) = scim
        .call(
            Method::PATCH,
            &format!("/Groups/{eng_id}"),
            None,
            Some(patch(json!([
                {"op": "remove", "path": format!("members[value eq \"{jsmith}\"]")},
            ]))),
        )
        .await;
    assert_eq!(
        (st, v["members"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{v}"
    );
    let (_, found) = scim
        .get(&format!("/Groups?{}", q(r#"displayName eq "engineers""#)))
        .await;
    assert_eq!(found["totalResults"], 1);
    let (st, e) = scim
        .get(&format!("/Groups?{}", q(r#"userName eq "x""#)))
        .await;
    assert_eq!((st, e["scimType"].as_str()), (400, Some("invalidFilter")));

    // Bulk, with a reference to a user created in the same request.
    let (st, _, bulk) = scim.call(Method::POST, "/Bulk", None, Some(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "u1", "data": person("kjones", "Kim", "Jones", "kim@example.com", "Ops")},
            {"method": "POST", "path": "/Groups", "bulkId": "g1", "data": {"schemas": [GROUP], "displayName": "Ops", "members": [{"value": "bulkId:u1", "type": "User"}]}},
            {"method": "PATCH", "path": "/Users/bulkId:u1", "data": {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "nickName", "value": "KJ"}]}},
        ],
    }))).await;
    assert_eq!(st, 200, "{bulk}");
    let statuses: Vec<&str> = bulk["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["201", "201", "200"], "{bulk}");
    let ops_group = bulk["Operations"][1]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let (_, g) = scim.get(&format!("/Groups/{ops_group}")).await;
    let kim = bulk["Operations"][0]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    assert_eq!(g["members"][0]["value"], json!(kim));
    let (_, _, bulk) = scim.call(Method::POST, "/Bulk", None, Some(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "failOnErrors": 1,
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "dup", "data": person("kjones", "K", "J", "k2@example.com", "x")},
            {"method": "POST", "path": "/Users", "bulkId": "next", "data": person("never", "N", "N", "n@example.com", "x")},
        ],
    }))).await;
    let ops = bulk["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1, "stops after failOnErrors errors: {bulk}");
    assert_eq!(
        (
            ops[0]["status"].clone(),
            ops[0]["response"]["scimType"].clone()
        ),
        (json!("409"), json!("uniqueness"))
    );

    // Deletion is erasure: gone from SCIM and from its groups.
    let (st, _, _) = scim
        .call(Method::DELETE, &format!("/Users/{bjensen}"), None, None)
        .await;
    assert_eq!(st, 204);
    assert_eq!(scim.get(&format!("/Users/{bjensen}")).await.0, 404);
    let (_, g) = scim.get(&format!("/Groups/{eng_id}")).await;
    assert_eq!(g["members"], json!([]), "{g}");
    let (st, _, _) = scim
        .call(Method::DELETE, &format!("/Groups/{staff_id}"), None, None)
        .await;
    assert_eq!(st, 204);
    assert_eq!(scim.get(&format!("/Groups/{staff_id}")).await.0, 404);
}

#[tokio::test]
async fn a_scim_client_provisions_users_and_groups_on_sqlite() {
    round_trips(Store::Sqlite).await;
}

#[tokio::test]
async fn a_scim_client_provisions_users_and_groups_on_postgres() {
    round_trips(Store::Postgres).await;
}

/// What SCIM testers probe beyond the round trips: `or` across pushed-down
/// terms, PATCH replace of part of a complex attribute, writes refused
/// whole, `.search`, `If-None-Match`, challenges, `/Me`, Bulk locations and
/// removing listed members.
#[tokio::test]
async fn a_scim_tester_finds_the_letter_of_the_rfc() {
    let Some(s) = TestServer::start(Store::Sqlite, "scim-letter").await else {
        return;
    };
    let (scim, _, _) = provisioning_client(&s).await;
    let mut ids = Vec::new();
    for (u, g, f, e, d) in [
        ("ann", "Ann", "Lee", "ann@example.com", "Sales"),
        ("bob", "Bob", "Ray", "bob@example.com", "Ops"),
        ("cyd", "Cyd", "Poe", "cyd@example.com", "Ops"),
    ] {
        let (st, _, v) = scim
            .call(Method::POST, "/Users", None, Some(person(u, g, f, e, d)))
            .await;
        assert_eq!(st, 201, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let (st, _, _) = scim
        .call(
            Method::PATCH,
            &format!("/Users/{}", ids[2]),
            None,
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]})),
        )
        .await;
    assert_eq!(st, 200);

    // An `or` whose first term SQL could answer still finds the others.
    let mut found = scim
        .names(&q(r#"userName eq "ann" or active eq false"#))
        .await;
    found.sort();
    assert_eq!(found, ["ann", "cyd"]);
    let found = scim
        .names(&format!(
            "{}&sortBy=userName&sortOrder=descending",
            q(r#"userName eq "bob" and active eq true"#)
        ))
        .await;
    assert_eq!(found, ["bob"]);

    // PATCH replace of a complex attribute keeps what it does not name.
    let (st, _, v) = scim
        .call(
            Method::PATCH,
            &format!("/Users/{}", ids[0]),
            None,
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "name", "value": {"givenName": "Anne"}}]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (
            v["name"]["givenName"].clone(),
            v["name"]["familyName"].clone()
        ),
        (json!("Anne"), json!("Lee"))
    );
    // An email added as primary takes the place of the one before.
    let (st, _, v) = scim
        .call(
            Method::PATCH,
            &format!("/Users/{}", ids[0]),
            None,
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "emails", "value": [{"value": "ann@new.example", "primary": true}]}]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["emails"][0]["value"], "ann@new.example", "{v}");

    // A refused part refuses the whole request, and nothing is written.
    let before = log_len(&s).await;
    let (st, _, e) = scim
        .call(
            Method::PATCH,
            &format!("/Users/{}", ids[0]),
            None,
            Some(json!({"schemas": [PATCH], "Operations": [
                {"op": "replace", "path": "displayName", "value": "Changed"},
                {"op": "replace", "path": "password", "value": "short"}]})),
        )
        .await;
    assert_eq!(
        (st, e["scimType"].clone()),
        (400, json!("invalidValue")),
        "{e}"
    );
    let stranger = "0190aaaa-0000-7000-8000-000000000000";
    let (st, _, e) = scim
        .call(
            Method::POST,
            "/Groups",
            None,
            Some(json!({"schemas": [GROUP], "displayName": "Orphans", "members": [{"value": stranger}]})),
        )
        .await;
    assert_eq!(
        (st, e["scimType"].clone()),
        (400, json!("invalidValue")),
        "{e}"
    );
    assert_eq!(log_len(&s).await, before, "nothing written for either");
    let (_, v) = scim.get(&format!("/Users/{}", ids[0])).await;
    assert_eq!(v["displayName"], "Ann Lee");

    // POST /.search takes the list's parameters in the body.
    let (st, _, v) = scim
        .call(
            Method::POST,
            "/Users/.search",
            None,
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": "name.familyName sw \"R\" or name.familyName sw \"P\"",
                "sortBy": "userName", "attributes": ["userName"], "startIndex": 1, "count": 1,
            })),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (
            v["totalResults"].clone(),
            v["Resources"][0]["userName"].clone()
        ),
        (json!(2), json!("bob"))
    );
    assert!(
        v["Resources"][0].get("name").is_none(),
        "only the attributes asked for"
    );
    let (st, _, e) = scim
        .call(
            Method::POST,
            "/Groups/.search",
            None,
            Some(json!({"filter": "displayName pr"})),
        )
        .await;
    assert_eq!((st, e["scimType"].clone()), (400, json!("invalidSyntax")));

    // If-None-Match with the current version: 304; after a change: 200.
    let (_, tag, _) = scim
        .call(Method::GET, &format!("/Users/{}", ids[1]), None, None)
        .await;
    let tag = tag.unwrap();
    let cached = |tag: String| {
        http()
            .get(s.url(&format!("/scim/v2/Users/{}", ids[1])))
            .bearer_auth(&scim.token)
            .header("if-none-match", tag)
            .send()
    };
    let r = cached(tag.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), tag);
    assert_eq!(
        cached("W/\"0\"".into()).await.unwrap().status().as_u16(),
        200
    );

    // Challenges and /Me.
    let r = http()
        .get(s.url("/scim/v2/Users"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let (st, _, e) = scim.call(Method::GET, "/Me", None, None).await;
    assert_eq!((st, e["status"].clone()), (501, json!("501")));
    let (st, _, e) = scim.call(Method::GET, "/Devices", None, None).await;
    assert_eq!((st, e["status"].clone()), (404, json!("404")));
    let huge = json!({"schemas": [GROUP], "displayName": "x".repeat(2 << 20)});
    let (st, _, e) = scim.call(Method::POST, "/Groups", None, Some(huge)).await;
    assert_eq!(st, 413);
    assert!(
        e["detail"].as_str().unwrap().contains("maxPayloadSize"),
        "{e}"
    );

    // Members listed in a remove's value are the only ones removed, and
    // every Bulk answer but a failed POST's names its resource.
    let (st, _, g) = scim
        .call(
            Method::POST,
            "/Groups",
            None,
            Some(json!({"schemas": [GROUP], "displayName": "All", "members": ids.iter().map(|i| json!({"value": i})).collect::<Vec<_>>()})),
        )
        .await;
    assert_eq!(st, 201, "{g}");
    let group = g["id"].as_str().unwrap().to_owned();
    let (st, _, g) = scim
        .call(
            Method::PATCH,
            &format!("/Groups/{group}"),
            None,
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "Remove", "path": "members", "value": [{"value": ids[0]}]}]})),
        )
        .await;
    assert_eq!(st, 200, "{g}");
    let mut left: Vec<String> = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect();
    left.sort();
    let mut want = vec![ids[1].clone(), ids[2].clone()];
    want.sort();
    assert_eq!(left, want);
    // Nesting a group changes the parent's version: an earlier one is
    // stale for If-Match and no longer current for If-None-Match.
    let (_, before, was) = scim
        .call(Method::GET, &format!("/Groups/{group}"), None, None)
        .await;
    let (st, _, inner) = scim
        .call(
            Method::POST,
            "/Groups",
            None,
            Some(json!({"schemas": [GROUP], "displayName": "Inner", "externalId": "aad-7f3e"})),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(inner["externalId"], "aad-7f3e", "{inner}");
    let (st, v) = scim
        .get(&format!("/Groups?{}", q(r#"externalId eq "aad-7f3e""#)))
        .await;
    assert_eq!((st, v["totalResults"].clone()), (200, json!(1)), "{v}");
    let (st, v) = scim
        .get(&format!("/Groups?{}", q(r#"externalId eq "AAD-7F3E""#)))
        .await;
    assert_eq!(
        (st, v["totalResults"].clone()),
        (200, json!(0)),
        "externalId is case-exact"
    );
    let nest = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": inner["id"], "type": "Group"}]}]});
    let (st, after, now) = scim
        .call(
            Method::PATCH,
            &format!("/Groups/{group}"),
            before.as_deref(),
            Some(nest.clone()),
        )
        .await;
    assert_eq!(st, 200);
    assert_ne!(after, before, "a nested group moves the version");
    let modified = |d: &Value| {
        time::OffsetDateTime::parse(
            d["meta"]["lastModified"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert!(
        modified(&now) > modified(&was),
        "and the time it was last modified"
    );
    let (st, _, e) = scim
        .call(
            Method::PATCH,
            &format!("/Groups/{group}"),
            before.as_deref(),
            Some(nest),
        )
        .await;
    assert_eq!(st, 412, "{e}");
    let r = http()
        .get(s.url(&format!("/scim/v2/Groups/{group}")))
        .bearer_auth(&scim.token)
        .header("if-none-match", before.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let (st, _, bulk) = scim
        .call(
            Method::POST,
            "/Bulk",
            None,
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": [
                    {"method": "DELETE", "path": format!("/Groups/{group}")},
                    {"method": "DELETE", "path": format!("/Groups/{group}")},
                ],
            })),
        )
        .await;
    assert_eq!(st, 200, "{bulk}");
    let location = s.url(&format!("/scim/v2/Groups/{group}"));
    for (op, status) in bulk["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["204", "404"])
    {
        assert_eq!(
            (op["status"].as_str(), op["location"].as_str()),
            (Some(status), Some(location.as_str())),
            "{op}"
        );
    }

    // Writes answer the resource narrowed as asked (RFC 7644 §3.9).
    let mut dee = person("dee", "Dee", "Lo", "dee@example.com", "Ops");
    let (st, _, v) = scim
        .call(
            Method::POST,
            "/Users?attributes=userName",
            None,
            Some(dee.clone()),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let dee_id = v["id"].as_str().unwrap().to_owned();
    assert!(
        v.get("emails").is_none() && v["userName"] == "dee" && v["meta"].is_object(),
        "{v}"
    );
    dee["displayName"] = json!("Dee L.");
    let (st, _, v) = scim
        .call(
            Method::PUT,
            &format!("/Users/{dee_id}?excludedAttributes=emails,name"),
            None,
            Some(dee),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(
        v.get("emails").is_none() && v.get("name").is_none() && v["displayName"] == "Dee L.",
        "{v}"
    );
    // A PATCH path naming no attribute is refused, and nothing written.
    let before = log_len(&s).await;
    let bogus = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "bogus", "value": "x"}]});
    let (st, _, e) = scim
        .call(
            Method::PATCH,
            &format!("/Users/{dee_id}"),
            None,
            Some(bogus),
        )
        .await;
    assert_eq!(
        (st, e["scimType"].as_str()),
        (400, Some("invalidPath")),
        "{e}"
    );
    // Neither may a required attribute go, nor a read-only one change.
    for op in [
        json!({"op": "remove", "path": "userName"}),
        json!({"op": "replace", "path": "id", "value": stranger}),
    ] {
        let (st, _, e) = scim
            .call(
                Method::PATCH,
                &format!("/Users/{dee_id}"),
                None,
                Some(json!({"schemas": [PATCH], "Operations": [op]})),
            )
            .await;
        assert_eq!(
            (st, e["scimType"].as_str()),
            (400, Some("mutability")),
            "{e}"
        );
    }
    assert_eq!(log_len(&s).await, before);
    // Sorted by an attribute only one has: those without it last when
    // ascending, first when descending (RFC 7644 §3.4.2.3).
    let title = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "title", "value": "Lead"}]});
    let (st, _, _) = scim
        .call(
            Method::PATCH,
            &format!("/Users/{dee_id}"),
            None,
            Some(title),
        )
        .await;
    assert_eq!(st, 200);
    let up = scim.names("sortBy=title").await;
    let down = scim.names("sortBy=title&sortOrder=descending").await;
    assert_eq!(
        (
            up.first().map(String::as_str),
            down.last().map(String::as_str)
        ),
        (Some("dee"), Some("dee")),
        "{up:?} {down:?}"
    );
    let (st, _, v) = scim
        .call(
            Method::POST,
            "/Groups?excludedAttributes=members",
            None,
            Some(json!({
            "schemas": [GROUP], "displayName": "Night shift", "members": [{"value": dee_id}]})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert!(v.get("members").is_none(), "{v}");
    // Removing someone who is not a member succeeds and changes nothing
    // (RFC 7644 §3.5.2.2).
    let night = v["id"].as_str().unwrap().to_owned();
    let (st, _, v) = scim
        .call(
            Method::PATCH,
            &format!("/Groups/{night}"),
            None,
            Some(json!({"schemas": [PATCH], "Operations": [
                {"op": "remove", "path": format!("members[value eq \"{stranger}\"]")}]})),
        )
        .await;
    assert_eq!(
        (st, v["members"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{v}"
    );

    // Discovery takes no filter (RFC 7644 §4); a method an endpoint does
    // not take is a SCIM error that says which it does.
    for path in ["/ResourceTypes", "/Schemas"] {
        let (st, _, e) = scim
            .call(
                Method::GET,
                &format!("{path}?{}", q(r#"name eq "User""#)),
                None,
                None,
            )
            .await;
        assert_eq!(
            (st, e["status"].as_str()),
            (403, Some("403")),
            "{path}: {e}"
        );
    }
    let r = http()
        .delete(s.url("/scim/v2/Users"))
        .bearer_auth(&scim.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let allow = r.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_eq!(r.headers()["content-type"], "application/scim+json");
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        e["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
}

/// However a person is deactivated (SCIM, a bulk action), their sessions
/// end: reactivating them does not bring the old cookies back.
#[tokio::test]
async fn deactivation_by_scim_or_in_bulk_ends_sessions() {
    use crate::sign_in::{PASSWORD, admin_call, create_user, home, send, sign_in};
    let Some(s) = TestServer::start(Store::Sqlite, "scim-sessions").await else {
        return;
    };
    let (scim, _, _) = provisioning_client(&s).await;
    let admin = s.admin().await;
    let ada = create_user(&s, &admin, "ada", Some(PASSWORD)).await;
    let active = |on: bool| json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": on}]});
    let path = format!("/Users/{ada}");
    let by_scim = |on: bool| scim.call(Method::PATCH, &path, None, Some(active(on)));
    let in_bulk = |action: &'static str| {
        admin_call(
            &s,
            &admin,
            Method::POST,
            "/admin/users/bulk",
            Some(json!({"action": action, "user_ids": [ada]})),
        )
    };
    for through_scim in [true, false] {
        let c = home();
        sign_in(&s, &c, &admin, "ada").await;
        let (st, _, _) = send(&c, Method::GET, s.url("/self/sessions"), None).await;
        assert_eq!(st, 200);
        if through_scim {
            assert_eq!(by_scim(false).await.0, 200);
            assert_eq!(by_scim(true).await.0, 200);
        } else {
            assert_eq!(in_bulk("deactivate").await.0, 200);
            assert_eq!(in_bulk("reactivate").await.0, 200);
        }
        let (st, _, v) = send(&c, Method::GET, s.url("/self/sessions"), None).await;
        assert_eq!(st, 401, "the session ended with the deactivation: {v}");
    }
}

/// The full user of RFC 7643 §8.2 (less its certificate, entitlements and
/// roles, which this server does not keep).
fn full_user() -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": "701984",
        "userName": "bjensen@example.com",
        "name": {"familyName": "Jensen", "givenName": "Barbara", "middleName": "Jane"},
        "displayName": "Babs Jensen",
        "nickName": "Babs",
        "profileUrl": "https://login.example.com/bjensen",
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "addresses": [
            {"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood",
             "region": "CA", "postalCode": "91608", "country": "USA",
             "formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA", "primary": true},
            {"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood",
             "region": "CA", "postalCode": "91608", "country": "USA",
             "formatted": "456 Hollywood Blvd\nHollywood, CA 91608 USA"}
        ],
        "phoneNumbers": [
            {"value": "555-555-5555", "type": "work"},
            {"value": "555-555-4444", "type": "mobile"}
        ],
        "ims": [{"value": "someaimhandle", "type": "aim"}],
        "photos": [
            {"value": "https://photos.example.com/profilephoto/72930000000Ccne/F", "type": "photo"},
            {"value": "https://photos.example.com/profilephoto/72930000000Ccne/T", "type": "thumbnail"}
        ],
        "userType": "Employee",
        "title": "Tour Guide",
        "preferredLanguage": "en-US",
        "locale": "en-US",
        "timezone": "America/Los_Angeles",
        "active": true,
        ENTERPRISE: {"employeeNumber": "701984", "costCenter": "4130", "organization": "Universal Studios",
                     "division": "Theme Park", "department": "Tour Operations"}
    })
}

/// Each element of `attr` as (value, type, primary).
fn elements(doc: &Value, attr: &str) -> Vec<(Value, Value, Value)> {
    doc[attr]
        .as_array()
        .unwrap_or_else(|| panic!("{attr} in {doc}"))
        .iter()
        .map(|e| {
            let value = e
                .get("value")
                .cloned()
                .unwrap_or(e["streetAddress"].clone());
            (value, e["type"].clone(), e["primary"].clone())
        })
        .collect()
}

#[tokio::test]
async fn a_scim_client_reads_back_every_value_it_wrote() {
    let Some(s) = TestServer::start(Store::Sqlite, "scim-multi").await else {
        return;
    };
    let (scim, _, _) = provisioning_client(&s).await;
    let (st, _, v) = scim
        .call(Method::POST, "/Users", None, Some(full_user()))
        .await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (_, v) = scim.get(&format!("/Users/{id}")).await;
    let t = |s: &str| json!(s);
    assert_eq!(
        elements(&v, "emails"),
        [
            (t("bjensen@example.com"), t("work"), json!(true)),
            (t("babs@jensen.org"), t("home"), json!(false)),
        ]
    );
    // Numbers with no country code are kept as written, and none is the
    // one codes are sent to.
    assert_eq!(
        elements(&v, "phoneNumbers"),
        [
            (t("555-555-5555"), t("work"), json!(false)),
            (t("555-555-4444"), t("mobile"), json!(false)),
        ]
    );
    assert_eq!(
        elements(&v, "ims"),
        [(t("someaimhandle"), t("aim"), json!(false))]
    );
    assert_eq!(
        elements(&v, "photos"),
        [
            (
                t("https://photos.example.com/profilephoto/72930000000Ccne/F"),
                t("photo"),
                json!(true)
            ),
            (
                t("https://photos.example.com/profilephoto/72930000000Ccne/T"),
                t("thumbnail"),
                json!(false)
            ),
        ]
    );
    assert_eq!(
        elements(&v, "addresses"),
        [
            (t("100 Universal City Plaza"), t("work"), json!(true)),
            (t("456 Hollywood Blvd"), t("home"), json!(false)),
        ]
    );
    assert_eq!(
        v["addresses"][1]["formatted"],
        "456 Hollywood Blvd\nHollywood, CA 91608 USA"
    );
    for (attr, value) in [
        ("title", "Tour Guide"),
        ("userType", "Employee"),
        ("preferredLanguage", "en-US"),
        ("profileUrl", "https://login.example.com/bjensen"),
        ("externalId", "701984"),
    ] {
        assert_eq!(v[attr], value, "{attr}");
    }

    // Filters reach the further values and their kinds.
    assert_eq!(
        scim.names(&q(r#"emails[type eq "home" and value co "jensen.org"]"#))
            .await,
        ["bjensen@example.com"]
    );
    assert_eq!(
        scim.names(&q(
            r#"phoneNumbers[type eq "mobile"] and title eq "Tour Guide""#
        ))
        .await,
        ["bjensen@example.com"]
    );
    assert!(scim.names(&q(r#"ims.type eq "xmpp""#)).await.is_empty());

    // A number in `tel:` form is the user's, kept in E.164 form and shown
    // as written; a removal by value filter takes one further email.
    let ops = json!({"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "phoneNumbers", "value": [{"value": "tel:+1-201-555-0123", "type": "mobile", "primary": true}]},
        {"op": "remove", "path": "emails[type eq \"home\"]"}]});
    let (st, _, v) = scim
        .call(Method::PATCH, &format!("/Users/{id}"), None, Some(ops))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        elements(&v, "phoneNumbers"),
        [
            (t("tel:+1-201-555-0123"), t("mobile"), json!(true)),
            (t("555-555-5555"), t("work"), json!(false)),
            (t("555-555-4444"), t("mobile"), json!(false)),
        ]
    );
    assert_eq!(
        elements(&v, "emails"),
        [(t("bjensen@example.com"), t("work"), json!(true))]
    );
    let admin = s.admin().await;
    let (st, u) =
        crate::sign_in::admin_call(&s, &admin, Method::GET, &format!("/admin/users/{id}"), None)
            .await;
    assert_eq!(st, 200, "{u}");
    assert_eq!(u["phone_number"], "+12015550123");

    // As Entra ID patches: an add through a filter that matches nothing
    // adds the element, and keys of a value without a path are paths.
    let ops = json!({"schemas": [PATCH], "Operations": [
        {"op": "Add", "path": "emails[type eq \"other\"].value", "value": "babs@other.example"},
        {"op": "Replace", "value": {
            "name.familyName": "Jensen-Smith",
            format!("{ENTERPRISE}:department"): "Rides"}}]});
    let (st, _, v) = scim
        .call(Method::PATCH, &format!("/Users/{id}"), None, Some(ops))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        elements(&v, "emails"),
        [
            (t("bjensen@example.com"), t("work"), json!(true)),
            (t("babs@other.example"), t("other"), json!(false)),
        ]
    );
    assert_eq!(v["name"]["familyName"], "Jensen-Smith");
    assert_eq!(v[ENTERPRISE]["department"], "Rides", "{v}");

    // A further email of the wrong shape is refused, and nothing written.
    let before = log_len(&s).await;
    let mut bad = full_user();
    bad["emails"][1]["value"] = json!("not an address");
    let (st, _, e) = scim
        .call(Method::PUT, &format!("/Users/{id}"), None, Some(bad))
        .await;
    assert_eq!(
        (st, e["scimType"].clone()),
        (400, json!("invalidValue")),
        "{e}"
    );
    assert_eq!(log_len(&s).await, before);
}
