-- A CHECK written as `x IN ('a', 'b', 'c')` makes SQLite build a temporary index of the list
-- every time a row is written (a list of more than two constants is searched, not compared):
-- two per sale, for message_log and stock_movements, about a tenth of a message's
-- instructions. The same checks as chains of `=` compare in place.
--
-- Only the text of each definition changes, to an equivalent check that every stored row
-- meets, so the definitions are edited in place rather than the tables rebuilt: SQLite's
-- documented procedure for changing a CHECK constraint ("Making Other Kinds Of Table Schema
-- Changes", https://www.sqlite.org/lang_altertable.html). The runner increments the schema
-- version after a migration that sets writable_schema, as that procedure asks.
PRAGMA writable_schema = ON;

UPDATE sqlite_schema
SET sql = replace(sql,
    'CHECK (role IN (''owner'', ''manager'', ''staff'', ''driver'', ''vendor''))',
    'CHECK (role = ''owner'' OR role = ''manager'' OR role = ''staff'' OR role = ''driver'' OR role = ''vendor'')')
WHERE type = 'table' AND name = 'staff';

UPDATE sqlite_schema
SET sql = replace(sql,
    'CHECK (cause IN (''initial'', ''sale'', ''restock'', ''count'', ''undo''))',
    'CHECK (cause = ''initial'' OR cause = ''sale'' OR cause = ''restock'' OR cause = ''count'' OR cause = ''undo'')')
WHERE type = 'table' AND name = 'stock_movements';

UPDATE sqlite_schema
SET sql = replace(sql,
    'CHECK (status IN (''pending'', ''assigned'', ''delivered'', ''cancelled''))',
    'CHECK (status = ''pending'' OR status = ''assigned'' OR status = ''delivered'' OR status = ''cancelled'')')
WHERE type = 'table' AND name = 'orders';

UPDATE sqlite_schema
SET sql = replace(sql,
    'CHECK (status IN (''applied'', ''rejected'', ''clarify''))',
    'CHECK (status = ''applied'' OR status = ''rejected'' OR status = ''clarify'')')
WHERE type = 'table' AND name = 'message_log';

UPDATE sqlite_schema
SET sql = replace(sql,
    'CHECK (status IN (''pending'', ''done'', ''ignored''))',
    'CHECK (status = ''pending'' OR status = ''done'' OR status = ''ignored'')')
WHERE type = 'table' AND name = 'inbox';

UPDATE sqlite_schema
SET sql = replace(sql,
    'CHECK (status IN (''pending'', ''sent'', ''failed'', ''unreachable''))',
    'CHECK (status = ''pending'' OR status = ''sent'' OR status = ''failed'' OR status = ''unreachable'')')
WHERE type = 'table' AND name = 'outbox';

PRAGMA writable_schema = OFF;
