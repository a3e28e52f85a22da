"""`python -m helios ...` is the `helios` command."""

from helios.cli import main

if __name__ == "__main__":
    main()
