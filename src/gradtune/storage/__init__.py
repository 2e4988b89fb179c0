"""Where studies live: opening Optuna storages, creating and resuming studies, the shared trial budget.

A role of its own, beside tuning: ``tuning/`` runs trials against a study,
``report/`` and ``comparison/`` read and write studies, and all of them reach
the storage through this package. Optuna's private internals, which gradtune
uses for speed or for heartbeats, are kept behind one module
(:mod:`gradtune.storage._optuna`).

The package imports nothing heavy itself, so that ``storage.connection`` can
check a URL before torch or Optuna is imported. Its modules:

- :mod:`.connection`: one quick connection to a database server (SQLAlchemy only);
- :mod:`.open`: ``open_storage`` for any Optuna storage URL or a journal file;
- :mod:`.study`: creating or resuming a study with gradtune's metadata, orphaned trials;
- :mod:`.shared_budget`: exactly N trials across every worker of a study;
- :mod:`.trials`: stored trials read back as rows, for results and reports;
- :mod:`.keys`: the names under which gradtune stores what it stores.
"""
