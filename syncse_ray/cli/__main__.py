"""`python -m syncse_ray.cli ...`: the `syncse` command."""

from syncse_ray.cli.main import main

if __name__ == "__main__":
    main()
