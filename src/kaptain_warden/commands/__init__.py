"""Subcommands of the `kaptain-warden` command line, one module each."""
