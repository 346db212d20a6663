"""Worker <-> core IPC: batched frames over a Unix socket (one write per batch).

framing.py   the frame format, its kinds and pseudo-methods, the batching protocol
client.py    the worker's end: calls and streams as futures (CoreClient)
server.py    the core's end: frames to the services' handlers (CoreConnection)
readstate.py the shared-memory read state the core publishes to the workers
"""
