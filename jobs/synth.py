"""`ray job submit` entrypoint: synth.

    ray job submit --working-dir . -- python jobs/synth.py --config configs/quickstart.yaml [--set key=value ...]
"""

import sys

from syncse_ray.cli.jobs import job_main

if __name__ == "__main__":
    sys.exit(job_main("synth"))
