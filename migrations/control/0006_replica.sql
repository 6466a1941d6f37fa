-- Control schema, version 6: replica lineages. Each time a tenant's file starts a history of
-- its own (first replicated, or restored from a backup or the bucket) it is replicated under
-- a new lineage, <replica>/tenants/<id>/<lineage>, so no two histories share a path. The
-- names sort by the time they began; the list is oldest first, the last one is current.
ALTER TABLE tenants ADD COLUMN replica_lineages TEXT NOT NULL DEFAULT '[]';
ALTER TABLE trash ADD COLUMN replica_lineages TEXT NOT NULL DEFAULT '[]';

-- This database's own lineage: <replica>/control/<lineage>.
CREATE TABLE replica_self (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    lineage TEXT NOT NULL
) STRICT;
