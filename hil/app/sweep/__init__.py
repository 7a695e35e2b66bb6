"""``hil sweep``: many training runs — a grid, zipped lists and seeds over a base
configuration — on :mod:`dask.distributed`, each into its own run file, with a results
table and its statistics (issue 13).

:mod:`.spec` reads the sweep file into runs with stable names, :mod:`.execute` trains them
on a Dask cluster (resuming killed ones), :mod:`.results` writes ``results.csv`` and
summarises it per configuration.
"""
