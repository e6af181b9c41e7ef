"""MLflow plumbing, and nothing above it: where the store is (:mod:`.uri`), every key that
lands in it (:mod:`.schema`), opening and closing runs (:mod:`.tracker`), writing into them
(:mod:`.writer`), reading them back (:mod:`.reader`), who owns a run (:mod:`.owner`), and
the UI's saved views that bench's links open (:mod:`.views`).

The package imports nothing here, so ``bench.store.schema`` can be used without MLflow.
"""

LAYER = 1  # import layer (docs/development.md#layers): imports only lower layers' units
