from kvcore.utl.cli import main

raise SystemExit(main())
