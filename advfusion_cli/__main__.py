"""`python -m advfusion_cli` (also `accelerate launch -m advfusion_cli ...`)."""

from advfusion_cli.cli.app import main

if __name__ == "__main__":
    main()
