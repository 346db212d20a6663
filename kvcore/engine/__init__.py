"""gRPC engines behind one narrow, engine-neutral interface (see base.py)."""
