import sys

if sys.argv[1:2] == ["grpc-proxy"]:
    from kvcore.proxy.server import main as proxy_main
    proxy_main(sys.argv[2:])
else:
    from kvcore.server.main import main
    main()
