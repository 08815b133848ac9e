"""The noetl command line: one Typer app whose sub-commands sit on top of every other package."""
