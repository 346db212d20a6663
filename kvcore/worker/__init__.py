"""Worker processes: terminate client connections (gRPC, HTTP) and forward calls to
the core over the batched Unix-socket IPC. Workers never write the store."""
