"""`python -m lsp`: the language server over stdio (what `guichet lsp` runs)."""

from lsp.server import main

main()
