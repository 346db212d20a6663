from kvcore.server.main import main

main()
