-- Tenant schema, version 8: single-use join codes that expire, undo in the shop's words,
-- order cancellation, and idempotency keys that remember what they were used for.

-- A join code works once and until it expires; codes of staff who already joined (and
-- could be reused by anyone who saw them) are dropped, the others expire in 72 hours.
ALTER TABLE staff ADD COLUMN join_code_expires_at TEXT;
UPDATE staff SET join_code = NULL
    WHERE id IN (SELECT staff_id FROM identities);
UPDATE staff SET join_code_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+72 hours')
    WHERE join_code IS NOT NULL;

-- What an applied action did, in the shop's words ("sale of 3 Rice to Ahmed, 45.00 USD"),
-- for the undo reply.
ALTER TABLE journal ADD COLUMN summary TEXT;
-- When the action of a log row was undone.
ALTER TABLE message_log ADD COLUMN undone_at TEXT;
-- SHA-256 of the request an idempotency key was first used for (text or action).
ALTER TABLE message_log ADD COLUMN request_sha TEXT;
-- A write the parser was not sure of, waiting for the sender's yes (until the time given,
-- in ms; cleared when taken).
ALTER TABLE message_log ADD COLUMN proposal TEXT;
ALTER TABLE message_log ADD COLUMN proposal_until_ms INTEGER;

-- A customer that only an undone action created is removed: kept for the history of that
-- sale or order, gone from lists and lookups, their name free again.
ALTER TABLE customers ADD COLUMN removed_at TEXT;

-- The sale a delivery wrote, so cancelling a delivered order can reverse it.
ALTER TABLE orders ADD COLUMN sale_id INTEGER REFERENCES sales (id);

-- Every range of local days is inclusive (as `GET /sales?from=&to=` always was): stored
-- weekly reports end on their last day, not the day after.
UPDATE reports SET period_end = date(period_end, '-1 day'),
    data = json_set(data, '$.to', date(json_extract(data, '$.to'), '-1 day'))
    WHERE json_valid(data);
