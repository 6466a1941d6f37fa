-- Tenant schema, version 12: how long asking the LLM about a message took, in microseconds
-- (NULL when no request was sent), beside its token counts.
ALTER TABLE message_log ADD COLUMN llm_us INTEGER;
