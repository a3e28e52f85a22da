"""`python -m helios.cli ...` is the `helios` command (the tests and benchmarks run it so)."""

from helios.cli import main

if __name__ == "__main__":
    main()
