"""The `tasktrail` command, one module per command group (`main` picks one)."""
