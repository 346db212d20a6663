"""Who a caller is (tokens, certificate names) and how a checked request carries
that identity to apply time. The auth store itself is kvcore/server/auth.py."""
