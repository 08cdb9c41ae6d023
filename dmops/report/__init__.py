"""``dmops report``: what the campaigns did, computed in DuckDB over the ledger and the imported events.

=============  ==============================================================================
``run``        which report ``dmops report`` was asked for, in which format
``kpis``       per campaign, variant and holdout: the metrics of SPEC §9, lift, A/B tests,
               goals, periods and retention cohorts
``lifecycle``  lifecycle stages month by month, the flows between them, churn
``fatigue``    unsubscribe and complaint rates by how many messages came before; a cap to try
``stats``      every interval and test the reports use (the one home of statistics)
``formats``    the reports as a terminal table, Markdown and a self-contained HTML page
=============  ==============================================================================

The modules return plain data; ``run`` picks the report and formats it, and :mod:`dmops.cli` prints
it or writes it to ``--out``.
"""
