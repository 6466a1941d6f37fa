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

/// One operation.
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

fn limit(default: u32) -> Value {
    query(
        "limit",
        json!({"type": "integer", "minimum": 1, "maximum": super::MAX_PAGE, "default": default}),
        "most rows in the answer",
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
            errors.extend([400, 413, 415]);
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
        "credentials of another tenant, or a tenant's key on an operator route",
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
    (429, "too many requests for this tenant; see Retry-After"),
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
    staff(&mut s);
    schedules(&mut s);
    channels(&mut s);
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
    s.add(Op {
        method: "post",
        path: "/v1/tenants",
        summary: "Create a tenant (its API key is shown once)",
        auth: Auth::Operator,
        params: vec![],
        body: Some(json_body(new)),
        ok: vec![(201, json_answer("created", created.clone()))],
        errors: &[409],
    });
    let page_schema = s.res::<super::tenants::Page>();
    s.add(Op {
        method: "get",
        path: "/v1/tenants",
        summary: "List active tenants by id",
        auth: Auth::Operator,
        params: vec![
            limit(100),
            query(
                "after",
                json!({"type": "string"}),
                "next_after of the page before",
            ),
        ],
        body: None,
        ok: vec![(200, json_answer("a page", page_schema))],
        errors: &[422],
    });
    s.add(Op {
        method: "get",
        path: "/v1/tenants/{tenant}",
        summary: "A tenant's record",
        auth: Auth::Tenant,
        params: vec![tenant()],
        body: None,
        ok: vec![(200, json_answer("the tenant", record.clone()))],
        errors: &[],
    });
    s.add(Op {
        method: "delete",
        path: "/v1/tenants/{tenant}",
        summary: "Delete a tenant: its files move to the trash",
        auth: Auth::Operator,
        params: vec![path_param(
            "tenant",
            json!({"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}),
            json!("scratch"),
            "the tenant's id",
        )],
        body: None,
        ok: vec![(200, json_answer("deleted", record))],
        errors: &[404, 429],
    });
    for (path, summary, auth, errors) in [
        (
            "/v1/tenants/{tenant}/rotate-key",
            "Replace the tenant's API key",
            Auth::Tenant,
            &[][..],
        ),
        (
            "/v1/tenants/{tenant}/restore",
            "Bring the most recently deleted copy back from the trash, with a new key",
            Auth::Operator,
            &[404, 409, 429][..],
        ),
    ] {
        s.add(Op {
            method: "post",
            path,
            summary,
            auth,
            params: vec![tenant()],
            body: None,
            ok: vec![(
                200,
                json_answer("the tenant and its new key", created.clone()),
            )],
            errors,
        });
    }
    s.add(Op {
        method: "get",
        path: "/v1/tenants/{tenant}/backup",
        summary: "A consistent snapshot of the tenant's SQLite file",
        auth: Auth::Tenant,
        params: vec![tenant()],
        body: None,
        ok: vec![(
            200,
            json!({"description": "the database file",
                   "content": {"application/vnd.sqlite3": {"schema": {"type": "string", "format": "binary"}}}}),
        )],
        errors: &[507],
    });
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
    s.add(Op {
        method: "get",
        path: "/v1/tenants/{tenant}/settings",
        summary: "The tenant's settings",
        auth: Auth::Tenant,
        params: vec![tenant()],
        body: None,
        ok: vec![(200, json_answer("settings", settings.clone()))],
        errors: &[],
    });
    s.add(Op {
        method: "patch",
        path: "/v1/tenants/{tenant}/settings",
        summary: "Change settings (null: back to the default); all or nothing",
        auth: Auth::Tenant,
        params: vec![tenant()],
        body: Some(json_body(json!({
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
        }))),
        ok: vec![(200, json_answer("settings after", settings))],
        errors: &[],
    });
    let trashed = s.res::<Trashed>();
    s.add(Op {
        method: "get",
        path: "/v1/trash",
        summary: "Deleted tenants whose files wait in the trash",
        auth: Auth::Operator,
        params: vec![
            limit(100),
            query(
                "after",
                json!({"type": "string"}),
                "next_after of the page before",
            ),
        ],
        body: None,
        ok: vec![(
            200,
            json_answer(
                "a page",
                page(
                    "trash",
                    trashed.clone(),
                    Some(("next_after", json!({"type": "string"}))),
                ),
            ),
        )],
        errors: &[422],
    });
    s.add(Op {
        method: "delete",
        path: "/v1/trash/{tenant}",
        summary: "Purge a tenant's trashed copies for good",
        auth: Auth::Operator,
        params: vec![
            tenant(),
            query(
                "deleted_at",
                json!({"type": "string"}),
                "only the copy deleted then",
            ),
        ],
        body: None,
        ok: vec![(
            200,
            json_answer("what was purged", page("purged", trashed, None)),
        )],
        errors: &[404],
    });
}

fn shop(s: &mut Spec) {
    let text = s.req::<super::shop::TextBody>();
    let dry = s.res::<DryRun>();
    let outcome = s.res::<Outcome>();
    s.add(Op {
        method: "post",
        path: "/v1/tenants/{tenant}/parse",
        summary: "The action a text means, names resolved; writes nothing",
        auth: Auth::Tenant,
        params: vec![tenant()],
        body: Some(json_body(text.clone())),
        ok: vec![(200, json_answer("the action", dry))],
        errors: &[],
    });
    s.add(Op {
        method: "post",
        path: "/v1/tenants/{tenant}/messages",
        summary: "Run a chat message: parser, then executor",
        auth: Auth::Tenant,
        params: vec![tenant()],
        body: Some(json_body(text)),
        ok: vec![(200, json_answer("what happened", outcome.clone()))],
        errors: &[],
    });
    let message = s.res::<MessageView>();
    s.add(Op {
        method: "get",
        path: "/v1/tenants/{tenant}/messages",
        summary: "The message log, newest first",
        auth: Auth::Tenant,
        params: vec![
            tenant(),
            query("before", id64(), "next_before of the page before"),
            limit(50),
            query(
                "status",
                json!({"type": "string", "enum": ["applied", "rejected", "clarify"]}),
                "only this outcome",
            ),
            query(
                "sender",
                json!({"type": "string"}),
                "only a staff member's (name or id)",
            ),
            query("from", date(), "first local day"),
            query("to", date(), "last local day (included)"),
        ],
        body: None,
        ok: vec![(
            200,
            json_answer(
                "a page",
                page("messages", message, Some(("next_before", id64()))),
            ),
        )],
        errors: &[422],
    });
    let action = action_body(s);
    s.add(Op {
        method: "post",
        path: "/v1/tenants/{tenant}/actions",
        summary: "Run a structured action (the mobile app's writes)",
        auth: Auth::Tenant,
        params: vec![tenant()],
        body: Some(json_body(action)),
        ok: vec![(200, json_answer("what happened", outcome))],
        errors: &[],
    });
    catalog(s);
    let sale = s.res::<SaleView>();
    s.add(Op {
        method: "get",
        path: "/v1/tenants/{tenant}/sales",
        summary: "Sales between local days (both included; default today), newest first",
        auth: Auth::Tenant,
        params: vec![
            tenant(),
            query("from", date(), "first local day"),
            query("to", date(), "last local day (included)"),
            limit(500),
        ],
        body: None,
        ok: vec![(
            200,
            json_answer(
                "sales",
                json!({"type": "object", "required": ["from", "to", "sales"], "properties": {
                    "from": date(), "to": date(),
                    "sales": {"type": "array", "items": sale},
                }}),
            ),
        )],
        errors: &[422],
    });
    let order = s.res::<OrderView>();
    s.add(Op {
        method: "get",
        path: "/v1/tenants/{tenant}/orders",
        summary: "Orders, newest first (default: pending and assigned)",
        auth: Auth::Tenant,
        params: vec![
            tenant(),
            query(
                "status",
                json!({"type": "string", "enum": ["pending", "assigned", "delivered", "cancelled"]}),
                "only this status",
            ),
            limit(200),
        ],
        body: None,
        ok: vec![(200, json_answer("orders", page("orders", order, None)))],
        errors: &[422],
    });
    let summary = s.res::<SalesSummary>();
    s.add(Op {
        method: "get",
        path: "/v1/tenants/{tenant}/reports/sales",
        summary: "Sales summary of a period, or of local days from/to (both included)",
        auth: Auth::Tenant,
        params: vec![
            tenant(),
            query(
                "period",
                json!({"type": "string", "enum": ["today", "yesterday", "this_week", "last_7_days",
                       "this_month", "last_month", "week", "7d", "month", "lastmonth"]}),
                "a named period (default today); not with from/to",
            ),
            query("from", date(), "first local day"),
            query("to", date(), "last local day (included; at most 366 days)"),
        ],
        body: None,
        ok: vec![(
            200,
            json!({"description": "the summary (CSV with Accept: text/csv)", "content": {
                "application/json": {"schema": summary},
                "text/csv": {"schema": {"type": "string"}},
            }}),
        )],
        errors: &[],
    });
}

/// The body of `/actions`: an action (ACTIONS.md) plus its optional idempotency key and
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

fn catalog(s: &mut Spec) {
    let product = s.res::<ProductView>();
    let new_product = s.req::<NewProduct>();
    let patch_product = s.req::<ProductPatch>();
    let customer = s.res::<CustomerView>();
    let customer_input = s.req::<CustomerInput>();
    for (list, one, key, item, new, patch, what) in [
        (
            "/v1/tenants/{tenant}/products",
            "/v1/tenants/{tenant}/products/{id}",
            "products",
            product,
            new_product,
            patch_product,
            "product",
        ),
        (
            "/v1/tenants/{tenant}/customers",
            "/v1/tenants/{tenant}/customers/{id}",
            "customers",
            customer,
            customer_input.clone(),
            customer_input,
            "customer",
        ),
    ] {
        s.add(Op {
            method: "get",
            path: list,
            summary: if what == "product" {
                "Active products by name"
            } else {
                "Customers by name, with what each owes"
            },
            auth: Auth::Tenant,
            params: vec![tenant()],
            body: None,
            ok: vec![(200, json_answer(key, page(key, item.clone(), None)))],
            errors: &[422],
        });
        s.add(Op {
            method: "post",
            path: list,
            summary: if what == "product" {
                "Add a product (an opening stock is a movement)"
            } else {
                "Add a customer"
            },
            auth: Auth::Tenant,
            params: vec![tenant()],
            body: Some(json_body(new)),
            ok: vec![(201, json_answer("created", item.clone()))],
            errors: &[409],
        });
        s.add(Op {
            method: "get",
            path: one,
            summary: if what == "product" {
                "A product"
            } else {
                "A customer"
            },
            auth: Auth::Tenant,
            params: vec![tenant(), id_param(what)],
            body: None,
            ok: vec![(200, json_answer(what, item.clone()))],
            errors: &[],
        });
        s.add(Op {
            method: "patch",
            path: one,
            summary: if what == "product" {
                "Change a product (stock moves only through actions)"
            } else {
                "Rename a customer or change their phone"
            },
            auth: Auth::Tenant,
            params: vec![tenant(), id_param(what)],
            body: Some(json_body(patch)),
            ok: vec![(200, json_answer("after", item))],
            errors: &[409],
        });
        s.add(Op {
            method: "delete",
            path: one,
            summary: if what == "product" {
                "Deactivate a product (its history stays)"
            } else {
                "Remove a customer who has no history"
            },
            auth: Auth::Tenant,
            params: vec![tenant(), id_param(what)],
            body: None,
            ok: vec![(204, json!({"description": "done"}))],
            errors: &[409],
        });
    }
}

fn staff(s: &mut Spec) {
    let view = s.res::<StaffView>();
    let input = s.req::<StaffInput>();
    let chat = s.res::<ChatLink>();
    let code = s.res::<JoinCode>();
    let base = "/v1/tenants/{tenant}/staff";
    s.add(Op {
        method: "get",
        path: base,
        summary: "Staff, with unused join codes and linked chats",
        auth: Auth::Tenant,
        params: vec![tenant()],
        body: None,
        ok: vec![(200, json_answer("staff", page("staff", view.clone(), None)))],
        errors: &[422],
    });
    s.add(Op {
        method: "post",
        path: base,
        summary: "Add a staff member (with a single-use join code)",
        auth: Auth::Tenant,
        params: vec![tenant()],
        body: Some(json_body(input.clone())),
        ok: vec![(201, json_answer("created", view.clone()))],
        errors: &[409],
    });
    let one = "/v1/tenants/{tenant}/staff/{id}";
    s.add(Op {
        method: "get",
        path: one,
        summary: "A staff member",
        auth: Auth::Tenant,
        params: vec![tenant(), id_param("staff member")],
        body: None,
        ok: vec![(200, json_answer("the staff member", view.clone()))],
        errors: &[],
    });
    s.add(Op {
        method: "patch",
        path: one,
        summary: "Rename, change the role of, or (de)activate (the last active owner stays)",
        auth: Auth::Tenant,
        params: vec![tenant(), id_param("staff member")],
        body: Some(json_body(input)),
        ok: vec![(200, json_answer("after", view))],
        errors: &[409],
    });
    s.add(Op {
        method: "delete",
        path: one,
        summary: "Deactivate a staff member (their history stays)",
        auth: Auth::Tenant,
        params: vec![tenant(), id_param("staff member")],
        body: None,
        ok: vec![(204, json!({"description": "deactivated"}))],
        errors: &[409],
    });
    s.add(Op {
        method: "get",
        path: "/v1/tenants/{tenant}/staff/{id}/chats",
        summary: "The chats linked to a staff member",
        auth: Auth::Tenant,
        params: vec![tenant(), id_param("staff member")],
        body: None,
        ok: vec![(200, json_answer("chats", page("chats", chat, None)))],
        errors: &[],
    });
    s.add(Op {
        method: "delete",
        path: "/v1/tenants/{tenant}/staff/{id}/chats/{chat}",
        summary: "Unlink a chat (a lost phone)",
        auth: Auth::Tenant,
        params: vec![
            tenant(),
            id_param("staff member"),
            path_param("chat", id64(), json!(1), "the linked chat's id"),
        ],
        body: None,
        ok: vec![(204, json!({"description": "unlinked"}))],
        errors: &[],
    });
    s.add(Op {
        method: "post",
        path: "/v1/tenants/{tenant}/staff/{id}/join-code",
        summary: "A new single-use join code (the old one stops working)",
        auth: Auth::Tenant,
        params: vec![tenant(), id_param("staff member")],
        body: None,
        ok: vec![(201, json_answer("the code", code))],
        errors: &[],
    });
}

fn schedules(s: &mut Spec) {
    let kinds: Vec<&str> = crate::scheduler::job::JobKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let mut schedule = s.res::<crate::control::schedule::ScheduleRow>();
    schedule = json!({"allOf": [schedule, {"type": "object", "required": ["next_run", "description"], "properties": {
        "next_run": {"type": "string", "nullable": true, "description": "UTC"},
        "description": {"type": "string", "nullable": true},
    }}]});
    let list = page("schedules", schedule, None);
    s.add(Op {
        method: "get",
        path: "/v1/tenants/{tenant}/schedules",
        summary: "The tenant's scheduled jobs with their next run",
        auth: Auth::Tenant,
        params: vec![tenant()],
        body: None,
        ok: vec![(200, json_answer("schedules", list.clone()))],
        errors: &[],
    });
    let body = s.req::<super::schedules::SchedulesBody>();
    s.add(Op {
        method: "put",
        path: "/v1/tenants/{tenant}/schedules",
        summary: "Change schedules (fields left out stay); all or nothing",
        auth: Auth::Tenant,
        params: vec![tenant()],
        body: Some(json_body(body)),
        ok: vec![(200, json_answer("schedules after", list))],
        errors: &[],
    });
    let run = s.res::<RunRow>();
    s.add(Op {
        method: "post",
        path: "/v1/tenants/{tenant}/schedules/{kind}/run",
        summary: "Run a job now (a manual run; the next slot stays)",
        auth: Auth::Tenant,
        params: vec![
            tenant(),
            path_param(
                "kind",
                json!({"type": "string", "enum": kinds}),
                json!("daily_summary"),
                "the job kind",
            ),
        ],
        body: None,
        ok: vec![(
            200,
            json_answer(
                "its ledger row",
                object(json!({"run": run.clone()}), &["run"]),
            ),
        )],
        errors: &[409],
    });
    s.add(Op {
        method: "get",
        path: "/v1/tenants/{tenant}/runs",
        summary: "The run ledger, newest first",
        auth: Auth::Tenant,
        params: vec![
            tenant(),
            query(
                "kind",
                json!({"type": "string", "enum": kinds}),
                "only this job",
            ),
            query("before", id64(), "next_before of the page before"),
            limit(50),
        ],
        body: None,
        ok: vec![(
            200,
            json_answer("runs", page("runs", run, Some(("next_before", id64())))),
        )],
        errors: &[422],
    });
    let report = s.res::<crate::scheduler::job::ReportView>();
    let report = json!({"allOf": [report, {"type": "object", "required": ["chart_url"],
                        "properties": {"chart_url": {"type": "string"}}}]});
    s.add(Op {
        method: "get",
        path: "/v1/tenants/{tenant}/reports",
        summary: "Stored reports (the weekly report), newest first",
        auth: Auth::Tenant,
        params: vec![
            tenant(),
            query("before", id64(), "next_before of the page before"),
            limit(20),
        ],
        body: None,
        ok: vec![(
            200,
            json_answer(
                "reports",
                page("reports", report, Some(("next_before", id64()))),
            ),
        )],
        errors: &[422],
    });
    s.add(Op {
        method: "get",
        path: "/v1/tenants/{tenant}/reports/{id}/chart.png",
        summary: "A report's chart",
        auth: Auth::Tenant,
        params: vec![tenant(), id_param("report")],
        body: None,
        ok: vec![(
            200,
            json!({"description": "the chart", "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}),
        )],
        errors: &[],
    });
}

fn channels(s: &mut Spec) {
    let string = json!({"type": "string"});
    let nullable = json!({"type": "string", "nullable": true});
    let telegram = object(
        json!({"channel": string, "bot_id": string, "username": string,
               "webhook_url": string}),
        &["channel", "bot_id", "username", "webhook_url"],
    );
    let whatsapp = object(
        json!({"channel": string, "phone_number_id": string,
               "display_phone_number": {}, "verified_name": {}, "webhook_url": nullable}),
        &["channel", "phone_number_id", "webhook_url"],
    );
    s.add(Op {
        method: "get",
        path: "/v1/tenants/{tenant}/channels",
        summary: "Both channel bindings at once (null: not bound)",
        auth: Auth::Tenant,
        params: vec![tenant()],
        body: None,
        ok: vec![(
            200,
            json_answer(
                "bindings",
                object(
                    json!({
                        "telegram": {"type": "object", "nullable": true, "properties": {
                            "bot_id": string, "username": nullable, "bound_at": string, "webhook_url": nullable}},
                        "whatsapp": {"type": "object", "nullable": true, "properties": {
                            "phone_number_id": string, "display_phone_number": nullable,
                            "bound_at": string, "webhook_url": nullable}},
                    }),
                    &["telegram", "whatsapp"],
                ),
            ),
        )],
        errors: &[],
    });
    let tg_body = s.req::<super::channels::TelegramBody>();
    let wa_body = s.req::<super::channels::WhatsAppBody>();
    for (name, body, bound, shown) in [
        (
            "telegram",
            tg_body,
            telegram,
            "Telegram's view of the webhook",
        ),
        ("whatsapp", wa_body, whatsapp, "the binding"),
    ] {
        let path: &'static str = if name == "telegram" {
            "/v1/tenants/{tenant}/channels/telegram"
        } else {
            "/v1/tenants/{tenant}/channels/whatsapp"
        };
        s.add(Op {
            method: "put",
            path,
            summary: if name == "telegram" {
                "Bind a Telegram bot (checked with getMe; its webhook set here)"
            } else {
                "Bind a WhatsApp number (checked with the Graph API)"
            },
            auth: Auth::Tenant,
            params: vec![tenant()],
            body: Some(json_body(body)),
            ok: vec![(200, json_answer("bound", bound))],
            errors: &[409, 502],
        });
        s.add(Op {
            method: "get",
            path,
            summary: if name == "telegram" {
                "The Telegram binding and Telegram's view of the webhook"
            } else {
                "The WhatsApp binding"
            },
            auth: Auth::Tenant,
            params: vec![tenant()],
            body: None,
            ok: vec![(200, json!({"description": shown, "content": {"application/json": {"schema": {"type": "object"}}}}))],
            errors: &[502],
        });
        s.add(Op {
            method: "delete",
            path,
            summary: "Unbind",
            auth: Auth::Tenant,
            params: vec![tenant()],
            body: None,
            ok: vec![(204, json!({"description": "unbound"}))],
            errors: &[],
        });
    }
    let ack = json_answer("stored (or a duplicate)", json!({"type": "object"}));
    let any_body =
        json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}});
    s.add(Op {
        method: "post",
        path: "/webhooks/telegram/{tenant}",
        summary: "Telegram's update delivery (checked by X-Telegram-Bot-Api-Secret-Token)",
        auth: Auth::Public,
        params: vec![
            tenant(),
            json!({"name": "X-Telegram-Bot-Api-Secret-Token", "in": "header", "required": false,
                   "schema": {"type": "string"}}),
        ],
        body: Some(any_body.clone()),
        ok: vec![(200, ack.clone())],
        errors: &[400, 401, 404, 413, 503, 507],
    });
    s.add(Op {
        method: "get",
        path: "/webhooks/whatsapp",
        summary: "Meta's verification handshake",
        auth: Auth::Public,
        params: ["hub.mode", "hub.verify_token", "hub.challenge"]
            .into_iter()
            .map(|n| query(n, json!({"type": "string"}), "from Meta"))
            .collect(),
        body: None,
        ok: vec![(
            200,
            json!({"description": "the challenge", "content": {"text/plain": {"schema": {"type": "string"}}}}),
        )],
        errors: &[400, 403],
    });
    s.add(Op {
        method: "post",
        path: "/webhooks/whatsapp",
        summary: "Meta's deliveries for every bound number (checked by X-Hub-Signature-256)",
        auth: Auth::Public,
        params: vec![
            json!({"name": "X-Hub-Signature-256", "in": "header", "required": false,
                            "schema": {"type": "string"}}),
        ],
        body: Some(any_body),
        ok: vec![(200, ack)],
        errors: &[400, 401, 413, 503, 507],
    });
}

fn ops(s: &mut Spec) {
    let text = |what: &str, ct: &str| json!({"description": what, "content": {ct: {"schema": {"type": "string"}}}});
    s.add(Op {
        method: "get",
        path: "/healthz",
        summary: "Liveness and version",
        auth: Auth::Public,
        params: vec![],
        body: None,
        ok: vec![(
            200,
            json_answer(
                "alive",
                object(
                    json!({"status": {"type": "string"}, "version": {"type": "string"}}),
                    &["status", "version"],
                ),
            ),
        )],
        errors: &[],
    });
    let ready = object(
        json!({"status": {"type": "string", "enum": ["ready", "not_ready"]}, "checks": {"type": "object"}}),
        &["status", "checks"],
    );
    s.add(Op {
        method: "get",
        path: "/readyz",
        summary: "Readiness: control db writable, enough free disk",
        auth: Auth::Public,
        params: vec![],
        body: None,
        ok: vec![
            (200, json_answer("ready", ready.clone())),
            (503, json_answer("not ready", ready)),
        ],
        errors: &[],
    });
    s.add(Op {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics",
        auth: Auth::Public,
        params: vec![],
        body: None,
        ok: vec![(200, text("metrics", "application/openmetrics-text"))],
        errors: &[],
    });
    s.add(Op {
        method: "get",
        path: "/openapi.json",
        summary: "This document",
        auth: Auth::Public,
        params: vec![],
        body: None,
        ok: vec![(200, json_answer("OpenAPI 3.0", json!({"type": "object"})))],
        errors: &[],
    });
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
