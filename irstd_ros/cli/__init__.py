"""The ``irstd`` command: one thin parser module per subcommand."""
