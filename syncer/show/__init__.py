"""What the user reads: each command's tables and lines on stdout, and its JSON document.

One module per command family; ``console`` holds what they share. The CLI hands each its
result; nothing below the CLI imports this package (the daemon is handed its part).
"""
