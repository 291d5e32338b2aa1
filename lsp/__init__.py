"""`guichet lsp`: a language server for procedure files (the optional `lsp` extra, pygls).

server.py wires the LSP features; index.py says where the ids of a text are declared;
references.py where they are used; context.py says which kind of id (or an expression) is
expected at a position; diagnostics.py turns the compiler's diagnostics into LSP ones and
quickfix.py reads their "did you mean". Only this package imports pygls and lsprotocol.
"""
