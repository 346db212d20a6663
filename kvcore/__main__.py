import sys

from kvcore import stdio

# Before anything opens a file: closed 0/1/2 would be handed to the first ones.
stdio.hold_open()
if sys.stdout is None or sys.stderr is None:   # Python found them closed at start
    sys.stdout = sys.stdout or open(1, "w", closefd=False)
    sys.stderr = sys.stderr or open(2, "w", closefd=False)

if sys.argv[1:2] == ["grpc-proxy"]:
    from kvcore.proxy.server import main as proxy_main
    proxy_main(sys.argv[2:])
elif sys.argv[1:2] == ["gateway"]:
    from kvcore.tcpgateway.main import main as gateway_main
    gateway_main(sys.argv[2:])
else:
    from kvcore.server.main import main
    main()
