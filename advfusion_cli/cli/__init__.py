"""The `advfusion` command line: one module per subcommand, each thin over a workflow."""
