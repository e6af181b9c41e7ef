"""What a run's results look like: the one run table (:mod:`.table`), what each kind of run
logs (:mod:`.artifacts`) and the report rebuilt from the store (:mod:`.report`)."""

LAYER = 7  # import layer (docs/development.md#layers): imports only lower layers' units
