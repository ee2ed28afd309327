"""`python -m robolake.accelerator ...` is `robolake accelerator ...` (how the stack starts it)."""

from robolake.cli.accelerator import main

main()
