"""Allow ``python -m spine``."""

from spine.cli import main

if __name__ == "__main__":
    main()
