-- The delivery journals (see dmops/ledger.py) as delivery_lines, and each message's latest state as
-- delivery_states: the last line naming it, in journal number order then seq. attempts: how often it was handed
-- to a transport (in_flight lines).
CREATE OR REPLACE TEMP TABLE delivery_lines AS
SELECT *, TRY_CAST(regexp_extract(filename, 'run-([0-9]+)[.]jsonl$', 1) AS BIGINT) AS journal
FROM read_json($files, format = 'newline_delimited', filename = true,
                        columns = {seq: 'BIGINT', message_id: 'VARCHAR', campaign_id: 'VARCHAR',
                                   channel: 'VARCHAR', transport: 'VARCHAR', state: 'VARCHAR',
                                   "at": 'TIMESTAMP', attempt: 'INTEGER', code: 'INTEGER', detail: 'VARCHAR',
                                   retry_at: 'TIMESTAMP', provider_id: 'VARCHAR'});
CREATE OR REPLACE TEMP TABLE delivery_states AS
SELECT message_id,
       arg_max(campaign_id, (journal, seq)) AS campaign_id,
       arg_max(channel, (journal, seq)) AS channel,
       arg_max(transport, (journal, seq)) AS transport,
       arg_max(state, (journal, seq)) AS state,
       arg_max("at", (journal, seq)) AS "at",
       arg_max(code, (journal, seq)) AS code,
       arg_max(detail, (journal, seq)) AS detail,
       arg_max(retry_at, (journal, seq)) AS retry_at,
       max(provider_id) AS provider_id,
       count(*) FILTER (WHERE state = 'in_flight') AS attempts,
       min("at") FILTER (WHERE state IN ('in_flight', 'deferred')) AS first_attempt
FROM delivery_lines GROUP BY message_id;
