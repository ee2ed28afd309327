"""The `robolake` command line: parse, build settings, call one library function, map errors."""
