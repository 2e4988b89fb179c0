"""The ``gradtune`` command line: one module per subcommand."""
