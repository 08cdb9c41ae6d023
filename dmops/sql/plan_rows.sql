-- The funnel of SPEC §6: one decision per audience contact, the first failing check in this order.
-- Reads _dm_flagged (one row per audience contact with every check's input, built per campaign);
-- $marketing: consent and caps bind marketing messages only.
CREATE OR REPLACE TEMP TABLE plan_rows AS
WITH decided AS (
    SELECT *, CASE
        WHEN NOT address_ok THEN 'invalid_address'
        WHEN $marketing AND NOT consent THEN 'no_consent'
        WHEN suppressed THEN 'suppressed'
        WHEN address_kept_by < contact_id THEN 'duplicate_address'
        WHEN ledger_sent THEN 'already_sent'
        WHEN ledger_held THEN 'holdout'
        WHEN $marketing AND capped THEN 'frequency_cap'
        WHEN holdout_hit THEN 'holdout'
        WHEN assigned IS NULL THEN 'no_variant'
    END AS reason
    FROM _dm_flagged
)
SELECT *, CASE WHEN reason IS NULL THEN assigned END AS variant FROM decided
