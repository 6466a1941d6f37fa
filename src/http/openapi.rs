//! The OpenAPI 3.0 document `/openapi.json` serves: built from the table of operations
//! below and the JSON Schemas of the very types the handlers read and answer (schemars), so
//! a body field or a bound cannot drift from the code. `src/http/openapi.json` is a copy
//! for readers, kept current by a test.
//! Invariant: every route of the router is here with every status it can answer.

use crate::control::{TenantRecord, Trashed, schedule::RunRow};
use crate::executor::{DryRun, Outcome};
use crate::shop::catalog::{CustomerInput, CustomerView, NewProduct, ProductPatch, ProductView};
use crate::shop::report::{MessageView, OrderView, SaleView, SalesSummary};
use crate::shop::staff::{ChatLink, JoinCode, StaffInput, StaffView};
use crate::store::{Created, NewTenant};
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

/// The document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

/// Who may call an operation.
#[derive(Clone, Copy, PartialEq)]
enum Auth {
    /// No credentials.
    Public,
    /// The operator token only.
    Operator,
    /// The operator token or the tenant's own key.
    Tenant,
}

/// One operation, built up from `Op::new`: a tenant route with its `{tenant}` parameter
/// unless told otherwise.
struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    params: Vec<Value>,
    body: Option<Value>,
    /// The success answers: status and the response object.
    ok: Vec<(u16, Value)>,
    /// Error statuses beyond those every operation of its kind can answer.
    errors: &'static [u16],
}

impl Op {
    fn new(method: &'static str, path: &'static str, summary: &'static str) -> Op {
        let tenant_route = path.contains("{tenant}");
        Op {
            method,
            path,
            summary,
            auth: if tenant_route {
                Auth::Tenant
            } else {
                Auth::Public
            },
            params: if tenant_route { vec![tenant()] } else { vec![] },
            body: None,
            ok: vec![],
            errors: &[],
        }
    }

    fn auth(mut self, auth: Auth) -> Op {
        self.auth = auth;
        self
    }

    fn param(mut self, p: Value) -> Op {
        self.params.push(p);
        self
    }

    /// A path's `{tenant}` with its own example (routes that delete or restore one).
    fn tenant_example(mut self, example: &str) -> Op {
        self.params[0] = path_param(
            "tenant",
            json!({"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}),
            json!(example),
            "the tenant's id",
        );
        self
    }

    fn body(mut self, schema: Value) -> Op {
        self.body = Some(json_body(schema));
        self
    }

    fn ok(mut self, status: u16, answer: Value) -> Op {
        self.ok.push((status, answer));
        self
    }

    /// A JSON answer with `description`.
    fn json(self, status: u16, description: &str, schema: Value) -> Op {
        self.ok(status, json_answer(description, schema))
    }

    /// No body in the answer.
    fn empty(self, status: u16, description: &str) -> Op {
        self.ok(status, json!({ "description": description }))
    }

    /// One content type other than JSON.
    fn typed(self, status: u16, description: &str, content_type: &str, schema: Value) -> Op {
        self.ok(
            status,
            json!({"description": description, "content": {content_type: {"schema": schema}}}),
        )
    }

    fn errors(mut self, errors: &'static [u16]) -> Op {
        self.errors = errors;
        self
    }
}

struct Spec {
    req: SchemaGenerator,
    res: SchemaGenerator,
    paths: Map<String, Value>,
}

fn generator(serialize: bool) -> SchemaGenerator {
    let settings = SchemaSettings::openapi3();
    let settings = if serialize {
        settings.for_serialize()
    } else {
        settings.for_deserialize()
    };
    settings.into_generator()
}

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn json_answer(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn object(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required})
}

fn page(key: &str, item: Value, cursor: Option<(&str, Value)>) -> Value {
    let mut props = Map::new();
    props.insert(key.into(), json!({"type": "array", "items": item}));
    let mut required = vec![key.to_owned()];
    if let Some((name, schema)) = cursor {
        let mut s = schema;
        s["nullable"] = json!(true);
        props.insert(name.into(), s);
        required.push(name.to_owned());
    }
    json!({"type": "object", "properties": props, "required": required})
}

fn path_param(name: &str, schema: Value, example: Value, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": schema,
           "example": example, "description": description})
}

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema,
           "description": description})
}

/// The sync routes (`http::sync`): snapshot, changes, reset.
fn sync_ops(s: &mut Spec) {
    let position = json!({
        "tarn-sync-epoch": {"description": "the feed's epoch", "schema": {"type": "string"}},
        "tarn-sync-seq": {"description": "the position the body brings a client to", "schema": id64()},
        "tarn-sync-schema-version": {"description": "the tenant file's schema version", "schema": id64()},
    });
    let binary = json!({"type": "string", "format": "binary"});
    let mut snapshot = json!({"description": "a SQLite file of the synced tables, with a tarn_sync row (epoch, seq, schema_version)",
        "content": {"application/vnd.sqlite3": {"schema": binary.clone()}}});
    snapshot["headers"] = position.clone();
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/sync/snapshot",
            "Bootstrap a local copy: the synced tables as a SQLite file",
        )
        .ok(200, snapshot)
        .errors(&[507]),
    );
    let mut changes = json!({"description": "every change after `after`, combined into one SQLite session changeset",
        "content": {"application/octet-stream": {"schema": binary}}});
    changes["headers"] = position;
    let required = |name: &str, schema: Value, description: &str| {
        let mut q = query(name, schema, description);
        q["required"] = json!(true);
        q
    };
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/sync/changes",
            "Pull the changes after a position (long-poll with wait)",
        )
        .param(required("epoch", json!({"type": "string", "minLength": 1}), "the epoch of the client's copy"))
        .param(required("after", json!({"type": "integer", "format": "int64", "minimum": 0}), "the last position the client applied"))
        .param(query("schema_version", id64(), "the schema version of the client's copy"))
        .param(query(
            "wait",
            json!({"type": "integer", "minimum": 0, "maximum": super::sync::MAX_WAIT_SECS, "default": 0}),
            "seconds to wait for a change when there is none yet",
        ))
        .ok(200, changes)
        .empty(204, "nothing new within `wait` seconds")
        .errors(&[409]),
    );
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/events",
            "Live events: one per committed change (Server-Sent Events; resume with Last-Event-ID)",
        )
        .param(query(
            "after",
            json!({"type": "integer", "format": "int64", "minimum": 0}),
            "resume after this sequence number (as the Last-Event-ID header does)",
        ))
        .typed(
            200,
            "`change` events (id: the sequence number; data: {epoch, seq, what}) and `resync` events",
            "text/event-stream",
            json!({"type": "string"}),
        ),
    );
    s.add(
        Op::new(
            "post",
            "/v1/tenants/{tenant}/sync/reset",
            "Start a new epoch: every client re-bootstraps from a snapshot",
        )
        .auth(Auth::Operator)
        .json(
            200,
            "the feed's new position",
            object(
                json!({"epoch": {"type": "string"}, "seq": id64(), "schema_version": id64()}),
                &["epoch", "seq", "schema_version"],
            ),
        )
        .errors(&[404]),
    );
}

fn limit(default: u32) -> Value {
    query(
        "limit",
        json!({"type": "integer", "minimum": 1, "maximum": super::MAX_PAGE, "default": default}),
        "most rows in the answer",
    )
}

/// `after`: where a page listed by id starts.
fn after() -> Value {
    query(
        "after",
        json!({"type": "string"}),
        "next_after of the page before",
    )
}

fn id64() -> Value {
    json!({"type": "integer", "format": "int64"})
}

fn date() -> Value {
    json!({"type": "string", "format": "date", "example": "2026-11-22"})
}

fn tenant() -> Value {
    json!({"$ref": "#/components/parameters/tenant"})
}

fn id_param(what: &str) -> Value {
    path_param("id", id64(), json!(1), &format!("the {what}'s id"))
}

impl Spec {
    fn req<T: JsonSchema>(&mut self) -> Value {
        self.req.subschema_for::<T>().to_value()
    }

    fn res<T: JsonSchema>(&mut self) -> Value {
        self.res.subschema_for::<T>().to_value()
    }

    fn add(&mut self, op: Op) {
        let mut responses = Map::new();
        for (status, answer) in op.ok {
            responses.insert(status.to_string(), answer);
        }
        let mut errors: Vec<u16> = vec![408, 500];
        if op.auth != Auth::Public {
            errors.extend([400, 401, 403, 503]);
        }
        if op.auth == Auth::Tenant {
            errors.extend([404, 429]);
        }
        if matches!(op.method, "post" | "put" | "patch") {
            errors.push(507);
        }
        if op.body.is_some() {
            errors.extend([400, 413]);
            // Webhooks read raw bytes, whatever their content type.
            if op.auth != Auth::Public {
                errors.push(415);
            }
        }
        errors.extend(op.errors);
        errors.sort_unstable();
        errors.dedup();
        for e in errors {
            responses.insert(
                e.to_string(),
                json!({"$ref": format!("#/components/responses/E{e}")}),
            );
        }
        let mut o = json!({"summary": op.summary, "operationId": operation_id(op.method, op.path),
                           "responses": responses});
        if !op.params.is_empty() {
            o["parameters"] = Value::Array(op.params);
        }
        if let Some(b) = op.body {
            o["requestBody"] = b;
        }
        o["security"] = match op.auth {
            Auth::Public => json!([]),
            _ => json!([{"bearer": []}]),
        };
        if op.auth == Auth::Operator {
            o["description"] = json!("Operator token only; a tenant's key gets 403.");
        }
        let entry = self
            .paths
            .entry(op.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[op.method] = o;
    }
}

/// `get_v1_tenants_tenant_products_id`: a stable, unique name for an operation.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for part in path.split(['/', '.', '-']).filter(|p| !p.is_empty()) {
        id.push('_');
        id.push_str(part.trim_matches(['{', '}']));
    }
    id
}

const ERRORS: &[(u16, &str)] = &[
    (
        400,
        "bad input (body, path or query), an unknown sender or a figure the books cannot hold; nothing written",
    ),
    (401, "missing or unknown credentials"),
    (
        403,
        "credentials of another tenant, a tenant's key on an operator route, or a manager's device doing what only an owner may (managing keys, devices, staff, settings or channels; speaking as an owner)",
    ),
    (404, "no such tenant, row or route"),
    (408, "the request took longer than the request timeout"),
    (
        409,
        "conflicts with the current state (a name taken, a run in progress, the last owner)",
    ),
    (413, "the body is over the size limit"),
    (415, "the body is not sent as application/json"),
    (
        422,
        "the answer would be over the answer size cap; ask for fewer rows",
    ),
    (
        429,
        "too many requests for this tenant, or too many of its long-polls and event streams open at once; see Retry-After",
    ),
    (500, "internal error (logged)"),
    (502, "the chat provider refused or could not be reached"),
    (
        503,
        "busy, stopped by the statement timeout, or data from a newer version; try again",
    ),
    (
        507,
        "the server's disk is nearly full; nothing was written (see Retry-After)",
    ),
];

fn build() -> Value {
    let mut s = Spec {
        req: generator(false),
        res: generator(true),
        paths: Map::new(),
    };
    tenants(&mut s);
    shop(&mut s);
    schedules(&mut s);
    channels(&mut s);
    placement(&mut s);
    ops(&mut s);
    let mut schemas = s.res.take_definitions(true);
    for (name, schema) in s.req.take_definitions(true) {
        match schemas.get(&name) {
            Some(existing) if existing != &schema => {
                schemas.insert(format!("{name}Input"), schema);
            }
            _ => {
                schemas.insert(name, schema);
            }
        }
    }
    schemas.insert(
        "Error".into(),
        object(
            json!({"error": object(
                json!({"code": {"type": "string"}, "message": {"type": "string"}}),
                &["code", "message"],
            )}),
            &["error"],
        ),
    );
    let responses: Map<String, Value> = ERRORS
        .iter()
        .map(|(code, what)| {
            (
                format!("E{code}"),
                json_answer(what, json!({"$ref": "#/components/schemas/Error"})),
            )
        })
        .collect();
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "tarn",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tenant admin API of tarn. Operator routes need `Authorization: Bearer $TARN_ADMIN_TOKEN`; tenant routes take the operator token or the tenant's own API key (another tenant's key: 403). Every error is {\"error\": {\"code\", \"message\"}}. Money is a decimal number in the tenant's currency; quantities are decimal numbers; dates are local days, and every from/to range includes both ends."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "parameters": {"tenant": path_param(
                "tenant",
                json!({"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}),
                json!("demo"),
                "the tenant's id",
            )},
            "schemas": schemas,
            "responses": responses,
        },
        "security": [{"bearer": []}],
        "paths": s.paths,
    })
}

fn tenants(s: &mut Spec) {
    let record = s.res::<TenantRecord>();
    let created = s.res::<Created>();
    let new = s.req::<NewTenant>();
    s.add(
        Op::new(
            "post",
            "/v1/tenants",
            "Create a tenant (its API key is shown once)",
        )
        .auth(Auth::Operator)
        .body(new)
        .json(201, "created", created.clone())
        .errors(&[409]),
    );
    let page_schema = s.res::<super::tenants::Page>();
    s.add(
        Op::new("get", "/v1/tenants", "List active tenants by id")
            .auth(Auth::Operator)
            .param(limit(100))
            .param(after())
            .json(200, "a page", page_schema)
            .errors(&[422]),
    );
    s.add(
        Op::new("get", "/v1/tenants/{tenant}", "A tenant's record").json(
            200,
            "the tenant",
            record.clone(),
        ),
    );
    let replica = s.res::<super::tenants::ReplicaView>();
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/replica",
            "The tenant's continuous replica: its address, last sync and error",
        )
        .json(200, "the replica", replica),
    );
    // Operator-only routes under a tenant's path still read a tenant's key first (429, 404).
    s.add(
        Op::new(
            "delete",
            "/v1/tenants/{tenant}",
            "Delete a tenant: its files move to the trash",
        )
        .tenant_example("scratch")
        .auth(Auth::Operator)
        .json(200, "deleted", record)
        .errors(&[404, 429]),
    );
    s.add(
        Op::new(
            "post",
            "/v1/tenants/{tenant}/rotate-key",
            "Replace the tenant's API key",
        )
        .json(200, "the tenant and its new key", created.clone()),
    );
    s.add(
        Op::new(
            "post",
            "/v1/tenants/{tenant}/restore",
            "Bring the most recently deleted copy back from the trash, with a new key",
        )
        .auth(Auth::Operator)
        .json(200, "the tenant and its new key", created)
        .errors(&[404, 409, 429]),
    );
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/backup",
            "A consistent snapshot of the tenant's SQLite file",
        )
        .typed(
            200,
            "the database file",
            "application/vnd.sqlite3",
            json!({"type": "string", "format": "binary"}),
        )
        .errors(&[507]),
    );
    sync_ops(s);
    settings(s);
    trash(s);
}

/// The tenant's settings.
fn settings(s: &mut Spec) {
    let settings = object(
        json!({
            "currency": {"type": "string", "description": "fixed at creation"},
            "currency_digits": {"type": "integer", "description": "fixed at creation"},
            "timezone": {"type": "string", "description": "fixed at creation"},
            "greeting": {"type": "string"},
            "low_stock_default": {"type": "number"},
            "join_code_ttl_hours": {"type": "integer"},
        }),
        &[],
    );
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/settings",
            "The tenant's settings",
        )
        .json(200, "settings", settings.clone()),
    );
    s.add(
        Op::new(
            "patch",
            "/v1/tenants/{tenant}/settings",
            "Change settings (null: back to the default); all or nothing",
        )
        .body(json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "greeting": {"type": "string", "minLength": 1, "maxLength": 500, "nullable": true,
                             "description": "what a chat gets before it has joined"},
                "low_stock_default": {"type": "number", "minimum": 0, "nullable": true,
                                      "description": "units; the threshold of products without their own"},
                "join_code_ttl_hours": {"type": "integer", "minimum": 1, "maximum": 8760,
                                        "nullable": true, "description": "how long a new join code works"},
            }
        }))
        .json(200, "settings after", settings),
    );
}

/// The trash of deleted tenants.
fn trash(s: &mut Spec) {
    let trashed = s.res::<Trashed>();
    let trash_page = page(
        "trash",
        trashed.clone(),
        Some(("next_after", json!({"type": "string"}))),
    );
    s.add(
        Op::new(
            "get",
            "/v1/trash",
            "Deleted tenants whose files wait in the trash",
        )
        .auth(Auth::Operator)
        .param(limit(100))
        .param(after())
        .json(200, "a page", trash_page)
        .errors(&[422]),
    );
    s.add(
        Op::new(
            "delete",
            "/v1/trash/{tenant}",
            "Purge a tenant's trashed copies for good, with their replicas",
        )
        .auth(Auth::Operator)
        .param(query(
            "deleted_at",
            json!({"type": "string"}),
            "only the copy deleted then",
        ))
        .json(200, "what was purged", page("purged", trashed, None))
        .errors(&[404]),
    );
}

fn shop(s: &mut Spec) {
    let text = s.req::<super::shop::TextBody>();
    let dry = s.res::<DryRun>();
    let outcome = s.res::<Outcome>();
    s.add(
        Op::new(
            "post",
            "/v1/tenants/{tenant}/parse",
            "The action a text means, names resolved; writes nothing",
        )
        .body(text.clone())
        .json(200, "the action", dry),
    );
    s.add(
        Op::new(
            "post",
            "/v1/tenants/{tenant}/messages",
            "Run a chat message: parser, then executor",
        )
        .body(text)
        .json(200, "what happened", outcome.clone()),
    );
    let message = s.res::<MessageView>();
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/messages",
            "The message log, newest first",
        )
        .param(query("before", id64(), "next_before of the page before"))
        .param(limit(50))
        .param(query(
            "status",
            json!({"type": "string", "enum": ["applied", "rejected", "clarify"]}),
            "only this outcome",
        ))
        .param(query(
            "sender",
            json!({"type": "string"}),
            "only a staff member's (name or id)",
        ))
        .param(query("from", date(), "first local day"))
        .param(query("to", date(), "last local day (included)"))
        .json(
            200,
            "a page",
            page("messages", message, Some(("next_before", id64()))),
        )
        .errors(&[422]),
    );
    let action = action_body(s);
    s.add(
        Op::new(
            "post",
            "/v1/tenants/{tenant}/actions",
            "Run a structured action (the mobile app's writes)",
        )
        .body(action)
        .json(200, "what happened", outcome),
    );
    catalog(s);
    let sale = s.res::<SaleView>();
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/sales",
            "Sales between local days (both included; default today), newest first",
        )
        .param(query("from", date(), "first local day"))
        .param(query("to", date(), "last local day (included)"))
        .param(limit(500))
        .json(
            200,
            "sales",
            json!({"type": "object", "required": ["from", "to", "sales"], "properties": {
                "from": date(), "to": date(),
                "sales": {"type": "array", "items": sale},
            }}),
        )
        .errors(&[422]),
    );
    let order = s.res::<OrderView>();
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/orders",
            "Orders, newest first (default: pending and assigned)",
        )
        .param(query(
            "status",
            json!({"type": "string", "enum": ["pending", "assigned", "delivered", "cancelled"]}),
            "only this status",
        ))
        .param(limit(200))
        .json(200, "orders", page("orders", order, None))
        .errors(&[422]),
    );
    let summary = s.res::<SalesSummary>();
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/reports/sales",
            "Sales summary of a period, or of local days from/to (both included)",
        )
        .param(query(
            "period",
            json!({"type": "string", "enum": ["today", "yesterday", "this_week", "last_7_days",
                   "this_month", "last_month", "week", "7d", "month", "lastmonth"]}),
            "a named period (default today); not with from/to",
        ))
        .param(query("from", date(), "first local day"))
        .param(query(
            "to",
            date(),
            "last local day (included; at most 366 days)",
        ))
        .ok(
            200,
            json!({"description": "the summary (CSV with Accept: text/csv)", "content": {
                "application/json": {"schema": summary},
                "text/csv": {"schema": {"type": "string"}},
            }}),
        ),
    );
}

/// The body of `/actions`: an action (the contract) plus its optional idempotency key and
/// sender, in every one of the action's forms.
fn action_body(s: &mut Spec) -> Value {
    s.req::<crate::action::Action>();
    let defs = s.req.definitions_mut();
    let mut action = defs.get("Action").cloned().unwrap_or_default();
    let extra = json!({
        "id": {"type": "string", "minLength": 1, "maxLength": 200,
               "description": "idempotency key: the same id twice applies once"},
        "sender": {"type": "string", "minLength": 1, "maxLength": 200,
                   "description": "a staff member's name or id (default: the shop's owner)"},
    });
    for form in action
        .get_mut("oneOf")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(props) = form.get_mut("properties").and_then(Value::as_object_mut) {
            for (k, v) in extra.as_object().into_iter().flatten() {
                props.insert(k.clone(), v.clone());
            }
        }
    }
    defs.insert("ActionRequest".into(), action);
    json!({"$ref": "#/components/schemas/ActionRequest"})
}

/// The same five routes of a collection (list, add, get, change, remove), with their words.
struct Collection {
    list: &'static str,
    one: &'static str,
    key: &'static str,
    what: &'static str,
    /// Summaries: list, add, get, change, remove.
    says: [&'static str; 5],
}

fn collection(s: &mut Spec, c: Collection, item: Value, new: Value, patch: Value) {
    let id = || id_param(c.what);
    s.add(
        Op::new("get", c.list, c.says[0])
            .json(200, c.key, page(c.key, item.clone(), None))
            .errors(&[422]),
    );
    s.add(
        Op::new("post", c.list, c.says[1])
            .body(new)
            .json(201, "created", item.clone())
            .errors(&[409]),
    );
    s.add(
        Op::new("get", c.one, c.says[2])
            .param(id())
            .json(200, c.what, item.clone()),
    );
    s.add(
        Op::new("patch", c.one, c.says[3])
            .param(id())
            .body(patch)
            .json(200, "after", item)
            .errors(&[409]),
    );
    s.add(
        Op::new("delete", c.one, c.says[4])
            .param(id())
            .empty(204, "done")
            .errors(&[409]),
    );
}

fn catalog(s: &mut Spec) {
    let (product, new_product, patch_product) = (
        s.res::<ProductView>(),
        s.req::<NewProduct>(),
        s.req::<ProductPatch>(),
    );
    collection(
        s,
        Collection {
            list: "/v1/tenants/{tenant}/products",
            one: "/v1/tenants/{tenant}/products/{id}",
            key: "products",
            what: "product",
            says: [
                "Active products by name",
                "Add a product (an opening stock is a movement)",
                "A product",
                "Change a product (stock moves only through actions)",
                "Deactivate a product (its history stays)",
            ],
        },
        product,
        new_product,
        patch_product,
    );
    let (customer, input) = (s.res::<CustomerView>(), s.req::<CustomerInput>());
    collection(
        s,
        Collection {
            list: "/v1/tenants/{tenant}/customers",
            one: "/v1/tenants/{tenant}/customers/{id}",
            key: "customers",
            what: "customer",
            says: [
                "Customers by name, with what each owes",
                "Add a customer",
                "A customer",
                "Rename a customer or change their phone",
                "Remove a customer who has no history",
            ],
        },
        customer,
        input.clone(),
        input,
    );
    let (view, input) = (s.res::<StaffView>(), s.req::<StaffInput>());
    collection(
        s,
        Collection {
            list: "/v1/tenants/{tenant}/staff",
            one: "/v1/tenants/{tenant}/staff/{id}",
            key: "staff",
            what: "staff member",
            says: [
                "Staff, with unused join codes and linked chats",
                "Add a staff member (with a single-use join code)",
                "A staff member",
                "Rename, change the role of, or (de)activate (the last active owner stays)",
                "Deactivate a staff member (their history stays)",
            ],
        },
        view,
        input.clone(),
        input,
    );
    let (chat, code) = (s.res::<ChatLink>(), s.res::<JoinCode>());
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/staff/{id}/chats",
            "The chats linked to a staff member",
        )
        .param(id_param("staff member"))
        .json(200, "chats", page("chats", chat, None)),
    );
    s.add(
        Op::new(
            "delete",
            "/v1/tenants/{tenant}/staff/{id}/chats/{chat}",
            "Unlink a chat (a lost phone)",
        )
        .param(id_param("staff member"))
        .param(path_param("chat", id64(), json!(1), "the linked chat's id"))
        .empty(204, "unlinked"),
    );
    s.add(
        Op::new(
            "post",
            "/v1/tenants/{tenant}/staff/{id}/join-code",
            "A new single-use join code (the old one stops working)",
        )
        .param(id_param("staff member"))
        .json(201, "the code", code),
    );
    devices(s);
}

/// Device keys (`http::devices`).
fn devices(s: &mut Spec) {
    let new = s.req::<super::devices::NewDevice>();
    let created = s.res::<super::devices::CreatedDevice>();
    let device = s.res::<crate::control::device::Device>();
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/devices",
            "The shop's device keys (never the keys themselves)",
        )
        .json(
            200,
            "devices, revoked ones too",
            page("devices", device, None),
        ),
    );
    s.add(
        Op::new(
            "post",
            "/v1/tenants/{tenant}/devices",
            "A named, revocable key for one phone, with a role",
        )
        .body(new)
        .json(201, "the device and its key, shown once", created),
    );
    s.add(
        Op::new(
            "delete",
            "/v1/tenants/{tenant}/devices/{id}",
            "Revoke a device: its key is refused at once",
        )
        .param(id_param("device"))
        .empty(204, "revoked")
        .errors(&[404]),
    );
}

fn schedules(s: &mut Spec) {
    let kinds: Vec<&str> = crate::schedule::JobKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let schedule = s.res::<crate::control::schedule::ScheduleRow>();
    let schedule = json!({"allOf": [schedule, {"type": "object", "required": ["next_run", "description"], "properties": {
        "next_run": {"type": "string", "nullable": true, "description": "UTC"},
        "description": {"type": "string", "nullable": true},
    }}]});
    let list = page("schedules", schedule, None);
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/schedules",
            "The tenant's scheduled jobs with their next run",
        )
        .json(200, "schedules", list.clone()),
    );
    let body = s.req::<super::schedules::SchedulesBody>();
    s.add(
        Op::new(
            "put",
            "/v1/tenants/{tenant}/schedules",
            "Change schedules (fields left out stay); all or nothing",
        )
        .body(body)
        .json(200, "schedules after", list),
    );
    let run = s.res::<RunRow>();
    let kind = json!({"type": "string", "enum": kinds});
    s.add(
        Op::new(
            "post",
            "/v1/tenants/{tenant}/schedules/{kind}/run",
            "Run a job now (a manual run; the next slot stays)",
        )
        .param(path_param(
            "kind",
            kind.clone(),
            json!("daily_summary"),
            "the job kind",
        ))
        .json(
            200,
            "its ledger row",
            object(json!({"run": run.clone()}), &["run"]),
        )
        .errors(&[409]),
    );
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/runs",
            "The run ledger, newest first",
        )
        .param(query("kind", kind, "only this job"))
        .param(query("before", id64(), "next_before of the page before"))
        .param(limit(50))
        .json(
            200,
            "runs",
            page("runs", run, Some(("next_before", id64()))),
        )
        .errors(&[422]),
    );
    let report = s.res::<crate::shop::report::ReportView>();
    let report = json!({"allOf": [report, {"type": "object", "required": ["chart_url"],
                        "properties": {"chart_url": {"type": "string"}}}]});
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/reports",
            "Stored reports (the weekly report), newest first",
        )
        .param(query("before", id64(), "next_before of the page before"))
        .param(limit(20))
        .json(
            200,
            "reports",
            page("reports", report, Some(("next_before", id64()))),
        )
        .errors(&[422]),
    );
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/reports/{id}/chart.png",
            "A report's chart",
        )
        .param(id_param("report"))
        .typed(
            200,
            "the chart",
            "image/png",
            json!({"type": "string", "format": "binary"}),
        ),
    );
}

fn channels(s: &mut Spec) {
    let string = json!({"type": "string"});
    let nullable = json!({"type": "string", "nullable": true});
    let bound = |props: Value| json!({"type": "object", "nullable": true, "properties": props});
    s.add(
        Op::new(
            "get",
            "/v1/tenants/{tenant}/channels",
            "Both channel bindings at once (null: not bound)",
        )
        .json(
            200,
            "bindings",
            object(
                json!({
                    "telegram": bound(json!({"bot_id": string, "username": nullable,
                                              "bound_at": string, "webhook_url": nullable})),
                    "whatsapp": bound(json!({"phone_number_id": string, "display_phone_number": nullable,
                                              "bound_at": string, "webhook_url": nullable})),
                }),
                &["telegram", "whatsapp"],
            ),
        ),
    );
    let telegram = object(
        json!({"channel": string, "bot_id": string, "username": string, "webhook_url": string}),
        &["channel", "bot_id", "username", "webhook_url"],
    );
    let whatsapp = object(
        json!({"channel": string, "phone_number_id": string,
               "display_phone_number": {}, "verified_name": {}, "webhook_url": nullable}),
        &["channel", "phone_number_id", "webhook_url"],
    );
    let tg_body = s.req::<super::channels::TelegramBody>();
    let wa_body = s.req::<super::channels::WhatsAppBody>();
    let shown = |what| json_answer(what, json!({"type": "object"}));
    for (path, body, answer, says) in [
        (
            "/v1/tenants/{tenant}/channels/telegram",
            tg_body,
            telegram,
            [
                "Bind a Telegram bot (checked with getMe; its webhook set here)",
                "The Telegram binding and Telegram's view of the webhook",
            ],
        ),
        (
            "/v1/tenants/{tenant}/channels/whatsapp",
            wa_body,
            whatsapp,
            [
                "Bind a WhatsApp number (checked with the Graph API)",
                "The WhatsApp binding",
            ],
        ),
    ] {
        s.add(
            Op::new("put", path, says[0])
                .body(body)
                .json(200, "bound", answer)
                .errors(&[409, 502]),
        );
        s.add(
            Op::new("get", path, says[1])
                .ok(200, shown("the binding"))
                .errors(&[502]),
        );
        s.add(Op::new("delete", path, "Unbind").empty(204, "unbound"));
    }
    let header = |name: &str| json!({"name": name, "in": "header", "required": false, "schema": {"type": "string"}});
    let anything = json!({"type": "object"});
    s.add(
        Op::new(
            "post",
            "/webhooks/telegram/{tenant}",
            "Telegram's update delivery (checked by X-Telegram-Bot-Api-Secret-Token)",
        )
        .auth(Auth::Public)
        .param(header("X-Telegram-Bot-Api-Secret-Token"))
        .body(anything.clone())
        .json(200, "stored (or a duplicate)", anything.clone())
        .errors(&[400, 401, 404, 503]),
    );
    let mut handshake = Op::new("get", "/webhooks/whatsapp", "Meta's verification handshake");
    for name in ["hub.mode", "hub.verify_token", "hub.challenge"] {
        handshake = handshake.param(query(name, string.clone(), "from Meta"));
    }
    s.add(
        handshake
            .typed(200, "the challenge", "text/plain", string)
            .errors(&[400, 403]),
    );
    s.add(
        Op::new(
            "post",
            "/webhooks/whatsapp",
            "Meta's deliveries for every bound number (checked by X-Hub-Signature-256)",
        )
        .param(header("X-Hub-Signature-256"))
        .body(anything.clone())
        .json(200, "stored (or a duplicate)", anything)
        .errors(&[400, 401, 503]),
    );
}

/// Several machines. Alone (no machine id), each of these answers 404 `placement_off`.
fn placement(s: &mut Spec) {
    placement_directory(s);
    placement_machines(s);
    placement_peers(s);
}

/// An operator route of placement: 404 when the server runs alone.
fn placement_op(method: &'static str, path: &'static str, summary: &'static str) -> Op {
    Op::new(method, path, summary)
        .auth(Auth::Operator)
        .errors(&[404])
}

fn machine_param() -> Value {
    path_param(
        "machine",
        json!({"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"}),
        json!("m1"),
        "the machine's id",
    )
}

/// Owners and moves.
fn placement_directory(s: &mut Spec) {
    use super::placement as p;
    let overview = s.res::<p::Overview>();
    let placed = s.res::<p::Placed>();
    let placed_page = s.res::<p::PlacedPage>();
    let report = s.res::<crate::placement::MoveReport>();
    let move_to = s.req::<p::MoveTo>();
    s.add(
        placement_op(
            "get",
            "/v1/placement",
            "This machine and every machine that announced itself",
        )
        .json(200, "the machines", overview),
    );
    s.add(
        placement_op(
            "get",
            "/v1/placement/tenants",
            "Every tenant's owner, by id (the directory)",
        )
        .param(limit(100))
        .param(after())
        .json(200, "a page of owners", placed_page),
    );
    s.add(
        placement_op(
            "get",
            "/v1/placement/tenants/{tenant}",
            "One tenant's owner and epoch",
        )
        .json(200, "its owner (null if never placed)", placed),
    );
    s.add(
        placement_op(
            "post",
            "/v1/placement/tenants/{tenant}/move",
            "Move a tenant to another machine (replayed to its owner); 503 if it stays",
        )
        .body(move_to)
        .json(200, "moved", report.clone())
        .errors(&[404, 409]),
    );
    s.add(
        placement_op(
            "post",
            "/v1/placement/tenants/{tenant}/forget",
            "Machine to machine: the tenant moved, drop its cached owner",
        )
        .empty(204, "forgotten"),
    );
}

/// Machines: draining, health, their tenants, takeovers.
fn placement_machines(s: &mut Spec) {
    use super::placement as p;
    let report = s.res::<crate::placement::MoveReport>();
    let machine_schema = s.res::<crate::placement::Machine>();
    let registered = s.res::<p::Registered>();
    let alive = s.res::<p::Alive>();
    let draining = s.req::<p::Draining>();
    let adopt = s.req::<p::Adopt>();
    s.add(
        placement_op(
            "put",
            "/v1/placement/machines/{machine}/draining",
            "Mark a machine draining (nothing new placed there) or take it back",
        )
        .param(machine_param())
        .body(draining)
        .json(200, "the machine's announcement", machine_schema),
    );
    s.add(
        placement_op(
            "get",
            "/v1/placement/machines/{machine}/alive",
            "Whether a machine answers its health check",
        )
        .param(machine_param())
        .json(200, "alive or not", alive),
    );
    s.add(
        placement_op(
            "get",
            "/v1/placement/machines/{machine}/tenants",
            "The tenants a machine holds (replayed there): what a drain moves",
        )
        .param(machine_param())
        .param(limit(100))
        .param(after())
        .json(200, "a page of tenant ids", registered),
    );
    s.add(
        placement_op(
            "post",
            "/v1/placement/machines/{machine}/adopt",
            "Take a dead machine's tenant over onto this machine, from the bucket",
        )
        .param(machine_param())
        .body(adopt)
        .json(200, "taken over", report)
        .errors(&[404, 409]),
    );
}

/// Machine to machine: forwarded WhatsApp parts and a move's arrivals.
fn placement_peers(s: &mut Spec) {
    let arrival = s.req::<crate::placement::ArrivalIn>();
    s.add(
        placement_op(
            "post",
            "/v1/placement/whatsapp",
            "Machine to machine: one owner's part of a WhatsApp delivery",
        )
        .body(json!({"type": "object"}))
        .json(200, "stored", json!({"type": "object"})),
    );
    s.add(
        placement_op(
            "post",
            "/v1/placement/arrivals/{tenant}",
            "Machine to machine: restore a tenant that is moving here, unserved",
        )
        .body(arrival)
        .empty(202, "restored and waiting for the directory")
        .errors(&[404, 409]),
    );
    s.add(
        placement_op(
            "delete",
            "/v1/placement/arrivals/{tenant}",
            "Machine to machine: drop an arrival whose move will not happen",
        )
        .empty(204, "dropped")
        .errors(&[404, 409]),
    );
    s.add(
        placement_op(
            "post",
            "/v1/placement/arrivals/{tenant}/promote",
            "Machine to machine: the directory names this machine, serve the arrival",
        )
        .empty(204, "served here")
        .errors(&[404, 409]),
    );
}

fn ops(s: &mut Spec) {
    let string = json!({"type": "string"});
    s.add(Op::new("get", "/healthz", "Liveness and version").json(
        200,
        "alive",
        object(
            json!({"status": string, "version": string}),
            &["status", "version"],
        ),
    ));
    let ready = object(
        json!({"status": {"type": "string", "enum": ["ready", "not_ready"]}, "checks": {"type": "object"}}),
        &["status", "checks"],
    );
    s.add(
        Op::new(
            "get",
            "/readyz",
            "Readiness: control db writable, enough free disk",
        )
        .json(200, "ready", ready.clone())
        .json(503, "not ready", ready),
    );
    s.add(Op::new("get", "/metrics", "Prometheus metrics").typed(
        200,
        "metrics",
        "application/openmetrics-text",
        string,
    ));
    s.add(Op::new("get", "/openapi.json", "This document").json(
        200,
        "OpenAPI 3.0",
        json!({"type": "object"}),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_copy_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/openapi.json");
        let fresh = serde_json::to_string_pretty(document()).expect("JSON") + "\n";
        if std::env::var_os("TARN_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &fresh).expect("writable");
        }
        let saved = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            saved == fresh,
            "src/http/openapi.json is stale: run `TARN_UPDATE_OPENAPI=1 cargo test saved_copy_is_current`"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/").skip(1) {
            let target = &part[..part.find('"').expect("closed")];
            let mut node = doc;
            for step in target.split('/') {
                node = node
                    .get(step)
                    .unwrap_or_else(|| panic!("unresolved #/{target}"));
            }
        }
    }
}
