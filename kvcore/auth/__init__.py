"""Who a caller is (tokens, certificate names) and how a checked request carries
that identity to apply time; the auth store (store.py), which the core keeps and a worker
reads to check a Range itself."""
