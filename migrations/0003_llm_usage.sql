-- Tenant schema, version 3: LLM token usage per message (NULL when the LLM was not asked).
ALTER TABLE message_log ADD COLUMN llm_prompt_tokens INTEGER;
ALTER TABLE message_log ADD COLUMN llm_completion_tokens INTEGER;
