-- `dmops plan --out`: one row per audience contact. An empty reason or variant is $empty:
-- NULL in CSV (an empty field), '' in Parquet. In CSV, an id or variant starting with one of
-- $formula_starts gets a leading ' so that a spreadsheet shows it instead of running it (tabular.csv_safe).
SELECT CASE WHEN list_contains($formula_starts, left(contact_id, 1)) THEN '''' || contact_id
            ELSE contact_id END AS contact_id,
       CASE WHEN variant IS NULL THEN 'excluded' ELSE 'send' END AS decision,
       coalesce(reason, $empty) AS reason,
       CASE WHEN list_contains($formula_starts, left(variant, 1)) THEN '''' || variant
            ELSE coalesce(variant, $empty) END AS variant,
       strftime(planned_at, '%Y-%m-%dT%H:%M:%SZ') AS send_after
FROM plan_rows ORDER BY contact_id
