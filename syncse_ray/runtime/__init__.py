"""What a run needs from the process and the cluster: starting or joining Ray (`ray_env.py`), SIGINT/SIGTERM as
`Interrupted` (`interrupts.py`), the stage.json completion markers (`stage_marker.py`) and the machine report of
`syncse env` (`env_report.py`). `ray_env` imports Ray when called; the rest never does."""
