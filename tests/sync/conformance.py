"""Sync conformance: owner's-app clients built on apsw (SQLite's own changeset apply) against
a running tarn.

Two or more devices bootstrap from GET /sync/snapshot, then a randomized run of actions of
every kind (undo included), admin CRUD and scheduler runs goes through the HTTP API; devices
go offline for a while, queue their actions with idempotency ids and replay them (some
twice) when back. After each sync a device's copy must equal the server's synced tables row
for row. One device applies with a strict conflict handler (no conflict may occur), one with
expo-sqlite's fixed policy (always REPLACE). Every snapshot and changeset is checked for
private tables and secrets.

Usage: conformance.py --base URL --tenant T --token TOKEN --server-db PATH [--seed N]
                      [--steps N]
Exit status 0 when everything converged; the reason otherwise.
"""

import argparse
import json
import os
import random
import sys
import tempfile
import urllib.error
import urllib.request

import apsw

SYNCED = [
    "settings", "products", "product_aliases", "customers", "staff", "sales", "sale_items",
    "payments", "expenses", "orders", "order_items", "stock_movements", "reports", "schedules",
]


class Api:
    def __init__(self, base, tenant, token):
        self.base = base.rstrip("/") + "/v1/tenants/" + tenant
        self.token = token

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, method, path, body=None):
        status, _, raw = self.call(method, path, body)
        return status, (json.loads(raw) if raw else None)


STATS = {}


class Failure(Exception):
    pass


class Device:
    """An app's local copy: a read-only mirror of the synced tables."""

    def __init__(self, name, api, policy, secrets, dump_dir):
        self.name, self.api, self.policy = name, api, policy
        self.secrets, self.dump_dir = secrets, dump_dir
        self.db, self.queue, self.online, self.sent = None, [], True, 0
        self.bootstraps = self.pulls = self.conflicts = 0

    def bootstrap(self):
        status, headers, raw = self.api.call("GET", "/sync/snapshot")
        if status != 200:
            raise Failure(f"{self.name}: snapshot {status} {raw[:200]!r}")
        self.secrets.check(f"{self.name} snapshot", raw)
        path = os.path.join(self.dump_dir, f"{self.name}-{self.bootstraps}.db")
        with open(path, "wb") as f:
            f.write(raw)
        self.db = apsw.Connection(path)
        tables = sorted(r[0] for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"))
        if tables != sorted(SYNCED + ["tarn_sync"]):
            raise Failure(f"{self.name}: snapshot tables {tables}")
        self.epoch, self.seq, self.schema = self.db.execute(
            "SELECT epoch, seq, schema_version FROM tarn_sync").fetchone()
        if headers.get("tarn-sync-seq") != str(self.seq):
            raise Failure(f"{self.name}: snapshot header {headers} vs row {self.seq}")
        self.bootstraps += 1

    def conflict(self, reason, change):
        self.conflicts += 1
        if self.policy == "strict":
            print(f"{self.name}: conflict {reason} on {change}", file=sys.stderr)
            return apsw.SQLITE_CHANGESET_ABORT
        return apsw.SQLITE_CHANGESET_REPLACE

    def pull(self):
        """Pulls until nothing is new; a 409 re-bootstraps."""
        while True:
            status, headers, raw = self.api.call(
                "GET", f"/sync/changes?epoch={self.epoch}&after={self.seq}"
                       f"&schema_version={self.schema}")
            if status == 204:
                return
            if status == 409:
                if json.loads(raw)["error"]["code"] != "resync_required":
                    raise Failure(f"{self.name}: 409 {raw!r}")
                self.bootstrap()
                continue
            if status != 200:
                raise Failure(f"{self.name}: changes {status} {raw[:200]!r}")
            self.secrets.check(f"{self.name} changes", raw)
            seq = int(headers["tarn-sync-seq"])
            with self.db:
                apsw.Changeset.apply(raw, self.db, conflict=self.conflict)
                self.db.execute("UPDATE tarn_sync SET seq = ?", (seq,))
            if self.policy == "strict" and self.conflicts:
                raise Failure(f"{self.name}: {self.conflicts} conflicts")
            self.seq = seq
            self.pulls += 1

    def act(self, action, rng):
        """Sends an action now, or queues it while offline."""
        self.sent += 1
        body = dict(action, id=f"{self.name}-{self.sent}")
        if self.online:
            return self.post(body)
        self.queue.append(body)
        return None

    def post(self, body):
        status, answer = self.api.json("POST", "/actions", body)
        if status not in (200, 400, 404, 409):
            raise Failure(f"{self.name}: action {body} -> {status} {answer}")
        outcome = answer.get("status") if status == 200 else str(status)
        key = f"{body['action']}:{outcome}"
        STATS[key] = STATS.get(key, 0) + 1
        return answer

    def replay(self, rng):
        """Back online: the queued actions in order, some sent twice (a lost answer)."""
        for body in self.queue:
            first = self.post(body)
            if rng.random() < 0.3:
                again = self.post(body)
                if first and first.get("status") in ("applied", "rejected", "clarify") \
                        and again.get("status") != "duplicate":
                    raise Failure(f"{self.name}: replay of {body['id']} was {again}")
        replayed = len(self.queue)
        self.queue = []
        return replayed


class Secrets:
    """Byte strings that must never leave the server in a snapshot or a changeset."""

    def __init__(self):
        self.values = set()

    def add(self, value):
        self.values.add(value.encode() if isinstance(value, str) else value)

    def check(self, where, raw):
        for v in self.values:
            if v in raw:
                raise Failure(f"a secret ({v[:6]!r}…) appeared in a {where}")


def server_rows(path):
    """The server's synced tables and position, read in one transaction."""
    db = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    db.execute("BEGIN")
    seq = db.execute(
        "SELECT max(coalesce((SELECT max(seq) FROM sync_log), 0), pruned_through) "
        "FROM sync_state").fetchone()[0]
    rows = {t: table(db, t) for t in SYNCED}
    db.execute("COMMIT")
    db.close()
    return seq, rows


def table(db, name):
    rows = list(db.execute(f"SELECT * FROM {name} ORDER BY 1, 2"))
    if name == "staff":
        cols = [c[1] for c in db.execute("PRAGMA table_info(staff)")]
        retired = [cols.index("join_code"), cols.index("join_code_expires_at")]
        rows = [tuple(None if i in retired else v for i, v in enumerate(r)) for r in rows]
    return rows


def converged(device, server_db):
    for _ in range(20):
        device.pull()
        seq, server = server_rows(server_db)
        if seq != device.seq:
            continue  # the server moved on (a scheduled job): pull again
        for t in SYNCED:
            mine = table(device.db, t)
            if mine != server[t]:
                diff = [r for r in mine if r not in server[t]][:3], \
                       [r for r in server[t] if r not in mine][:3]
                raise Failure(f"{device.name}: table {t} differs at seq {seq}: "
                              f"device-only {diff[0]}, server-only {diff[1]}")
        return seq
    raise Failure(f"{device.name}: never caught up with the server")


PRODUCTS = ["Rice", "Sugar", "Cooking Oil", "Brown Bread", "White Bread"]
CUSTOMERS = ["Ahmed", "Zed", "Wanjiru"]
STAFF = ["Mary", "Sam"]


def random_action(rng, state):
    """One action of any kind, with a sender allowed to do most things."""
    p, c = rng.choice(PRODUCTS + state["new_products"]), rng.choice(CUSTOMERS)
    qty = rng.choice([1, 2, 3, 0.5, 1.25])
    order = rng.randint(1, max(1, state["orders"]))
    kinds = [
        {"action": "record_sale", "items": [{"product": p, "qty": qty}],
         "customer": c, "paid": rng.random() < 0.7},
        {"action": "record_sale", "items": [{"product": p, "qty": qty, "total": 7}]},
        {"action": "restock", "product": p, "qty": rng.randint(1, 30),
         "unit_cost": rng.choice([1, 2.5])},
        {"action": "record_payment", "customer": "Ahmed", "amount": rng.choice([1, 5, 2.5])},
        {"action": "record_expense", "amount": rng.choice([3, 12.5]), "category": "transport"},
        {"action": "create_order", "customer": c, "items": [{"product": p, "qty": 1}],
         "address": "Market street"},
        {"action": "assign_delivery", "order_id": order, "driver": "Musa"},
        {"action": "mark_delivered", "order_id": order},
        {"action": "cancel_order", "order_id": order},
        {"action": "set_price", "product": p, "price": rng.choice([2, 3.5, 15])},
        {"action": "stock_count", "product": p, "qty": rng.randint(0, 40)},
        {"action": "undo"},
        {"action": "undo"},
    ]
    action = rng.choice(kinds)
    if action["action"] == "create_order":
        state["orders"] += 1
    return dict(action, sender=rng.choice(STAFF))


def admin_step(api, rng, state, secrets):
    """Admin CRUD, a join code (a secret) or a scheduler run, straight through the API."""
    n = state["admin"] = state["admin"] + 1
    if rng.random() < 0.04:
        # The operator's reset: every device gets a 409 and bootstraps again.
        status, _ = api.json("POST", "/sync/reset", {})
        if status != 200:
            raise Failure(f"reset: {status}")
        state["resets"] += 1
        return
    choice = rng.randrange(8)
    if choice == 0:
        name = f"Item{n}"
        status, _ = api.json("POST", "/products", {"name": name, "price": 4, "unit": "pcs",
                                                    "stock": 10, "aliases": [f"it{n}"]})
        if status == 201:
            state["new_products"].append(name)
    elif choice == 1:
        status, body = api.json("GET", "/products")
        pid = rng.choice(body["products"])["id"]
        api.json("PATCH", f"/products/{pid}", {"price": rng.choice([5, 6.5]), "low_stock_at": 3})
    elif choice == 2 and state["new_products"]:
        status, body = api.json("GET", "/products")
        mine = [p for p in body["products"] if p["name"] in state["new_products"]]
        if mine:
            victim = rng.choice(mine)
            api.json("DELETE", f"/products/{victim['id']}")
            state["new_products"].remove(victim["name"])
    elif choice == 3:
        api.json("POST", "/customers", {"name": f"Cust{n}", "phone": f"+2547000{n:05d}"})
    elif choice == 4:
        status, body = api.json("POST", "/staff", {"name": f"Helper{n}", "role": "staff"})
        if status == 201 and body.get("join_code"):
            secrets.add(body["join_code"])
    elif choice == 5:
        api.json("PATCH", "/settings", {"greeting": f"Welcome {n}", "low_stock_default": 4})
    elif choice == 6:
        status, body = api.json("GET", "/staff")
        member = rng.choice(body["staff"])
        status, code = api.json("POST", f"/staff/{member['id']}/join-code")
        if status == 201:
            secrets.add(code["join_code"])
    elif choice == 7 and rng.random() < 0.5:
        # The owner changes a schedule: its mirror in the shop's file is a synced row.
        kind = rng.choice(["daily_summary", "low_stock_alert"])
        change = rng.choice([{"enabled": rng.random() < 0.5}, {"cron": f"0 {n % 24} * * *"}])
        status, _ = api.json("PUT", "/schedules", {"schedules": [dict(change, kind=kind)]})
        if status != 200:
            raise Failure(f"schedule change: {status}")
    else:
        kind = rng.choice(["daily_summary", "low_stock_alert", "delivery_reminder",
                           "weekly_report"])
        api.json("POST", f"/schedules/{kind}/run")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--tenant", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--server-db", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--devices", type=int, default=3)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    api = Api(args.base, args.tenant, args.token)
    secrets = Secrets()
    secrets.add(args.token)
    # A private message: its text lives only in the message log.
    secrets.add("zqprivatemarker")
    api.json("POST", "/messages", {"text": "zqprivatemarker how is business", "sender": "Sam"})
    state = {"orders": 0, "new_products": [], "admin": 0, "resets": 0}
    with tempfile.TemporaryDirectory() as dump:
        policies = ["strict", "replace"] + ["strict"] * max(0, args.devices - 2)
        devices = [Device(f"s{args.seed}dev{i}", api, policies[i], secrets, dump)
                   for i in range(args.devices)]
        for d in devices:
            d.bootstrap()
        checks = replayed = 0
        for step in range(args.steps):
            d = rng.choice(devices)
            roll = rng.random()
            if roll < 0.1:
                d.online = not d.online
                if d.online:
                    replayed += d.replay(rng)
                    converged(d, args.server_db)
                    checks += 1
            elif roll < 0.25:
                admin_step(api, rng, state, secrets)
            else:
                answer = d.act(random_action(rng, state), rng)
                if answer and answer.get("status") == "applied" and answer.get("sync_seq"):
                    # The write checkpoint: once pulled up to it, the effect is visible.
                    if d.online and rng.random() < 0.3:
                        converged(d, args.server_db)
                        if d.seq < answer["sync_seq"]:
                            raise Failure(f"{d.name} at {d.seq} < checkpoint {answer}")
                        checks += 1
            if step % 25 == 24:
                for other in devices:
                    if other.online:
                        converged(other, args.server_db)
                        checks += 1
        for d in devices:
            if not d.online:
                d.online = True
                replayed += d.replay(rng)
            converged(d, args.server_db)
            checks += 1
        seq = server_rows(args.server_db)[0]
        print(json.dumps({
            "steps": args.steps, "seed": args.seed, "server_seq": seq, "checks": checks,
            "replayed": replayed, "resets": state["resets"], "answers": STATS,
            "devices": [{"name": d.name, "policy": d.policy, "pulls": d.pulls,
                         "bootstraps": d.bootstraps, "conflicts": d.conflicts,
                         "seq": d.seq} for d in devices],
        }))


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
