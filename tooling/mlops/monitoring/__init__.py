"""Monitoring: compare what a deployment sees with what its model was trained on.

- ``columns``: read reference/current data files into pyarrow Tables, decide each column's kind;
- ``stattests``: the drift statistics (normed Wasserstein, Jensen-Shannon, KS, chi-squared, Z, PSI);
- ``profile``: a compact reference profile, stored in a model version's lineage at registration;
- ``quality``: data-quality findings of current data against a reference profile;
- ``drift``: the drift report (per-feature tests, dataset drift, prediction drift, quality).

Importing this package imports nothing heavy: numpy and pyarrow load with the modules that need them.
"""
